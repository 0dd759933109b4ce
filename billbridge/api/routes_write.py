"""Write API: customers, products (with their prices) and contracts (an amendment is a new version from
its ``effective_date``) of the API key's legal entity, and invoices moved along their lifecycle.

Bodies are the contract file's records, validated by its models (``mapping.contract_file``) and saved
by the import's own path (``flows.importing.store_records``), so a record the API takes is one a file
would take; a refused one is answered 422 with its field and kept nowhere. Another entity's records do
not exist here (404); writing for another entity or in another currency is refused (403).

Every POST takes an ``Idempotency-Key`` (``api.idempotency``): the same request again is answered as
the first time, without doing it twice. An update (PUT, or PATCH with a JSON merge patch) names the
version it was made from in ``If-Match`` (the ETag of the GET): none is a 428, a stale one a 412.
Invoices are approved, put under review or voided as ``billbridge invoices mark`` does it
(``flows.approval``): approving queues the pushes to the ``push_targets``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billbridge.api import idempotency, representations
from billbridge.api.auth import Auth, store_of
from billbridge.api.body import check_texts, read_json
from billbridge.api.errors import ApiError, ErrorBody, Problem, refuse
from billbridge.api.representations import ETAG_HEADER
from billbridge.api.resource_models import ContractOut, CustomerOut, ProductOut, StatusChangeOut
from billbridge.api.write_models import request_body
from billbridge.billing.lifecycle import InvalidTransition
from billbridge.flows import approval
from billbridge.flows.importing import ImportSummary, store_records
from billbridge.mapping.contract_file import ParsedRecord, parse_document
from billbridge.settings import Settings
from billbridge.store.api_answers import Answer
from billbridge.store.api_keys import Principal
from billbridge.store.contracts import contract_ids, current_contracts
from billbridge.store.reference import customer_ids, product_ids

router = APIRouter(prefix="/api")
NumberPath = Annotated[str, Path(min_length=1, max_length=60)]
Resource = CustomerOut | ProductOut | ContractOut

_ALWAYS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked API key"},
    422: {"model": ErrorBody, "description": "Field-level problems: the field and what is wrong with it"},
}
_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    403: {"model": ErrorBody, "description": "For another legal entity, or a price in another currency"},
    413: {"model": ErrorBody, "description": "Body over the size limit"},
}
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": True,
    "description": "The ETag of the version this update was made from (from GET or the last write)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


def created(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    headers = {
        **ETAG_HEADER,
        "Location": {"description": "Where to read it", "schema": {"type": "string"}},
        idempotency.REPLAYED_HEADER: {
            "description": "true: the answer to the same request sent before with this Idempotency-Key",
            "schema": {"type": "string"},
        },
    }
    return {
        201: {"model": model, "description": "Created (or, replayed, created before)", "headers": headers},
        409: {
            "model": ErrorBody,
            "description": "The ref is taken, or the idempotency key was used for another request",
        },
        **_ALWAYS,
        **_BODY,
    }


def updated(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "model": model,
            "description": "As it now is (unchanged if the body changed nothing)",
            "headers": ETAG_HEADER,
        },
        404: {"model": ErrorBody, "description": "No such record of this legal entity"},
        412: {"model": ErrorBody, "description": "If-Match names an older version: read it again"},
        428: {"model": ErrorBody, "description": "If-Match is missing"},
        409: {"model": ErrorBody, "description": "The record changed concurrently"},
        **_ALWAYS,
        **_BODY,
    }


@dataclass(frozen=True)
class Kind:
    """What differs between customers, products and contracts; the mechanism is shared."""

    section: str  # the contract file's section
    ref: str  # the field naming a record
    noun: str
    read: Callable[..., Resource | None]  # (session, principal, ref, lock=...) -> the record as shown
    exists: Callable[[Session, str], bool]  # whoever's it is: a ref is unique across legal entities
    editable: Callable[[Session, Principal, Any], dict[str, Any]]  # the record as a body, for a merge patch
    scope: Callable[[Session, Principal, dict[str, Any]], None]  # what the key's entity may not write: refused


def _entity(body: dict[str, Any], principal: Principal) -> None:
    """The key's legal entity, unless the body names another (403)."""
    named = body.setdefault("entity_ref", principal.entity_ref)
    if named != principal.entity_ref:
        raise refuse(403, "entity_mismatch", f"this API key is for legal entity {principal.entity_ref!r}", "entity_ref")


def _customer_scope(_session: Session, principal: Principal, body: dict[str, Any]) -> None:
    _entity(body, principal)


def _product_scope(session: Session, principal: Principal, body: dict[str, Any]) -> None:
    """A key prices products in its entity's currency only (the other entities' prices are theirs), and
    a product it creates has such a price: the entity's products are those it prices or sells."""
    prices = body.get("prices")
    prices = prices if isinstance(prices, list) else []
    for i, price in enumerate(prices):
        if isinstance(price, dict) and "currency" in price and price["currency"] != principal.currency:
            raise refuse(
                403,
                "currency_mismatch",
                f"legal entity {principal.entity_ref!r} prices in {principal.currency}",
                f"prices[{i}].currency",
            )
    ref = body.get("product_ref")
    new = not (isinstance(ref, str) and PRODUCTS.exists(session, ref.strip()))
    if new and not prices:
        raise refuse(422, "no_price", f"give the product a price in {principal.currency}", "prices")


