"""QuickBooks Online's error bodies: every failure is a ``Fault`` envelope with one or more errors.

Shapes follow Intuit's error-code reference and the bodies seen in the wild (for example the
throttle fault ``message=ThrottleExceeded; errorCode=003001; statusCode=429``, quoted in
routablehq/python-quickbooks issue #83). python-quickbooks turns the numeric ``code`` into its
exception classes (``QuickBooks.handle_exceptions``), so the codes matter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from billbridge.sandbox.faults import ErrorResponse


def fault_body(message: str, detail: str, code: str, fault_type: str = "ValidationFault") -> dict[str, Any]:
    """The ``{"Fault": {...}, "time": ...}`` envelope QuickBooks answers errors with."""
    return {
        "Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": fault_type},
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


class QboFault(Exception):
    """Raised inside the sandbox; the app turns it into an HTTP answer with a Fault body."""

    def __init__(self, status: int, message: str, detail: str, code: str, fault_type: str = "ValidationFault") -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.status, self.message, self.detail, self.code, self.fault_type = status, message, detail, code, fault_type

    def body(self) -> dict[str, Any]:
        return fault_body(self.message, self.detail, self.code, self.fault_type)


def validation(
    detail: str,
    code: str = "2020",
    message: str = "Required param missing, need to supply the required value for the API",
) -> QboFault:
    return QboFault(400, message, detail, code)


def not_found(entity: str, ident: str) -> QboFault:
    return QboFault(
        400,
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive or is not found: {entity} {ident}",
        "610",
    )


def query_error(detail: str, code: str = "4000") -> QboFault:
    """4000: the query does not parse (QueryParserError); 4001: it parses but asks what cannot be asked."""
    return QboFault(400, "Error parsing query", detail if code != "4000" else f"QueryParserError: {detail}", code)


def unauthorized_body() -> dict[str, Any]:
    """A 401 as Intuit sends it: not the ``Fault`` envelope but its JSON serializer's lowercase
    ``fault`` (``error``, ``message``, ``detail``), with the other members null or empty."""
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [
                {
                    "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                    "detail": "Token expired or invalid",
                    "code": "3200",
                    "element": None,
                }
            ],
            "type": "AUTHENTICATION",
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": int(datetime.now(UTC).timestamp() * 1000),
        "status": None,
        "cdcresponse": [],
    }


def forbidden_xml(detail: str) -> bytes:
    """A 403 as Intuit sends it whatever Accept asked: XML ``IntuitResponse`` with a ``Fault``."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{stamp}">'
        '<Fault type="AUTHORIZATION"><Error code="3100">'
        "<Message>message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403</Message>"
        f"<Detail>{escape(detail)}</Detail></Error></Fault></IntuitResponse>"
    ).encode()


class QuickBooksErrors:
    """What the fault middleware answers with, in QuickBooks' shapes."""

    def rate_limited(self, retry_after: int) -> ErrorResponse:
        body = fault_body(
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "The request limit was reached.  Try again later",
            "3001",
            "SERVICE",
        )
        return ErrorResponse(429, body, {"Retry-After": str(retry_after)})

    def server_error(self) -> ErrorResponse:
        body = fault_body(
            "An application error has occurred while processing your request",
            "System Failure Error: service unavailable",
            "10000",
            "SystemFault",
        )
        return ErrorResponse(503, body)

    def unauthorized(self) -> ErrorResponse:
        return ErrorResponse(
            401, unauthorized_body(), {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'}
        )
