"""python-quickbooks and intuit-oauth pointed at any QuickBooks endpoint, and their errors classified.

python-quickbooks has no base-URL argument (its URLs are class attributes ``api_url_v3`` /
``sandbox_api_url_v3``), and it hides the HTTP status of throttling and server errors behind its
Fault-code exceptions (a 429 arrives as code 3001, a ``ValidationException`` by its numbering), so
``QuickBooksClient`` sets the URL per instance and raises ``QuickBooksHttpError`` with status and
Retry-After before the SDK parses the body. intuit-oauth's ``AuthClient`` is a ``requests.Session``
that fetches its discovery document in the constructor; ``OAuthClient`` lets it trust an explicit
CA bundle from the first request on (``REQUESTS_CA_BUNDLE`` would otherwise override ``verify``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from intuitlib.client import AuthClient
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks import exceptions as qb_exceptions

from billbridge.connectors.errors import Classified, ErrorKind, VendorError, classify_status

VENDOR = "quickbooks"
MINOR_VERSION = 75  # python-quickbooks' minimum supported minorversion
# Intuit's throttling since 2025 (developer blog, August 2025): 10 requests a second per realm and
# app, and the batch endpoint at 120 requests a minute per realm (it was 40, and 500 requests a minute).
REQUESTS_PER_SECOND = 10
BATCHES_PER_MINUTE = 120
PRODUCTION_DISCOVERY_URL = "https://developer.intuit.com/.well-known/openid_configuration/"
PRODUCTION_API_URL = "https://quickbooks.api.intuit.com/v3"


@dataclass(frozen=True)
class QuickBooksConfig:
    """One connection to one QuickBooks company (realm)."""

    client_id: str
    client_secret: str
    realm_id: str
    api_url_v3: str = PRODUCTION_API_URL
    discovery_url: str = PRODUCTION_DISCOVERY_URL
    redirect_uri: str = "https://localhost/callback"
    ca_bundle: str | None = None  # a CA to trust instead of the system store (the sandbox's throwaway CA)
    income_account_id: str = "1"  # the income account new service items post to
    minor_version: int = MINOR_VERSION
    timeout_seconds: float = 60.0
    requests_per_second: int = REQUESTS_PER_SECOND
    batches_per_minute: int = BATCHES_PER_MINUTE


class OAuthClient(AuthClient):
    """intuit-oauth's AuthClient with an explicit CA bundle and no environment overrides."""

    def __init__(self, config: QuickBooksConfig) -> None:
        self._ca_bundle, self._timeout = config.ca_bundle, config.timeout_seconds
        super().__init__(
            config.client_id, config.client_secret, config.redirect_uri, config.discovery_url, realm_id=config.realm_id
        )

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.trust_env = False
        if self._ca_bundle:
            kwargs.setdefault("verify", self._ca_bundle)
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class QuickBooksHttpError(Exception):
    """A throttled, failed or unauthorised API answer, with what the retry loop needs to know."""

    def __init__(self, status: int, retry_after: str | None, detail: str) -> None:
        self.status, self.retry_after, self.detail = status, retry_after, detail
        super().__init__(f"HTTP {status}: {detail}")


class QuickBooksClient(QuickBooks):
    """A python-quickbooks client for ``config`` with a ready access token; rebuilt after every refresh."""

    timeout_seconds = 60.0

    @classmethod
    def connect(cls, config: QuickBooksConfig, auth_client: OAuthClient) -> QuickBooksClient:
        client: QuickBooksClient = cls(
            auth_client=auth_client,
            refresh_token=auth_client.refresh_token,
            company_id=config.realm_id,
            minorversion=config.minor_version,
            use_decimal=True,  # JSON numbers become Decimals, never floats
        )
        client.api_url_v3 = config.api_url_v3
        client.timeout_seconds = config.timeout_seconds
        client.session.trust_env = False
        if config.ca_bundle:
            client.session.verify = config.ca_bundle
        return client

    def process_request(self, request_type: str, url: str, headers: Any = "", params: Any = "", data: Any = "") -> Any:
        headers.update({"Authorization": "Bearer " + self.session.access_token})
        response = self.session.request(
            request_type, url, headers=headers, params=params, data=data, timeout=self.timeout_seconds
        )
        if response.status_code in (401, 403, 429) or response.status_code >= 500:
            raise QuickBooksHttpError(
                response.status_code, response.headers.get("Retry-After"), _fault_summary(response)
            )
        return response


def _fault_summary(response: Any) -> str:
    """The Fault's code and message (never the request or the whole body: they carry customer data)."""
    # JSON ``Fault``/``Error``/``Message``, the lowercase ``fault``/``error``/``message`` of 401s, or
    # the XML ``IntuitResponse``/``Fault``/``Error`` of 403s
    try:
        if response.text.lstrip().startswith("<"):
            found = re.search(r'<Error code="([^"]*)"[^>]*>\s*<Message>([^<]*)</Message>', response.text)
            return f"{found.group(1)} {found.group(2)}" if found else response.reason or ""
        body = response.json()
        fault = body.get("Fault") or body["fault"]
        error = (fault.get("Error") or fault["error"])[0]
        return f"{error.get('code')} {error.get('Message') or error.get('message')}"
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return response.reason or ""


THROTTLE_CODE = 3001


def classify_quickbooks(exc: BaseException) -> Classified | None:
    """QuickBooks' meaning of an SDK exception; None leaves transport errors to the shared rules."""
    if isinstance(exc, VendorError):  # a token refresh inside the call failed after its own retries
        kind = ErrorKind.FATAL if exc.classified.kind == ErrorKind.AUTH else exc.classified.kind
        return Classified(kind, f"token refresh: {exc.classified.reason}", exc.classified.retry_after)
    if isinstance(exc, QuickBooksHttpError):
        return classify_status(exc.status, exc.retry_after, exc.detail)
    if isinstance(exc, AuthClientError):
        # 400 invalid_grant / 401 invalid_client: the connection must be authorised again by a person
        return classify_status(exc.status_code, exc.response.headers.get("Retry-After"), "token endpoint")
    if isinstance(exc, qb_exceptions.QuickbooksException):
        if exc.error_code == THROTTLE_CODE:
            return Classified(ErrorKind.RETRIABLE, f"{exc.error_code} {exc.message}")
        if isinstance(exc, qb_exceptions.AuthorizationException):
            return Classified(ErrorKind.AUTH, f"{exc.error_code} {exc.message}")
        if isinstance(exc, qb_exceptions.SevereException):
            return Classified(ErrorKind.RETRIABLE, f"{exc.error_code} {exc.message}")
        return Classified(ErrorKind.FATAL, f"{exc.error_code} {exc.message}: {exc.detail}")
    return None
