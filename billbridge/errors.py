"""Errors a person fixes (a setting, the store's address, a port): the command line shows their message
as one line with a non-zero exit, never a traceback. Any layer may raise them."""

from __future__ import annotations


class UserError(Exception):
    """A mistake or a missing piece on the user's side; the message names it and says what to do."""


class NotConfigured(UserError, ValueError):
    """A step needs a setting that is not set (a vendor's credentials, say)."""
