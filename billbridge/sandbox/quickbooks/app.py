"""FastAPI emulator of the QuickBooks Online Accounting API v3 and Intuit's OAuth 2.0 server.

Routes (what python-quickbooks and intuit-oauth call):
- ``GET /.well-known/openid_configuration``: the discovery document ``AuthClient`` fetches.
- ``POST /oauth2/v1/tokens/bearer``: ``grant_type=refresh_token`` with HTTP Basic client credentials.
- Entities: Customer, Item, Invoice, CreditMemo, Payment, Account, JournalEntry (balanced lines on existing accounts).
- ``POST /v3/company/{realm}/{entity}``: create, or update when the body carries Id + SyncToken, or
  ``?operation=delete`` (then change data capture reports the record as status "Deleted").
- ``GET /v3/company/{realm}/{entity}/{id}``: read.
- ``GET|POST /v3/company/{realm}/query``: the query subset of ``query.py``.
- ``POST /v3/company/{realm}/batch``: up to 30 BatchItemRequest operations (create, update, delete, Query).
- ``GET /v3/company/{realm}/cdc?entities=...&changedSince=...``: change data capture.
- ``GET /v3/company/{realm}/preferences`` (CurrencyPrefs) and ``GET /v3/company/{realm}/exchangerate
  ?sourcecurrencycode=&asofdate=`` (a multicurrency company's rate into its home currency).
Writes honour ``requestid`` (the same id answers the first answer again); ``minorversion`` is accepted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from billbridge.sandbox import specs
from billbridge.sandbox.faults import FaultInjector, FaultMiddleware
from billbridge.sandbox.quickbooks.company import BATCH_LIMIT, BATCH_REQUEST_ID_MAX, QboCompany, dumps
from billbridge.sandbox.quickbooks.errors import (
    QboFault,
    QuickBooksErrors,
    forbidden_xml,
    unauthorized_body,
    validation,
)
from billbridge.sandbox.quickbooks.limits import Throttle

_ENTITY_PATHS = {
    "customer": "Customer",
    "item": "Item",
    "invoice": "Invoice",
    "creditmemo": "CreditMemo",
    "payment": "Payment",
    "account": "Account",
    "journalentry": "JournalEntry",
    "vendor": "Vendor",
    "employee": "Employee",
    "bill": "Bill",
    "billpayment": "BillPayment",
    "vendorcredit": "VendorCredit",
}
TOKEN_PATH = "/oauth2/v1/tokens/bearer"


def _json(status: int, body: Any) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def _with_time(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "time": company.now().isoformat(timespec="milliseconds")}


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}", parse_float=Decimal)
    except ValueError:
        raise validation(
            "Request body is not valid JSON", "2010", "Request has invalid or unsupported property"
        ) from None


def build_app(company: QboCompany, injector: FaultInjector | None = None, throttle: Throttle | None = None) -> Any:
    """The emulator for ``company``, wrapped in the fault middleware (``injector`` or a fresh one);
    ``throttle`` (None: none) refuses what Intuit's rate limits would."""
    app = FastAPI(title="QuickBooks Online sandbox", openapi_url=None)
    app.state.company = company
    app.state.throttle = throttle

    @app.get("/.well-known/openid_configuration")
    def discovery(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": "https://oauth.platform.intuit.com/op/v1",
            "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}{TOKEN_PATH}",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
            "jwks_uri": f"{base}/oauth2/v1/keys",
        }

    @app.post(TOKEN_PATH)
    async def token(request: Request) -> Response:
        if not _client_ok(company, request.headers.get("authorization", "")):
            return _json(401, {"error": "invalid_client"})
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return _json(400, {"error": "unsupported_grant_type"})
        issued = company.refresh(form.get("refresh_token", ""), _client_id(request.headers.get("authorization", "")))
        return _json(200, issued) if issued is not None else _json(400, {"error": "invalid_grant"})

    @app.api_route("/v3/company/{realm}/query", methods=["GET", "POST"])
    async def query(realm: str, request: Request) -> Response:
        text = request.query_params.get("query") or (await request.body()).decode()
        return await _serve(
            company, request, realm, lambda: (200, {"QueryResponse": company.query(text)}), throttle=throttle
        )

    @app.post("/v3/company/{realm}/batch")
    async def batch(realm: str, request: Request) -> Response:
        body = _parse(await request.body())
        rid = request.query_params.get("requestid")
        return await _serve(
            company,
            request,
            realm,
            lambda: company.once(rid, lambda: _batch(company, body), limit=BATCH_REQUEST_ID_MAX),
            throttle=throttle,
            batch=True,
        )

    @app.get("/v3/company/{realm}/preferences")
    async def preferences(realm: str, request: Request) -> Response:
        return await _serve(
            company, request, realm, lambda: (200, {"Preferences": company.preferences()}), throttle=throttle
        )

    @app.get("/v3/company/{realm}/exchangerate")
    async def exchange_rate(realm: str, request: Request) -> Response:
        source = request.query_params.get("sourcecurrencycode", "")
        as_of = request.query_params.get("asofdate")
        return await _serve(
            company,
            request,
            realm,
            lambda: (200, {"ExchangeRate": company.exchange_rate(source, as_of)}),
            throttle=throttle,
        )

    @app.get("/v3/company/{realm}/cdc")
    async def cdc(realm: str, request: Request) -> Response:
        def work() -> tuple[int, Any]:
            names = [n for n in request.query_params.get("entities", "").split(",") if n]
            since = _since(request.query_params.get("changedSince", ""))
            changed = company.changed_since(names, since)
            responses = [
                {name: rows, "startPosition": 1, "maxResults": len(rows)} if rows else {}
                for name, rows in changed.items()
            ]
            return 200, {"CDCResponse": [{"QueryResponse": responses}]}

        return await _serve(company, request, realm, work, throttle=throttle)

    @app.post("/v3/company/{realm}/invoice/{ident}/send")
    async def send_invoice(realm: str, ident: str, request: Request) -> Response:
        rid = request.query_params.get("requestid")
        send_to = request.query_params.get("sendTo")
        return await _serve(
            company,
            request,
            realm,
            lambda: company.once(rid, lambda: (200, {"Invoice": company.send(ident, send_to)})),
            throttle=throttle,
        )

    @app.get("/v3/company/{realm}/{entity}/{ident}")
    async def read(realm: str, entity: str, ident: str, request: Request) -> Response:
        name = _entity(entity)
        linked = name == "Invoice" and "invoiceLink" in request.query_params.get("include", "").split(",")

        def work() -> tuple[int, Any]:
            record = company.get(name, ident)
            return 200, {name: company.with_invoice_link(record) if linked else record}

        return await _serve(company, request, realm, work, throttle=throttle)

    @app.post("/v3/company/{realm}/{entity}")
    async def write(realm: str, entity: str, request: Request) -> Response:
        name = _entity(entity)
        body = _parse(await request.body())
        operation = request.query_params.get("operation")
        rid = request.query_params.get("requestid")
        if operation == "delete":
            return await _serve(
                company,
                request,
                realm,
                lambda: company.once(rid, lambda: (200, {name: _delete(company, name, body)})),
                throttle=throttle,
            )
        if operation:
            raise validation(
                "operation is not supported by this sandbox", "2010", "Request has invalid or unsupported property"
            )
        return await _serve(
            company,
            request,
            realm,
            lambda: company.once(rid, lambda: (200, {name: _save(company, name, body)})),
            throttle=throttle,
        )

    @app.exception_handler(QboFault)
    async def fault(request: Request, exc: QboFault) -> Response:
        return _json(exc.status, exc.body())

    return FaultMiddleware(app, injector or FaultInjector(), QuickBooksErrors())


