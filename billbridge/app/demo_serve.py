"""``billbridge demo --serve``: the demo's world left running for a person to explore.

A Prefect server (UI and API) is started first, so the demo's flow runs are in its UI; after the
demo, the deployments of ``prefect.yaml`` are served from this process (with their schedules), the
billbridge API listens, and the four sandboxes stay up, until Ctrl-C. Any flow can be rerun from
the UI; the served runs see the same configuration (the sandboxes' settings are in the environment).
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from billbridge.app.settings import CHECKOUT
from billbridge.errors import UserError

SERVER_START_SECONDS = 180.0


class PortTaken(UserError):
    """A port the demo is to serve on is in use by another program."""


def require_free_ports(ports: dict[str, int]) -> None:
    """Refuse ports in use (by option name) before the demo spends a minute, and one port given twice."""
    if len(set(ports.values())) < len(ports):
        raise PortTaken(f"{' and '.join(ports)} must differ (both {next(iter(ports.values()))})")
    for option, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind it
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise PortTaken(f"port {port} is in use by another program: choose another with {option}") from None


class PrefectServer:
    """``prefect server start`` on loopback in a child process, ready when its health check answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        # the server's own output, shown if it fails to start; lives as long as the server
        self.log = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def start(self) -> PrefectServer:
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        env = {
            **os.environ,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # `--port` alone moves the API, not the URL the UI is told to call (it stays on 4200: every
            # page says "Can't connect to Server API"); the settings move both.
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_SERVER_UI_API_URL": self.api_url,
        }
        env.pop("PREFECT_API_URL", None)  # the server is not a client of itself
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with {self.process.returncode} (is port {self.port} free?); "
                    f"it said:\n{self.said()}"
                )
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer on {self.url} within {SERVER_START_SECONDS:.0f} s")

    def said(self, lines: int = 20) -> str:
        """The last lines the server printed (uvicorn's reason when it cannot bind or migrate)."""
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def deployments(path: Path = CHECKOUT / "prefect.yaml") -> list[Any]:
    """The deployments declared in ``prefect.yaml``, as deployments this process serves (same names,
    parameters and schedules; no work pool: the runs execute here)."""
    from prefect.schedules import Cron, Interval

    spec = yaml.safe_load(path.read_text())
    out = []
    for item in spec["deployments"]:
        module_path, _, name = item["entrypoint"].partition(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        schedules = [
            Interval(s["interval"], timezone=s.get("timezone"))
            if "interval" in s
            else Cron(s["cron"], timezone=s.get("timezone"))
            for s in item.get("schedules", [])
        ]
        out.append(
            getattr(module, name).to_deployment(
                name=item["name"], parameters=item.get("parameters") or {}, schedules=schedules or None
            )
        )
    return out


def serve_forever(api_app: Any, api_port: int) -> None:
    """Serve the billbridge API and the deployments until interrupted (Ctrl-C, SIGINT, SIGTERM)."""
    import asyncio

    from prefect.runner import Runner

    from billbridge.sandbox.server import SandboxServer

    stopping: list[asyncio.Task[None]] = []

    class StopsOnSigterm(Runner):
        """Prefect's runner, stopped cleanly by SIGTERM. Its own handler calls the async stop from
        inside the running loop without awaiting it ("coroutine 'Runner.astop' was never awaited");
        raising from the handler instead breaks whatever callback the loop was in. Here the stop is
        scheduled on the loop, which then ends the runner as if its work were done."""

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            loop = asyncio.get_event_loop()  # the runner's: the handler runs in its (the main) thread
            loop.call_soon_threadsafe(lambda: stopping.append(loop.create_task(self.astop())))

    runner = StopsOnSigterm(pause_on_shutdown=True)
    for deployment in deployments():
        runner.add_deployment(deployment)
    api = SandboxServer(api_app, port=api_port, name="billbridge-api").start()
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
