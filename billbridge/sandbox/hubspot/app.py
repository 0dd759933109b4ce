"""A FastAPI emulation of the HubSpot CRM API parts billbridge uses, behind fault injection.

Followed from HubSpot's API reference (developers.hubspot.com/docs/api-reference) and its published
OpenAPI specs (``vendor-specs/hubspot``):
- v3 list ``GET /crm/v3/objects/{type}``: limit up to 100, ``after`` cursor (``paging.next.link``
  is the full URL of the next page), ``properties``, ``associations`` (ids per requested type),
  ``archived=true`` lists archived objects only; a page is a bisect into a kept id order, not a sort;
- ``GET /crm/v3/properties/{type}``: the properties the portal's objects carry, as definitions;
- v3 batch read: up to 100 inputs, unknown ids answered with 207 and per-id errors;
- v3 search: up to 200 per page, ``after`` is an offset, and no query pages past its first 10,000
  results: asking for ``after`` >= 10,000 is a 400 (the search guide's "Limitations"); at most
  ``search_rate_per_second`` (5) searches a second per token, more are a 429 of their own;
- associations v4 batch read (up to 1,000 ids; ids without associations come back as 207 errors;
  each input's links are paged, ``paging.next.after`` sent back with the input's ``id`` as ``after``);
  a link lists its association types, with the label of each user-defined one (``HubSpotData.label``);
- Bearer tokens that expire, refreshed through ``POST /oauth/v1/token`` (grant_type=refresh_token).
Type ids (``0-3`` deals, ...) and names (``deals``) are both accepted in paths, as HubSpot does.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from billbridge.sandbox import specs
from billbridge.sandbox.faults import ErrorResponse, FaultInjector, FaultMiddleware
from billbridge.sandbox.hubspot.records import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    HsObject,
    HubSpotData,
    ObjectTable,
    iso_ms,
    parse_time,
)

LIST_LIMIT = 100
BATCH_READ_LIMIT = 100
SEARCH_LIMIT = 200
SEARCH_RESULT_CAP = 10_000
ASSOCIATIONS_BATCH_LIMIT = 1_000
ASSOCIATIONS_PAGE = 500  # associations v4 batch read: links per input per page, the rest behind paging.next.after
SEARCH_RATE_PER_SECOND = 5  # CRM search: requests per second per token (HubSpot's usage guide)
RATE_LIMIT_MAX = 190  # requests per rolling 10 seconds (the highest published tier)
TOKEN_TTL_SECONDS = 1800  # HubSpot OAuth access tokens live 30 minutes
_TIME_PROPERTIES = {"hs_lastmodifieddate", "createdate", "closedate"}
_TYPE_IDS = {name: type_id for type_id, name in OBJECT_TYPES.items()}


def _error(status: int, category: str, message: str, **extra: Any) -> ErrorResponse:
    """HubSpot's error body (the specs' ``Error`` schema: category, correlationId, message)."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return ErrorResponse(status, body)


class HubSpotErrors:
    """How HubSpot throttles, fails and refuses a token (developers.hubspot.com/docs/api/usage-details)."""

    def rate_limited(self, retry_after: int) -> ErrorResponse:
        # The rate-limit body carries errorType/policyName/groupName; "category" is added because the
        # published Error schema requires it (RATE_LIMITS is HubSpot's category for 429s).
        error = _error(
            429,
            "RATE_LIMITS",
            "You have reached your ten_secondly_rolling limit.",
            errorType="RATE_LIMIT",
            policyName="TEN_SECONDLY_ROLLING",
            groupName="publicapi:app-api-calls:billbridge",
        )
        headers = {
            "Retry-After": str(retry_after),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(RATE_LIMIT_MAX),
            "X-HubSpot-RateLimit-Remaining": "0",
        }
        return ErrorResponse(429, error.body, headers)

    def server_error(self) -> ErrorResponse:
        return _error(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable. Please try again.")

    def unauthorized(self) -> ErrorResponse:
        return _error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 1 minute(s) ago.")


@dataclass
class Credentials:
    """What a connector needs to reach the sandbox: the app's OAuth credentials and a first access token."""

    client_id: str
    client_secret: str
    refresh_token: str
    access_token: str


@dataclass
class TokenBook:
    """Issued access tokens and when they expire; ``clock`` is injectable so tests can expire them."""

    credentials: Credentials
    ttl_seconds: float = TOKEN_TTL_SECONDS
    clock: Callable[[], float] = time.time
    expiries: dict[str, float] = field(default_factory=dict)
    refreshes: int = 0

    def issue(self) -> str:
        token = f"hs-at-{secrets.token_hex(12)}"
        self.expiries[token] = self.clock() + self.ttl_seconds
        return token

    def check(self, header: str | None) -> ErrorResponse | None:
        token = (header or "").removeprefix("Bearer ").strip()
        expiry = self.expiries.get(token)
        if expiry is None:
            return _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            )
        if self.clock() >= expiry:
            return HubSpotErrors().unauthorized()
        return None

    def expire_all(self) -> None:
        for token in self.expiries:
            self.expiries[token] = 0.0


