"""Fault injection and call counting for the vendor sandboxes, as one ASGI middleware.

Tests switch faults on through ``FaultInjector.add`` (in process) or ``POST /__sandbox__/faults``
(from outside); each fault matches requests by method and path regex, skips the first ``after``
matches and then hits ``times`` requests (``None``: until cleared). What a rate limit or an expired
credential looks like is the vendor's business: each sandbox passes its ``VendorErrors``.

Kinds:
- ``rate_limit``: the vendor's 429 (or its equivalent) with Retry-After.
- ``server_error``: a 503.
- ``slow``: the request is answered after ``delay`` seconds.
- ``drop``: the connection closes before a complete response (the request is not processed).
- ``expired_auth``: the vendor's answer to an expired token.
- ``lost_response``: the request is processed (and committed), then the connection drops.
- ``hold_response``: the request is processed (and committed), and the answer waits ``delay``
  seconds: a test kills the client in between, the crash between "the vendor accepted" and "we
  recorded it".
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["rate_limit", "server_error", "slow", "drop", "expired_auth", "lost_response", "hold_response"]
CONTROL_PREFIX = "/__sandbox__"


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class VendorErrors(Protocol):
    """How a vendor answers when it throttles, fails or refuses a credential."""

    def rate_limited(self, retry_after: int) -> ErrorResponse: ...

    def server_error(self) -> ErrorResponse: ...

    def unauthorized(self) -> ErrorResponse: ...


@dataclass
class Fault:
    kind: FaultKind
    path: str = ".*"  # regex searched in the request path
    method: str | None = None
    after: int = 0  # let this many matching requests through first
    times: int | None = 1  # then hit this many (None: every one until cleared)
    delay: float = 1.0  # slow: seconds
    retry_after: int = 1  # rate_limit: seconds
    hits: int = 0
    seen: int = 0
    done: bool = False  # hold_response: the vendor's work is done, the answer is held

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and re.search(self.path, path) is not None


class FaultInjector:
    """The faults switched on for one sandbox, and a count of the calls it answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()  # "GET /services/data/v62.0/query" -> n

    def add(self, fault: Fault | None = None, /, **kwargs: Any) -> Fault:
        fault = fault or Fault(**kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def total_calls(self, pattern: str = ".*") -> int:
        with self._lock:
            return sum(n for key, n in self.calls.items() if re.search(pattern, key))

    def take(self, method: str, path: str) -> Fault | None:
        """Count the call and return the fault that hits it, if any."""
        with self._lock:
            self.calls[f"{method} {path}"] += 1
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after or (fault.times is not None and fault.hits >= fault.times):
                    continue
                fault.hits += 1
                return fault
        return None


class _Dropped(Exception):
    """Raised after the response has started: uvicorn then closes the connection mid-response."""


class FaultMiddleware:
    """Wraps a vendor app: applies the injector's faults and serves the control routes."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, errors: VendorErrors) -> None:
        self.app, self.injector, self.errors = app, injector, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self._control(method, path, receive, send)
            return
        fault = self.injector.take(method, path)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            await self.app(scope, receive, send)
        elif fault.kind == "rate_limit":
            await _send(send, self.errors.rate_limited(fault.retry_after))
        elif fault.kind == "server_error":
            await _send(send, self.errors.server_error())
        elif fault.kind == "expired_auth":
            await _send(send, self.errors.unauthorized())
        elif fault.kind == "drop":
            await _drop(send)
        elif fault.kind == "hold_response":
            held: list[Message] = []

            async def keep(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, keep)
            fault.done = True
            await asyncio.sleep(fault.delay)
            for message in held:
                await send(message)
        else:  # lost_response: let the vendor do the work, then lose the answer
            await self.app(scope, receive, _discard)
            await _drop(send)

    async def _control(self, method: str, path: str, receive: Receive, send: Send) -> None:
        if path == f"{CONTROL_PREFIX}/faults" and method == "POST":
            body = await _read_body(receive)
            try:
                fault = self.injector.add(Fault(**json.loads(body or b"{}")))
            except (TypeError, ValueError) as exc:
                await _send(send, ErrorResponse(400, {"error": str(exc)}))
                return
            await _send(send, ErrorResponse(201, asdict(fault)))
        elif path == f"{CONTROL_PREFIX}/faults" and method == "DELETE":
            self.injector.clear()
            await _send(send, ErrorResponse(204, None))
        elif path == f"{CONTROL_PREFIX}/faults":
            await _send(send, ErrorResponse(200, [asdict(f) for f in self.injector.faults]))
        elif path == f"{CONTROL_PREFIX}/calls":
            await _send(send, ErrorResponse(200, dict(self.injector.calls)))
        else:
            await _send(send, ErrorResponse(404, {"error": f"no control route {method} {path}"}))


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, response: ErrorResponse) -> None:
    body = b"" if response.body is None else json.dumps(response.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Promise a body and close the connection instead: the client sees a broken response."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise _Dropped


async def _discard(message: Message) -> None:
    return None
