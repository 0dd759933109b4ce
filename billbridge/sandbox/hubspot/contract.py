"""HubSpot's published OpenAPI specs, checked against every request and answer of the sandbox (openapi-core).

One spec per file of ``vendor-specs/hubspot``; a request is matched to the spec that has its path
(object names are turned into the type ids the specs use, ``deals`` -> ``0-3``). A request the spec
refuses is answered with HubSpot's 400 ``VALIDATION_ERROR``; a non-conforming answer is the
sandbox's own bug. Both are recorded in ``specs.VIOLATIONS``. Paths no spec file covers (the
properties API, the sandbox's own routes) pass unchecked.

Knowing changes to the specs, where they contradict HubSpot's own documentation and answers:
- a requested property an object does not have comes back as ``null`` (the documented behaviour of
  ``properties=``), while the object schemas type property values as non-null strings: read as nullable;
- the search guide documents ``{}`` as a valid search body and sorts as ``{"propertyName", "direction"}``
  objects, while the spec marks every field of ``PublicObjectSearchRequest`` required and types sorts
  as strings: no field is required, and a sort is a string or such an object;
- error answers are declared ``*/*``: read as the JSON they are.
"""

from __future__ import annotations

import json
import re
import warnings
from functools import cache
from typing import Any
from urllib.parse import parse_qs

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billbridge.sandbox import specs

SPEC_FILES = ("deals", "line_items", "companies", "products", "associations_v4", "oauth_v1")
_OBJECT_PATH = re.compile(r"^/crm/v3/objects/(deals)(?=/|$)")
_HOST = "https://api.hubapi.com"


def nullable_properties(doc: dict[str, Any]) -> dict[str, Any]:
    """The spec with object property maps nullable, and ``*/*`` answers (the errors) read as the JSON they are."""
    for methods in doc.get("paths", {}).values():
        for operation in methods.values():
            for answer in operation.get("responses", {}).values() if isinstance(operation, dict) else ():
                if "*/*" in answer.get("content", {}):
                    answer["content"]["application/json"] = answer["content"].pop("*/*")
    for answer in doc.get("components", {}).get("responses", {}).values():
        if "*/*" in answer.get("content", {}):
            answer["content"]["application/json"] = answer["content"].pop("*/*")
    search = doc.get("components", {}).get("schemas", {}).get("PublicObjectSearchRequest")
    if search is not None:
        search.pop("required", None)
        sort_object = {
            "type": "object",
            "required": ["propertyName"],
            "properties": {
                "propertyName": {"type": "string"},
                "direction": {"type": "string", "enum": ["ASCENDING", "DESCENDING"]},
            },
        }
        search["properties"]["sorts"]["items"] = {"oneOf": [{"type": "string"}, sort_object]}
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        props = schema.get("properties", {}).get("properties")
        if "Input" not in name and props and props.get("additionalProperties", {}).get("type") == "string":
            props["additionalProperties"] = {**props["additionalProperties"], "nullable": True}
    return doc


@cache
def _specs() -> tuple[tuple[re.Pattern[str], str, OpenAPI], ...]:
    """(path regex, spec path, spec) for every path of every spec file."""
    out = []
    for name in SPEC_FILES:
        doc = nullable_properties(json.loads(specs.spec_path(f"hubspot/{name}.json").read_text()))
        api = OpenAPI.from_dict(doc)
        for path in doc["paths"]:
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            out.append((pattern, path, api))
    # literal paths before templated ones, so /batch/read is not taken for /{dealId}
    return tuple(sorted(out, key=lambda entry: "{" in entry[1]))


def spec_for(path: str) -> tuple[str, OpenAPI] | None:
    """The spec form of ``path`` and the spec that defines it, or None."""
    path = _OBJECT_PATH.sub("/crm/v3/objects/0-3", path)
    for type_name, type_id in (("line_items", "0-8"), ("companies", "0-2"), ("products", "0-7")):
        path = path.replace(f"/crm/v3/objects/{type_id}", f"/crm/v3/objects/{type_name}")
    for pattern, _template, api in _specs():
        if pattern.match(path):
            return path, api
    return None


def _request(scope: Scope, path: str, body: bytes) -> MockRequest:
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
    args = {k: v if len(v) > 1 else v[0] for k, v in query.items()}
    content_type = headers.get("content-type", "application/json").split(";")[0]
    return MockRequest(
        _HOST, scope["method"].lower(), path, args=args, headers=headers, data=body or None, content_type=content_type
    )


def _errors(errors: Any) -> list[str]:
    out = []
    with warnings.catch_warnings():  # openapi-core does not check OAuth 2 schemes; the sandbox checks tokens
        warnings.simplefilter("ignore", UserWarning)
        listed = list(errors)
    for error in listed:
        causes = getattr(error, "__cause__", None)
        detail = getattr(causes, "schema_errors", None)
        if detail:
            out += [f"{error}: {list(e.absolute_path)} {e.message}" for e in detail]
        else:
            out.append(f"{type(error).__name__}: {error} {causes or ''}".strip())
    return out


class ContractMiddleware:
    """Checks requests and answers against HubSpot's specs; refuses what the spec refuses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = spec_for(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        path, api = found
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        request = _request(scope, path, body)
        wrong = [e for e in _errors(api.iter_request_errors(request)) if "SecurityNotFound" not in e]
        if wrong:
            where = f"{scope['method']} {scope['path']}"
            specs.report("hubspot", f"request {where}: {'; '.join(wrong)}")
            answer = json.dumps(
                {
                    "status": "error",
                    "message": f"Invalid input JSON on line 1: {wrong[0]}",
                    "correlationId": "00000000-0000-0000-0000-000000000000",
                    "category": "VALIDATION_ERROR",
                }
            ).encode()
            await send(
                {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": answer})
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, replay, keep)
        start = next(m for m in held if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
        response = MockResponse(payload, status_code=start["status"], headers=headers)
        for problem in _errors(api.iter_response_errors(request, response)):
            specs.report("hubspot", f"answer to {scope['method']} {scope['path']} ({start['status']}): {problem}")
        for message in held:
            await send(message)