def _basic(header: str) -> tuple[str, str] | None:
    """The (client id, secret) of an HTTP Basic authorization header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return client_id, secret


def _client_ok(company: QboCompany, header: str) -> bool:
    credentials = _basic(header)
    return credentials is not None and company.check_client(*credentials)


def _client_id(header: str) -> str | None:
    credentials = _basic(header)
    return credentials[0] if credentials else None


def _entity(path: str) -> str:
    try:
        return _ENTITY_PATHS[path.lower()]
    except KeyError:
        raise QboFault(
            400,
            "Unsupported Operation",
            f"Operation Could not find resource for relative : /{path} is not supported.",
            "500",
            "ValidationFault",
        ) from None


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise validation(f"changedSince is not an ISO date-time: {text!r}", "2010", "Invalid changedSince") from None
    return moment if moment.tzinfo else moment.astimezone()


async def _serve(
    company: QboCompany,
    request: Request,
    realm: str,
    work: Callable[[], tuple[int, Any]],
    *,
    throttle: Throttle | None,
    batch: bool = False,
) -> Response:
    """Check the bearer token, the realm and the rate limits, then run ``work`` off the event loop."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not company.access_ok(token):
        return _json(401, unauthorized_body())
    if realm != company.realm_id:
        return Response(forbidden_xml("Unknown realm"), status_code=403, media_type="application/xml")
    wait = throttle.admit(realm, batch=batch, app=company.app_of(token)) if throttle is not None else None
    if wait is not None:
        refused = QuickBooksErrors().rate_limited(wait)
        return Response(dumps(refused.body), status_code=429, headers=refused.headers, media_type="application/json")

    def guarded() -> tuple[int, Any]:
        try:
            return work()
        except QboFault as exc:
            return exc.status, exc.body()

    status, body = await run_in_threadpool(guarded)
    return _json(status, _with_time(company, body) if isinstance(body, dict) and "time" not in body else body)


