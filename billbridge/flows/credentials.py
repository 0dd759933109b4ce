"""Credentials that outside systems rotate, kept in the store (sealed): the ``TokenStore`` the
QuickBooks connector spends refresh tokens through, backed by a database row with a version."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

from billbridge.connectors.quickbooks.tokens import OAuthTokens
from billbridge.secrets import Sealer
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
            return oauth_tokens.compare_and_swap(
                session,
                self.key,
                expected_version,
                sealed,
                refresh_expires_at=_moment(new.refresh_expires_at),
                refresh_hard_expires_at=_moment(new.refresh_hard_expires_at),
            )


def _moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass(frozen=True)
class CredentialExpiry:
    """When a connection's refresh token stops working, and whether to warn (``billbridge status``)."""

    connection: str
    expires_at: datetime | None  # the earlier of the rolling and the hard expiry, if known
    hard_expires_at: datetime | None
    days_left: int | None
    warn: bool  # within WARN_BEFORE of expiring (or expired): someone must reconnect the account


WARN_BEFORE = timedelta(days=30)  # Intuit e-mails admins about a month ahead; we say it as early


def credential_expiries(store: Store, now: datetime) -> list[CredentialExpiry]:
    """Every stored connection's refresh-token expiry, with a warning from 30 days before it."""
    with store.read() as session:
        rows = oauth_tokens.expiries(session)
    out = []
    for key, rolling, hard in rows:
        known = [_utc(m) for m in (rolling, hard) if m is not None]
        first = min(known) if known else None
        days = (first - now).days if first is not None else None
        out.append(
            CredentialExpiry(
                key, first, _utc(hard) if hard else None, days, first is not None and first - now <= WARN_BEFORE
            )
        )
    return out


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns: they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
