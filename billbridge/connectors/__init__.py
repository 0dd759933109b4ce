"""Vendor connectors (Salesforce, HubSpot, QuickBooks Online, Stripe) through their official SDKs.

Each vendor gets its own sub-package on the shared contract (``base.py``: streams declared as data,
``DealSource``, ``PushResult``; ``client.py``: the one counted, paced, retried, refreshed call;
``paging.py``; ``cursor.py``). Connectors speak their vendor's records and payloads: they never
touch the store and know nothing of the canonical model or billbridge's documents (``mapping/``
translates; ``vendors/`` joins the two). ``tests/test_layering.py`` holds them to it.
"""