def _json(response: ErrorResponse) -> JSONResponse:
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)


def _bad_request(message: str) -> JSONResponse:
    return _json(_error(400, "VALIDATION_ERROR", message))


def _table(data: HubSpotData, object_type: str) -> ObjectTable | None:
    return data.tables.get(OBJECT_TYPES.get(object_type, object_type))


def _property_list(values: list[str]) -> list[str] | None:
    names = [n for v in values for n in v.split(",") if n]
    return names or None


def _number(value: str) -> Decimal | None:
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _comparable(name: str, value: str) -> Any:
    if name in _TIME_PROPERTIES:
        return parse_time(value)
    number = _number(value)
    return value if number is None else number


def _matches(obj: HsObject, flt: dict[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    raw = obj.properties.get(name)
    if op == "HAS_PROPERTY":
        return raw is not None
    if op == "NOT_HAS_PROPERTY":
        return raw is None
    if raw is None:
        return op == "NEQ"
    have = _comparable(name, raw)
    if op == "IN":
        return any(have == _comparable(name, str(v)) for v in flt.get("values", []))
    want = _comparable(name, str(flt.get("value", "")))
    if type(have) is not type(want):
        have, want = str(have), str(want)
    if op == "BETWEEN":
        return bool(want <= have <= _comparable(name, str(flt.get("highValue", ""))))
    compare = {
        "EQ": have == want,
        "NEQ": have != want,
        "LT": have < want,
        "LTE": have <= want,
        "GT": have > want,
        "GTE": have >= want,
    }
    if op not in compare:
        raise ValueError(f"unsupported operator {op}")
    return bool(compare[op])


def _time_bounds(filters: list[dict[str, Any]]) -> tuple[int | None, int | None] | None:
    """[low, high) on hs_lastmodifieddate when every filter is a range on it (the indexed fast path)."""
    low: int | None = None
    high: int | None = None
    for flt in filters:
        if flt.get("propertyName") != "hs_lastmodifieddate" or flt.get("operator") not in ("GT", "GTE", "LT", "LTE"):
            return None
        ms = parse_time(str(flt["value"]))
        if flt["operator"] in ("GT", "GTE"):
            ms += flt["operator"] == "GT"
            low = ms if low is None else max(low, ms)
        else:
            ms += flt["operator"] == "LTE"
            high = ms if high is None else min(high, ms)
    return low, high


def _search_page(
    table: ObjectTable, groups: list[dict[str, Any]], sorts: list[Any], offset: int, limit: int
) -> tuple[int, list[str]]:
    """How many live objects match any filter group, and the ids of the requested page in sort order."""
    sort = sorts[0] if sorts else {"propertyName": "hs_object_id", "direction": "ASCENDING"}
    if isinstance(sort, str):  # the short form "-prop" / "prop"
        sort = {"propertyName": sort.lstrip("-"), "direction": "DESCENDING" if sort.startswith("-") else "ASCENDING"}
    descending = sort.get("direction") == "DESCENDING"
    bounds = [_time_bounds(g.get("filters", [])) for g in groups] if groups else [(None, None)]
    if sort["propertyName"] == "hs_lastmodifieddate" and len(bounds) == 1 and bounds[0] is not None:
        index, start, stop = table.modified_range(*bounds[0])  # the indexed path: no scan
        total = stop - start
        first, last = (stop - offset - limit, stop - offset) if descending else (start + offset, start + offset + limit)
        chosen = index[max(first, start) : max(min(last, stop), start)]
        ids = [str(object_id) for _, object_id in chosen]
        return total, ids[::-1] if descending else ids
    objects = [
        o
        for o in table.live.values()
        if not groups or any(all(_matches(o, f) for f in g.get("filters", [])) for g in groups)
    ]
    name = sort["propertyName"]
    objects.sort(
        key=lambda o: (
            o.properties.get(name) is None,
            _comparable(name, o.properties.get(name) or "0") if name != "hs_object_id" else int(o.id),
            int(o.id),
        ),
        reverse=descending,
    )
    return len(objects), [o.id for o in objects[offset : offset + limit]]


_NUMBER_PROPERTIES = {"amount", "price", "quantity", "hs_discount_percentage", "payment_terms_days", "hs_object_id"}
_SINGULAR = {"deals": "deal", "line_items": "line_item", "companies": "company", "products": "product"}


def _property_definition(object_name: str, name: str) -> dict[str, Any]:
    """A property as ``GET /crm/v3/properties/{objectType}`` describes it (the fields the SDK requires)."""
    kind, field_type = "string", "text"
    if name in _TIME_PROPERTIES:
        kind, field_type = "datetime", "date"
    elif name in _NUMBER_PROPERTIES or name.startswith("hs_price_"):
        kind, field_type = "number", "number"
    elif name.endswith("_date"):
        kind, field_type = "date", "date"
    hubspot_defined = name.startswith("hs_") or name in _TIME_PROPERTIES | {"name", "dealname", "dealstage", "amount"}
    return {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "type": kind,
        "fieldType": field_type,
        "description": "",
        "groupName": f"{_SINGULAR.get(object_name, object_name)}information",
        "options": [],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": False,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "modificationMetadata": {"archivable": True, "readOnlyDefinition": hubspot_defined, "readOnlyValue": False},
        "formField": True,
        "archived": False,
    }


def _associated(data: HubSpotData, from_name: str, object_id: str, to_types: list[str]) -> dict[str, Any]:
    """``associations=`` on the list endpoint: per requested type that has links, its ids and type name."""
    out: dict[str, Any] = {}
    for requested in to_types:
        to_name = OBJECT_TYPES.get(requested, requested)
        ids = data.associations.get((from_name, to_name), {}).get(object_id, [])
        if ids:
            kind = f"{_SINGULAR.get(from_name, from_name)}_to_{_SINGULAR.get(to_name, to_name)}"
            out[requested] = {"results": [{"id": i, "type": kind} for i in ids]}
    return out


def create_app(
    data: HubSpotData,
    tokens: TokenBook,
    *,
    search_cap: int = SEARCH_RESULT_CAP,
    associations_page: int = ASSOCIATIONS_PAGE,
    search_rate_per_second: int | None = SEARCH_RATE_PER_SECOND,
) -> FastAPI:
    """The HubSpot routes over ``data``; ``search_cap`` (HubSpot's 10,000) and ``associations_page``
    (links per input per associations page) are HubSpot's unless a test shrinks them."""
    app = FastAPI(title="HubSpot sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.data, app.state.tokens = data, tokens

    @app.middleware("http")
    async def bearer_auth(request: Request, call_next: Any) -> Any:
        if not request.url.path.startswith("/oauth/"):
            refused = tokens.check(request.headers.get("authorization"))
            if refused is not None:
                return _json(refused)
        return await call_next(request)

    @app.post("/oauth/v1/token")
    async def token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        creds = tokens.credentials
        if form.get("grant_type") != "refresh_token":
            return _bad_request("grant_type must be refresh_token")
        if (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) != (
            creds.client_id,
            creds.client_secret,
            creds.refresh_token,
        ):
            return _json(_error(400, "BAD_REFRESH_TOKEN", "missing or unknown refresh token"))
        tokens.refreshes += 1
        body = {
            "token_type": "bearer",
            "access_token": tokens.issue(),
            "refresh_token": creds.refresh_token,  # HubSpot refresh tokens do not rotate
            "expires_in": int(tokens.ttl_seconds),
            "token_use": "access_token",
        }
        return JSONResponse(body)

    @app.get("/crm/v3/objects/{object_type}")
    async def list_objects(request: Request, object_type: str) -> JSONResponse:
        table = _table(data, object_type)
        if table is None:
            return _bad_request(f"Unable to infer object type from: {object_type}")
        query = request.query_params
        try:
            limit = int(query.get("limit", "10"))
            after = int(query.get("after", "0") or 0)
        except ValueError:
            return _bad_request("limit and after must be integers")
        if not 1 <= limit <= LIST_LIMIT:
            return _bad_request(f"limit must be between 1 and {LIST_LIMIT}")
        archived = query.get("archived", "false").lower() == "true"
        names = _property_list(query.getlist("properties"))
        linked = _property_list(query.getlist("associations")) or []
        with data.lock:
            pool = table.archived if archived else table.live
            ids, more = table.ids_after(after, limit, archived=archived)
            results = [pool[i].body(names) for i in ids]
            for result in results:
                result["associations"] = _associated(data, table.name, str(result["id"]), linked)
                if not result["associations"]:
                    del result["associations"]
        body: dict[str, Any] = {"results": results}
        if more:  # HubSpot's link is the full URL of the next page
            link = str(request.url.include_query_params(after=ids[-1]))
            body["paging"] = {"next": {"after": ids[-1], "link": link}}
        return JSONResponse(body)

    @app.get("/crm/v3/properties/{object_type}")
    async def properties(object_type: str) -> JSONResponse:
        table = _table(data, object_type)
        if table is None:
            return _bad_request(f"Unable to infer object type from: {object_type}")
        with data.lock:
            names = sorted({n for o in table.live.values() for n in o.properties})
        return JSONResponse({"results": [_property_definition(table.name, n) for n in names]})

    @app.post("/crm/v3/objects/{object_type}/batch/read")
    async def batch_read(request: Request, object_type: str) -> JSONResponse:
        table = _table(data, object_type)
        if table is None:
            return _bad_request(f"Unable to infer object type from: {object_type}")
        payload = await request.json()
        inputs = [str(i.get("id", "")) for i in payload.get("inputs", [])]
        if len(inputs) > BATCH_READ_LIMIT:
            return _bad_request(f"Batch input size of {len(inputs)} exceeds the limit of {BATCH_READ_LIMIT}")
        names = payload.get("properties") or None
        archived = request.query_params.get("archived", "false").lower() == "true"
        id_property = payload.get("idProperty")
        started = iso_ms(int(time.time() * 1000))
        with data.lock:
            pool = table.archived if archived else table.live
            if id_property:
                by_value = {o.properties.get(id_property): o for o in pool.values()}
                found = {i: by_value.get(i) for i in inputs}
            else:
                found = {i: pool.get(i) for i in inputs}
            results = [o.body(names) for o in found.values() if o is not None]
        missing = [i for i, o in found.items() if o is None]
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started}
        body["completedAt"] = iso_ms(int(time.time() * 1000))
        if not missing:
            return JSONResponse(body)
        body["numErrors"] = 1
        body["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {table.name} objects, they may be deleted or not exist.",
                "context": {"ids": missing},
                "errors": [],
                "links": {},
            }
        ]
        return JSONResponse(body, status_code=207)

    searches: dict[str, deque[float]] = {}
    app.state.search_throttled = 0  # how many searches the per-token limit refused

    def search_throttled(token: str) -> JSONResponse | None:
        """HubSpot's per-token search limit (None: not enforced): a 429 once a second holds too many."""
        if search_rate_per_second is None:
            return None
        now = time.monotonic()
        sent = searches.setdefault(token, deque())
        while sent and now - sent[0] >= 1.0:
            sent.popleft()
        if len(sent) >= search_rate_per_second:
            app.state.search_throttled += 1
            error = _error(
                429,
                "RATE_LIMITS",
                "You have reached your secondly limit.",
                errorType="RATE_LIMIT",
                policyName="SECONDLY",
                groupName="publicapi:crm-search",
            )
            return JSONResponse(error.body, status_code=429, headers={"Retry-After": "1"})
        sent.append(now)
        return None

    @app.post("/crm/v3/objects/{object_type}/search")
    async def search(request: Request, object_type: str) -> JSONResponse:
        throttled = search_throttled(request.headers.get("authorization", ""))
        if throttled is not None:
            return throttled
        table = _table(data, object_type)
        if table is None:
            return _bad_request(f"Unable to infer object type from: {object_type}")
        payload = await request.json()
        try:
            limit = int(payload.get("limit") or 10)
            offset = int(payload.get("after") or 0)
        except ValueError:
            return _bad_request("limit and after must be integers")
        if not 1 <= limit <= SEARCH_LIMIT:
            return _bad_request(f"limit must be between 1 and {SEARCH_LIMIT}")
        if offset >= search_cap:
            return _bad_request(f"Paging beyond {search_cap} results is not supported; narrow the search filters.")
        try:
            with data.lock:
                total, ids = _search_page(
                    table, payload.get("filterGroups") or [], payload.get("sorts") or [], offset, limit
                )
                names = payload.get("properties") or None
                page = [table.live[i].body(names) for i in ids]
        except (KeyError, ValueError) as exc:
            return _bad_request(f"Invalid search request: {exc}")
        body: dict[str, Any] = {"total": total, "results": page}
        if offset + limit < total:
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return JSONResponse(body)

    @app.post("/crm/v4/associations/{from_type}/{to_type}/batch/read")
    async def associations(request: Request, from_type: str, to_type: str) -> JSONResponse:
        from_name, to_name = OBJECT_TYPES.get(from_type, from_type), OBJECT_TYPES.get(to_type, to_type)
        payload = await request.json()
        inputs = [str(i.get("id", "")) for i in payload.get("inputs", [])]
        afters = {str(i.get("id", "")): int(i.get("after") or 0) for i in payload.get("inputs", [])}
        if len(inputs) > ASSOCIATIONS_BATCH_LIMIT:
            return _bad_request(f"Batch input size of {len(inputs)} exceeds the limit of {ASSOCIATIONS_BATCH_LIMIT}")
        started = iso_ms(int(time.time() * 1000))
        type_id = ASSOCIATION_TYPES.get((from_name, to_name)) or ASSOCIATION_TYPES.get((to_name, from_name), 0)
        spec = {"category": "HUBSPOT_DEFINED", "typeId": type_id}  # unlabelled: no "label" key

        with data.lock:
            links = data.associations.get((from_name, to_name), {})
            live_from = data.tables[from_name].live if from_name in data.tables else {}
            found = {i: links.get(i, []) if i in live_from else [] for i in inputs}
        results = []
        for i, to in found.items():  # a page of ``associations_page`` links per input, then ``paging``
            if not to:
                continue
            start = afters.get(i, 0)
            chunk = to[start : start + associations_page]
            result: dict[str, Any] = {
                "from": {"id": i},
                "to": [
                    {"toObjectId": t, "associationTypes": data.labels.get((from_name, to_name, i, t)) or [spec]}
                    for t in chunk
                ],
            }
            if start + associations_page < len(to):
                result["paging"] = {"next": {"after": str(start + associations_page)}}
            results.append(result)
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started}
        body["completedAt"] = iso_ms(int(time.time() * 1000))
        missing = [i for i, to in found.items() if not to]
        if not missing:
            return JSONResponse(body)
        body["numErrors"] = len(missing)
        body["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": {},
                "message": f"No {to_name} is associated with {from_name} {i}.",
                "context": {"fromObjectId": [i]},
                "errors": [],
                "links": {},
            }
            for i in missing
        ]
        return JSONResponse(body, status_code=207)

    @app.get("/__health__")
    async def health() -> Response:
        return Response(status_code=204)

    return app


def wrap(app: FastAPI, injector: FaultInjector, *, contracts: bool | None = None) -> FaultMiddleware:
    """``app`` behind fault injection and, when ``contracts`` (default: ``specs.contracts_enabled()``),
    HubSpot's OpenAPI specs."""
    inner: Any = app
    if contracts if contracts is not None else specs.contracts_enabled():
        from billbridge.sandbox.hubspot.contract import ContractMiddleware  # openapi-core: a test dependency

        inner = ContractMiddleware(app)
    return FaultMiddleware(inner, injector, HubSpotErrors())


_counter = itertools.count(1)


def new_credentials() -> Credentials:
    n = next(_counter)
    return Credentials(
        client_id=f"sandbox-client-{n}",
        client_secret=secrets.token_hex(16),
        refresh_token=f"hs-rt-{secrets.token_hex(12)}",
        access_token="",
    )