def _save(company: QboCompany, entity: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation("Request body must be an object", "2010", "Request has invalid or unsupported property")
    if specs.contracts_enabled():
        from billbridge.sandbox.quickbooks.contract import unknown_properties  # xmlschema: a test dependency

        unknown = unknown_properties(entity, body)
        if unknown:
            raise validation(
                f"Property Name:{unknown[0]} specified is unsupported or invalid",
                "2010",
                "Request has invalid or unsupported property",
            )
    record = company.update(entity, body) if "Id" in body else company.create(entity, body)
    if specs.contracts_enabled():
        for wrong in unknown_properties(entity, record):
            specs.report("quickbooks", f"answer {entity} {record['Id']} carries {wrong}, not in Intuit's XSD")
    operation = "Update" if record["SyncToken"] != "0" else "Create"
    company.notify([(entity, record["Id"], operation, record["MetaData"]["LastUpdatedTime"])])
    return record


def _delete(company: QboCompany, entity: str, body: Any) -> dict[str, Any]:
    """``operation=delete`` (on the entity's endpoint or as a batch item): the body names the record's Id
    and its current SyncToken; the answer is its tombstone, status "Deleted"."""
    if not isinstance(body, dict):
        raise validation("Request body must be an object", "2010", "Request has invalid or unsupported property")
    if body.get("Id") is None or body.get("SyncToken") is None:
        raise validation(
            "Id and SyncToken are required to delete",
            "2020",
            "Required param missing, need to supply the required value for the API",
        )
    gone = company.delete(entity, body)
    company.notify([(entity, gone["Id"], "Delete", company.deleted[entity][-1]["MetaData"]["LastUpdatedTime"])])
    return gone


def _batch(company: QboCompany, body: Any) -> tuple[int, Any]:
    items = body.get("BatchItemRequest") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise validation("BatchItemRequest is missing or empty")
    if len(items) > BATCH_LIMIT:
        raise validation(
            f"The batch holds {len(items)} operations; at most {BATCH_LIMIT} are allowed",
            "2010",
            "Request has invalid or unsupported property",
        )
    answers = []
    for item in items:
        bid = item.get("bId")
        try:
            if "Query" in item:
                answers.append({"bId": bid, "QueryResponse": company.query(item["Query"])})
                continue
            names = [k for k in item if k not in ("bId", "operation", "optionsData")]
            if len(names) != 1 or item.get("operation") not in ("create", "update", "delete"):
                raise validation(
                    "a batch item holds one entity and operation create, update or delete",
                    "2010",
                    "Request has invalid or unsupported property",
                )
            entity = names[0]
            if entity not in company.records:
                raise validation(f"unsupported entity {entity}", "2010", "Request has invalid or unsupported property")
            if item["operation"] == "delete":
                answers.append({"bId": bid, entity: _delete(company, entity, item[entity])})
            else:
                answers.append({"bId": bid, entity: _save(company, entity, item[entity])})
        except QboFault as exc:
            answers.append({"bId": bid, "Fault": exc.body()["Fault"]})
    return 200, {"BatchItemResponse": answers}
