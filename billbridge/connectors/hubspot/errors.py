"""Which HubSpot SDK errors may be retried: the classifier ``call_with_retries`` consults.

Every API package of hubspot-api-client has its own ``ApiException``; they all carry the HTTP status
and headers, so they are recognised by those (status 0 is the SDK's wrapper of a TLS failure).
"""

from __future__ import annotations

from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsError
from hubspot.crm.companies.exceptions import ApiException as CompaniesError
from hubspot.crm.deals.exceptions import ApiException as DealsError
from hubspot.crm.line_items.exceptions import ApiException as LineItemsError
from hubspot.crm.products.exceptions import ApiException as ProductsError
from hubspot.oauth.exceptions import ApiException as OAuthError

from billbridge.connectors.errors import Classified, ErrorKind, classify_status

API_ERRORS = (DealsError, LineItemsError, CompaniesError, ProductsError, AssociationsError, OAuthError)


def classify_hubspot(exc: BaseException) -> Classified | None:
    """429 (honouring Retry-After) and 5xx retriable, 401 a token to refresh, other 4xx fatal."""
    if not isinstance(exc, API_ERRORS):
        return None
    status = int(exc.status or 0)
    if status == 0:
        return Classified(ErrorKind.RETRIABLE, f"transport: {exc.reason}")
    headers = exc.headers or {}
    reason = str(exc.reason or "")
    if isinstance(exc, OAuthError) and status in (400, 401):
        return Classified(ErrorKind.FATAL, f"HTTP {status}: the refresh token was refused")
    return classify_status(status, headers.get("Retry-After"), reason)
