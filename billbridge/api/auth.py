"""Bearer API keys: each request names its key; the key names its legal entity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billbridge.api.errors import refuse
from billbridge.api.lookups import Lookups
from billbridge.store.api_keys import Principal
from billbridge.store.db import Store

_bearer = HTTPBearer(auto_error=False, description="An API key from `billbridge apikey create`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def lookups_of(request: Request) -> Lookups:
    lookups: Lookups = request.app.state.lookups
    return lookups


def authenticate_request(request: Request) -> Principal:
    """The principal of the request's bearer key; 401 when it is missing, unknown or revoked.

    The usage endpoints call this directly (FastAPI's dependency machinery costs more than a
    cached key lookup on their hot path); the other endpoints use :data:`Auth`.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        error = refuse(401, "missing_api_key", "send an API key as `Authorization: Bearer <key>`")
        error.headers = _CHALLENGE
        raise error
    found = lookups_of(request).principal(store_of(request).read, token)
    if found is None:
        error = refuse(401, "invalid_api_key", "this API key is unknown or revoked")
        error.headers = _CHALLENGE
        raise error
    return found


async def principal(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Async on purpose: a cached key costs no I/O, and a sync dependency would hop to a thread.
    (``_credentials`` declares the bearer scheme in the OpenAPI document.)"""
    return authenticate_request(request)


Auth = Annotated[Principal, Depends(principal)]
SECURITY: list[dict[str, list[str]]] = [
    {"HTTPBearer": []}
]  # for operations that authenticate with authenticate_request
