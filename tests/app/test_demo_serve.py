"""``billbridge demo --serve``: after the demo, a Prefect server with the deployments served, the API
and the sandboxes stay up; a flow rerun from the server completes; Ctrl-C stops everything."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from billbridge.app.demo_serve import deployments
from tests.app.test_cli import fresh_machine

EXPECTED = {
    "sync-salesforce",
    "sync-hubspot",
    "bill-daily",
    "push-quickbooks",
    "push-stripe",
    "collect-stripe",
    "reconcile-stripe",
    "reconcile-quickbooks",
    "quote-to-cash",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_served_deployments_are_those_of_prefect_yaml_with_their_schedules() -> None:
    served = {d.name: d for d in deployments()}
    assert set(served) >= EXPECTED
    assert served["sync-salesforce"].parameters == {"source": "salesforce"}
    assert [s.schedule.interval.total_seconds() for s in served["sync-hubspot"].schedules] == [900.0]
    assert [(s.schedule.cron, s.schedule.timezone) for s in served["bill-daily"].schedules] == [("0 2 * * *", "UTC")]
    assert not served["quote-to-cash"].schedules


def answered(client: httpx.Client, method: str, url: str, deadline: float) -> Any:
    """The JSON of a Prefect API call, asked again while the server answers an error (its SQLite
    database is busy under load: "database is locked") until the deadline."""
    while True:
        response = client.request(method, url, json={} if method == "POST" else None)
        if response.status_code < 400 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(1)


def test_demo_serve_keeps_the_ui_deployments_and_api_up_and_a_rerun_from_the_server_completes(tmp_path: Path) -> None:
    ui, api = free_port(), free_port()
    environ = fresh_machine(tmp_path, PREFECT_RUNNER_POLL_FREQUENCY="1")
    command = [str(Path(sys.executable).with_name("billbridge")), "demo", "--deals", "5", "--serve"]
    command += ["--ui-port", str(ui), "--api-port", str(api)]
    log = (tmp_path / "stderr").open("w+")
    process = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 300
        while "serving" not in (tmp_path / "stderr").read_text():
            assert process.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not start serving"
            time.sleep(1)
        base = f"http://127.0.0.1:{ui}/api"
        with httpx.Client(timeout=10) as client:
            served: dict[str, str] = {}
            while not set(served) >= EXPECTED:  # registered once serving has begun
                assert time.monotonic() < deadline, f"deployments served: {sorted(served)}"
                time.sleep(1)
                served = {d["name"]: d["id"] for d in client.post(f"{base}/deployments/filter", json={}).json()}
            assert client.get(f"http://127.0.0.1:{api}/docs").status_code == 200
            # the dashboard, with the dashboard user the demo printed for it
            printed = re.search(r"sign in as (\S+) with password (\S+)", (tmp_path / "stderr").read_text())
            assert printed, (tmp_path / "stderr").read_text()[-3000:]
            dashboard = f"http://127.0.0.1:{api}"
            form = client.get(f"{dashboard}/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            signed = client.post(
                f"{dashboard}/sign-in",
                data={"csrf": csrf, "username": printed.group(1), "password": printed.group(2)},
                headers={"Origin": dashboard},
                cookies=form.cookies,
            )
            assert signed.status_code == 303, signed.text
            page = client.get(f"{dashboard}/", cookies=signed.cookies)
            assert page.status_code == 200 and "MRR movements" in page.text
            assert client.get(f"http://127.0.0.1:{ui}/").status_code == 200  # the UI
            # the demo's own runs are in the server's history
            runs = client.post(f"{base}/flow_runs/filter", json={"flow_runs": {"name": {}}}).json()
            assert any(r["state_type"] == "COMPLETED" for r in runs)

            # a person reruns reconciliation from the UI: the served deployment runs it, and it completes
            create = f"{base}/deployments/{served['reconcile-quickbooks']}/create_flow_run"
            rerun = answered(client, "POST", create, deadline)
            state = None
            while time.monotonic() < deadline:
                state = answered(client, "GET", f"{base}/flow_runs/{rerun['id']}", deadline)["state_type"]
                if state in ("COMPLETED", "FAILED", "CRASHED"):
                    break
                time.sleep(1)
            assert state == "COMPLETED"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode in (0, 130, -signal.SIGINT)
    with socket.socket() as sock:  # the Prefect server went with it
        assert sock.connect_ex(("127.0.0.1", ui)) != 0
