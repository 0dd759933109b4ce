"""Moved to ``billbridge/secrets.py`` (a leaf beside settings, so flows and api need nothing of app).

Kept only for ``flows/push.py``, whose import moves when that module's rework lands; the layering
test lists that one import as a known exception, and fails once it is gone so this file goes too.
"""

from __future__ import annotations

from billbridge.secrets import Sealer, SealError

__all__ = ["SealError", "Sealer"]