def _contract_scope(session: Session, principal: Principal, body: dict[str, Any]) -> None:
    """For the key's entity and one of its customers (another entity's customer is unknown here)."""
    _entity(body, principal)
    ref = body.get("customer_ref")
    if isinstance(ref, str) and ref.strip():
        found = customer_ids(session, [ref.strip()]).get(ref.strip())
        if found is None or found[1] != principal.entity_id:
            raise refuse(422, "unknown_customer", f"unknown customer {ref.strip()!r}", "customer_ref")


def _customer_body(_session: Session, principal: Principal, current: CustomerOut) -> dict[str, Any]:
    return {**current.model_dump(mode="json"), "entity_ref": principal.entity_ref}


def _product_body(_session: Session, _principal: Principal, current: ProductOut) -> dict[str, Any]:
    return current.model_dump(mode="json")


def _contract_body(session: Session, _principal: Principal, current: ContractOut) -> dict[str, Any]:
    """The current version's terms as stored (prices resolved), without the day they applied from."""
    terms = current_contracts(session, [current.contract_ref])[current.contract_ref]
    return terms.model_dump(mode="json", exclude={"effective_date"})


CUSTOMERS = Kind(
    "customers",
    "customer_ref",
    "customer",
    representations.customer,
    lambda session, ref: ref in customer_ids(session, [ref]),
    _customer_body,
    _customer_scope,
)
PRODUCTS = Kind(
    "products",
    "product_ref",
    "product",
    representations.product,
    lambda session, ref: ref in product_ids(session, [ref]),
    _product_body,
    _product_scope,
)
CONTRACTS = Kind(
    "contracts",
    "contract_ref",
    "contract",
    representations.contract,
    lambda session, ref: bool(contract_ids(session, refs=[ref])),
    _contract_body,
    _contract_scope,
)


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_json(request, request.app.state.max_body_bytes)
    if not isinstance(body, dict):
        raise refuse(422, "not_an_object", "the body must be a JSON object", None)
    check_texts(body)
    return body


def _parse(kind: Kind, body: dict[str, Any]) -> ParsedRecord:
    """The body as the contract file's record, validated by its model; 422 with every field at fault."""
    parsed = parse_document({kind.section: [body]})
    if parsed.errors:
        raise ApiError(422, [Problem(field=_field(e.field), message=e.message, code="invalid") for e in parsed.errors])
    [record] = parsed.records
    return record


def _save(session: Session, record: ParsedRecord) -> None:
    """Saved as an import saves it, refusals answered (422) rather than quarantined."""
    summary = ImportSummary()
    store_records(session, [record], summary, source=None)
    if summary.errors:
        raise ApiError(422, [Problem(field=_field(e.field), message=e.message, code="refused") for e in summary.errors])


def _field(path: str) -> str | None:
    return None if path == "(record)" else path


