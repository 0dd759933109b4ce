"""A simple-salesforce client with an OAuth session, one retry loop, pacing and API-usage awareness.

Every call goes through the shared ``VendorClient.call`` with ``classify_salesforce``: an
expired session (INVALID_SESSION_ID) fetches a new one from the token endpoint, the org's request
limit (REQUEST_LIMIT_EXCEEDED) and 5xx are retried, anything else (MALFORMED_QUERY, INVALID_FIELD,
...) fails at once. Responses carry ``Sforce-Limit-Info: api-usage=used/limit``; near the limit
the client slows down so a sync does not spend the org's last requests at full speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from billbridge.connectors.client import VendorClient
from billbridge.connectors.errors import Classified, ErrorKind, RetryPolicy, classify_status
from billbridge.connectors.pacing import Pacer
from billbridge.settings import SalesforceSettings

T = TypeVar("T")
VENDOR = "salesforce"
CALLS_PER_SECOND = 20  # REST API has no per-second cap, only a daily total; stay a polite client
NEAR_LIMIT_SHARE = 0.9  # past this share of the org's daily API requests ...
NEAR_LIMIT_CALLS_PER_SECOND = 1  # ... slow down to this pace


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", ""))
    return ""


def classify_salesforce(exc: BaseException) -> Classified | None:
    """simple-salesforce's exceptions (and the token endpoint's HTTP errors) by retry kind."""
    if isinstance(exc, SalesforceExpiredSession):
        return Classified(ErrorKind.AUTH, "INVALID_SESSION_ID: session expired or invalid")
    if isinstance(exc, SalesforceRefusedRequest) and _error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
        return Classified(ErrorKind.RETRIABLE, "REQUEST_LIMIT_EXCEEDED")
    if isinstance(exc, SalesforceGeneralError) and exc.status >= 500:
        return Classified(ErrorKind.RETRIABLE, f"HTTP {exc.status}")
    if isinstance(exc, SalesforceError):
        return Classified(ErrorKind.FATAL, f"HTTP {exc.status} {_error_code(exc) or exc.resource_name}")
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return classify_status(exc.response.status_code, exc.response.headers.get("Retry-After"), "token endpoint")
    return None


class SalesforceClient(VendorClient):
    """One org's session and the SDK client built on it; ``call(fn)`` runs ``fn(sdk)`` safely."""

    vendor = VENDOR

    def classify(self, exc: BaseException) -> Classified | None:
        return classify_salesforce(exc)

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            policy=policy or RetryPolicy.of(settings.retry),
            pacer=pacer or Pacer(CALLS_PER_SECOND, 1.0, sleep=sleep),
            sleep=sleep,
        )
        self.settings = settings
        self.near_limit_pacer = Pacer(NEAR_LIMIT_CALLS_PER_SECOND, 1.0, sleep=sleep)
        self.http = requests.Session()
        if settings.ca_bundle is not None:
            self.http.verify = str(settings.ca_bundle)
            self.http.trust_env = False  # or REQUESTS_CA_BUNDLE overrides verify
        self.sdk: Salesforce | None = None
        # ``calls``: REST API requests sent (what counts against the org's limit)
        self.token_calls = 0  # OAuth token requests (they do not count against it)
        self.api_usage: tuple[int, int] | None = None  # (used, limit) from the last Sforce-Limit-Info

    def login(self) -> None:
        """Get a session from the token endpoint and build the SDK client on it."""
        body = self.call_token()
        self.sdk = Salesforce(
            instance_url=body["instance_url"],
            session_id=body["access_token"],
            session=self.http,
            version=self.settings.api_version,
            parse_float=Decimal,  # amounts and quantities exactly, never through binary floats
            # Plain dicts, not the SDK's default OrderedDict (insertion order is kept either way): the
            # json module's fast path, and cheap to copy and pickle.
            object_pairs_hook=None,
        )

    def call_token(self) -> dict[str, Any]:
        s = self.settings
        form = {"client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
        if s.username is not None and s.password is not None:
            form |= {"grant_type": "password", "username": s.username, "password": s.password.get_secret_value()}
        else:
            form["grant_type"] = "client_credentials"

        def post() -> dict[str, Any]:
            self.token_calls += 1
            response = self.http.post(s.token_url, data=form, timeout=s.timeout_seconds)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        return self.retried(post, what="token", refresh=False)

    @property
    def can_refresh(self) -> bool:
        return True  # an expired session (INVALID_SESSION_ID) logs in again

    def refresh(self) -> None:
        self.login()

    def before_attempt(self, pacer: Pacer | None) -> None:
        """Log in first if there is no session; past 90% of the daily limit, go at the slow pace too."""
        if self.sdk is None:
            self.login()
        super().before_attempt(pacer)
        if self.near_limit:
            self.near_limit_pacer.wait()

    def call(  # type: ignore[override]
        self, fn: Callable[[Salesforce], T], *, what: str = "call", pacer: Pacer | None = None, refresh: bool = True
    ) -> T:
        """Run one SDK call with retries, a fresh session on expiry, pacing and limit tracking."""

        def on_sdk() -> T:
            assert self.sdk is not None
            result = fn(self.sdk)
            self._read_usage()
            return result

        return super().call(on_sdk, what=what, pacer=pacer, refresh=refresh)

    @property
    def near_limit(self) -> bool:
        return self.api_usage is not None and self.api_usage[0] >= NEAR_LIMIT_SHARE * self.api_usage[1]

    def _read_usage(self) -> None:
        assert self.sdk is not None
        usage = self.sdk.api_usage.get("api-usage")
        if usage is not None:
            self.api_usage = (int(usage.used), int(usage.total))

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments for an SDK request: the timeout and the query batch size."""
        return {
            "timeout": self.settings.timeout_seconds,
            "headers": {"Sforce-Query-Options": f"batchSize={self.settings.batch_size}"},
        }
