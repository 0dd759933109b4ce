"""Credentials that outside systems rotate, kept in the store (sealed): the ``TokenStore`` the
QuickBooks connector spends refresh tokens through, backed by a database row with a version."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from billbridge.app.secrets import Sealer
from billbridge.connectors.quickbooks.tokens import OAuthTokens
from billbridge.store import oauth_tokens
from billbridge.store.db import Store


class MissingCredentials(RuntimeError):
    """No stored tokens and no initial refresh token configured: someone must connect the account."""


class StoredTokens:
    """TokenStore over ``oauth_tokens``: every compare-and-swap is its own transaction, so two
    workers (threads, processes, machines on PostgreSQL) never both win the same version."""

    def __init__(self, store: Store, connection_key: str, sealer: Sealer, initial_refresh_token: str | None) -> None:
        self.store, self.key, self.sealer = store, connection_key, sealer
        self.initial = initial_refresh_token

    def load(self) -> OAuthTokens:
        with self.store.read() as session:
            found = oauth_tokens.load(session, self.key)
        if found is None:
            if not self.initial:
                raise MissingCredentials(f"no tokens stored for {self.key} and no refresh token configured")
            return OAuthTokens(refresh_token=self.initial, version=0)
        version, sealed = found
        return replace(OAuthTokens(**json.loads(self.sealer.open(sealed))), version=version)

    def compare_and_swap(self, expected_version: int, new: OAuthTokens) -> bool:
        sealed = self.sealer.seal(json.dumps(asdict(replace(new, version=expected_version + 1))))
        with self.store.write() as session:
            return oauth_tokens.compare_and_swap(session, self.key, expected_version, sealed)
