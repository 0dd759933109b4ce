"""Serve an ASGI app on loopback from a background thread: how tests, benchmarks and the demo run sandboxes.

The socket is bound before the thread starts (port 0 picks a free port), so ``url`` is known at once
and nothing races for ports. With ``tls`` the server speaks https with a throwaway certificate.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn

from billbridge.sandbox.tls import TlsFiles


class SandboxServer:
    """One uvicorn server in a daemon thread; use as a context manager or call start()/stop()."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, tls: TlsFiles | None = None, name: str = "sandbox"
    ) -> None:
        self.app, self.host, self.tls, self.name = app, host, tls, name
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: without it Nagle + delayed ACK add ~40 ms to every response
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",  # injected faults raise on purpose; their tracebacks are noise
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else self.host  # the certificate names localhost and 127.0.0.1
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> SandboxServer:
        self._sock.listen(2048)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} sandbox did not start")
            threading.Event().wait(0.01)
        return self

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