def _respond(answer: Answer, replayed: bool, location: str | None = None) -> Response:
    headers = {"ETag": answer.etag} if answer.etag else {}
    if location is not None:
        headers["Location"] = location
    if replayed:
        headers[idempotency.REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _shown(resource: Resource | None, status: int) -> Answer:
    assert resource is not None  # just written, in this transaction
    return Answer(status, resource.model_dump(mode="json"), representations.etag(resource))


async def _answered(
    request: Request, principal: Principal, fingerprint_body: Any, work: Callable[[Session], Answer]
) -> tuple[Answer, bool]:
    """``work`` in one write transaction (off the event loop), once per idempotency key."""
    key = idempotency.header_key(request) if request.method == "POST" else None
    fingerprint = idempotency.fingerprint(request.method, request.url.path, fingerprint_body)
    try:
        return await run_in_threadpool(
            idempotency.answer_once, store_of(request), key, principal.entity_id, fingerprint, work
        )
    except IntegrityError:  # a concurrent request took the same ref first: its transaction won
        raise refuse(
            409, "conflict", "the record was created or changed concurrently: read it and retry", None
        ) from None


async def _create(request: Request, principal: Principal, kind: Kind) -> Response:
    body = await _json_object(request)

    def work(session: Session) -> Answer:
        given = dict(body)
        kind.scope(session, principal, given)
        record = _parse(kind, given)
        if kind.exists(session, record.key):
            raise refuse(409, "exists", f"{kind.noun} {record.key!r} exists: change it with PUT or PATCH", kind.ref)
        _save(session, record)
        return _shown(kind.read(session, principal, record.key), 201)

    answer, replayed = await _answered(request, principal, body, work)
    return _respond(answer, replayed, f"{request.url.path}/{quote(answer.body[kind.ref], safe='')}")


async def _update(request: Request, principal: Principal, kind: Kind, ref: str, *, patch: bool) -> Response:
    body = await _json_object(request)
    expected = request.headers.get("if-match")
    if not expected:
        raise refuse(428, "if_match_required", "send If-Match with the ETag of the version you change", "If-Match")

    def work(session: Session) -> Answer:
        current = kind.read(session, principal, ref, lock=True)
        if current is None:
            raise refuse(404, "not_found", f"no {kind.noun} {ref!r}", kind.ref)
        version = representations.etag(current)
        if not _matches(expected, version):
            raise refuse(412, "stale", f"{kind.noun} {ref!r} is at version {version}: read it again", "If-Match")
        given = _merge_patch(kind.editable(session, principal, current), body) if patch else dict(body)
        if given.setdefault(kind.ref, ref) != ref:
            raise refuse(422, "ref_mismatch", f"the URL names {kind.noun} {ref!r}", kind.ref)
        kind.scope(session, principal, given)
        _save(session, _parse(kind, given))
        return _shown(kind.read(session, principal, ref), 200)

    answer, _ = await _answered(request, principal, body, work)
    return _respond(answer, False)


def _matches(if_match: str, version: str) -> bool:
    """``If-Match``: ``*`` or a list of ETags (a weak one compared by its tag)."""
    return if_match.strip() == "*" or any(tag.strip().removeprefix("W/") == version for tag in if_match.split(","))


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge member by member, null removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = _merge_patch(merged.get(name), value)
    return merged


def _operations(kind: Kind, model: type[BaseModel], component: str) -> None:
    """POST /api/<section>, PUT and PATCH /api/<section>/{ref}."""
    path = f"/{kind.section}/{{{kind.ref}}}"
    tags: list[str | Enum] = [kind.section.capitalize()]

    async def create(request: Request, principal: Auth) -> Response:
        return await _create(request, principal, kind)

    async def replace(request: Request, principal: Auth, ref: str) -> Response:
        return await _update(request, principal, kind, ref, patch=False)

    async def change(request: Request, principal: Auth, ref: str) -> Response:
        return await _update(request, principal, kind, ref, patch=True)

    # The path parameter is named by the kind ({customer_ref}, ...): an annotation made here, where
    # FastAPI (reading the module's names) could not resolve a local one.
    for endpoint in (replace, change):
        endpoint.__annotations__["ref"] = Annotated[str, Path(min_length=1, max_length=200, alias=kind.ref)]

    router.add_api_route(
        f"/{kind.section}",
        create,
        methods=["POST"],
        status_code=201,
        response_model=model,
        responses=created(model),
        tags=tags,
        summary=f"Create a {kind.noun}",
        openapi_extra={**request_body(f"{component}In"), "parameters": [idempotency.openapi_parameter("request")]},
    )
    for method, endpoint, body, summary in (
        ("PUT", replace, "Update", f"Replace a {kind.noun}"),
        ("PATCH", change, "Patch", f"Change some fields of a {kind.noun} (a JSON merge patch)"),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            response_model=model,
            responses=updated(model),
            tags=tags,
            summary=summary,
            openapi_extra={**request_body(f"{component}{body}"), "parameters": [IF_MATCH]},
        )


_operations(CUSTOMERS, CustomerOut, "Customer")
_operations(PRODUCTS, ProductOut, "Product")
_operations(CONTRACTS, ContractOut, "Contract")


ACTIONS = {"approve": "approved", "review": "under_review", "void": "void"}


def _action(action: str, status: str) -> None:
    async def move(request: Request, principal: Auth, number: NumberPath) -> Response:
        settings: Settings = request.app.state.settings

        def work(session: Session) -> Answer:
            try:
                change = approval.mark(session, settings, number, status, entity_id=principal.entity_id)
            except LookupError:
                raise refuse(404, "not_found", f"no invoice or credit note numbered {number!r}", "number") from None
            except InvalidTransition as exc:
                raise refuse(409, "invalid_transition", str(exc), "status") from None
            shown = representations.invoice(session, principal, number)
            assert shown is not None
            out = StatusChangeOut(
                number=number,
                previous_status=change.previous,
                status=change.status,
                queued=change.queued,
                withdrawn=change.withdrawn,
                invoice=shown,
            )
            return Answer(200, out.model_dump(mode="json"))

        answer, replayed = await _answered(request, principal, None, work)
        return _respond(answer, replayed)

    router.add_api_route(
        f"/invoices/{{number}}/{action}",
        move,
        methods=["POST"],
        response_model=StatusChangeOut,
        responses={
            200: {"model": StatusChangeOut, "description": f"Now {status} (or already)"},
            404: {"model": ErrorBody, "description": "No such document of this legal entity"},
            409: {
                "model": ErrorBody,
                "description": "The lifecycle does not allow it (the allowed moves are listed), or the "
                "idempotency key was used for another request",
            },
            **_ALWAYS,
        },
        tags=["Invoices"],
        summary=f"{action.capitalize()} an invoice or credit note (as `billbridge invoices mark N {status}`)",
        openapi_extra={"parameters": [idempotency.openapi_parameter("request")]},
    )


for _name, _status in ACTIONS.items():
    _action(_name, _status)
