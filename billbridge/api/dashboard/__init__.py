"""The dashboard served by ``billbridge serve`` at ``/`` (see ``routes.py``)."""
