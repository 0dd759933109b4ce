"""Credentials never reach a log, and the files billbridge creates are private.

At DEBUG (``PREFECT_LOGGING_ROOT_LEVEL=DEBUG``) requests-oauthlib logged ``Adding token
{'access_token': ..., 'refresh_token': ...}`` on stderr and into Prefect's log table. Here a real call
goes to each vendor's sandbox through its SDK at DEBUG, and no access token, refresh token, API key,
client secret, password or Authorization header value may appear in what was logged; the entry
points (the command, the flows, the API) install the redaction in a fresh process each. The SQLite
store, ``secret.key`` and the data folder are 0600 / 0700.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from billbridge import redaction
from billbridge.sandbox.quickbooks.running import RunningQuickBooks, start_quickbooks
from billbridge.secrets import Sealer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    import prefect  # noqa: F401  (configures logging on import: before the levels are set here)

    redaction.install()  # as the command, the flows and the API do (each is checked in its own process below)
    caplog.set_level(logging.DEBUG)
    for name in redaction.CREDENTIAL_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def leaked(text: str, secrets: set[str]) -> set[str]:
    """The secrets (at least 6 characters: not a fragment of the words around) found in ``text``."""
    return {s for s in secrets if len(s) >= 6 and s in text}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged: messages and tracebacks, as a handler would write them."""
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.fixture
def qbo() -> Iterator[RunningQuickBooks]:
    running = start_quickbooks()
    try:
        yield running
    finally:
        running.stop()


def quickbooks_secrets(qbo: RunningQuickBooks) -> set[str]:
    basic = base64.b64encode(f"{qbo.client_id}:{qbo.client_secret}".encode()).decode()
    company = qbo.company
    return {qbo.client_secret, qbo.refresh_token, basic, *company.refresh_tokens, *company.access_tokens}


def test_quickbooks_tokens_are_not_logged_at_debug(
    qbo: RunningQuickBooks, debug_logs: pytest.LogCaptureFixture
) -> None:
    from billbridge.connectors.quickbooks.client import QuickBooksConfig
    from billbridge.connectors.quickbooks.tokens import InMemoryTokenStore, OAuthTokens
    from billbridge.vendors.quickbooks import QuickBooks

    config = QuickBooksConfig(
        qbo.client_id,
        qbo.client_secret,
        qbo.realm_id,
        api_url_v3=qbo.api_url_v3,
        discovery_url=qbo.discovery_url,
        ca_bundle=str(qbo.ca_bundle),
    )
    with QuickBooks(config, InMemoryTokenStore(OAuthTokens(qbo.refresh_token))) as connector:
        list(connector.pull_payments(None))
        qbo.company.expire_access_tokens()  # a refresh in the middle: the new tokens are logged too
        list(connector.pull_payments(None))
    text = logged(debug_logs)
    assert "Adding token" in text  # what leaked: requests-oauthlib at DEBUG
    assert "[REDACTED]" in text
    assert leaked(text, quickbooks_secrets(qbo)) == set()


def test_stripe_api_keys_are_not_logged_at_debug(debug_logs: pytest.LogCaptureFixture) -> None:
    from billbridge.sandbox.stripe import start_seeded
    from billbridge.vendors.stripe import Stripe

    with start_seeded(api_key="rk_live_b1llbr1dgeRestrictedKey") as stripe:
        connector = Stripe(stripe.api_key, base_url=stripe.url)
        assert list(connector.pull_payments(None))
        connector.ensure_customer("globex", "Globex", "ap@globex.test", entity_ref="us-inc")
        text = logged(debug_logs)
        assert "Stripe API response" in text  # the SDK's own log, at DEBUG
        assert leaked(text, {stripe.api_key, stripe.webhook_secret}) == set()


def test_hubspot_tokens_are_not_logged_at_debug(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billbridge.connectors.hubspot import connect
    from billbridge.sandbox import demo_world
    from billbridge.sandbox.hubspot import HubSpotSandbox

    with HubSpotSandbox.start(demo_world.generate(20, seed=3)) as sandbox:
        for key, value in sandbox.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BILLBRIDGE_HUBSPOT__REQUESTS_PER_10S", "100000")
        sandbox.tokens.expire_all()  # the first call refreshes the token
        assert list(connect(None).pull(None))
        assert sandbox.tokens.refreshes >= 1
        # hubspot-api-client sets its loggers (and urllib3's) to WARNING whenever it builds a client,
        # so at DEBUG it logs nothing; with its debug switch on, its REST client logs each answer's
        # body, a token refresh's too: that record, with the token the refresh answered.
        new_token = next(t for t, expiry in sandbox.tokens.expiries.items() if expiry)
        body = json.dumps({"access_token": new_token, "refresh_token": sandbox.credentials.refresh_token})
        logging.getLogger("hubspot.oauth.rest").warning("response body: %s", body.encode())
        creds = sandbox.credentials
        secrets = {creds.access_token, creds.client_secret, creds.refresh_token, *sandbox.tokens.expiries}
        text = logged(debug_logs)
        assert "response body" in text and "[REDACTED]" in text
        assert leaked(text, secrets) == set()


def test_salesforce_credentials_are_not_logged_at_debug(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billbridge.connectors.salesforce import connect
    from billbridge.sandbox import demo_world
    from billbridge.sandbox.salesforce import SalesforceSandbox

    sandbox = SalesforceSandbox(demo_world.generate(20, seed=4)).start()
    try:
        for key, value in sandbox.env().items():
            monkeypatch.setenv(key, value)
        assert list(connect(None).pull(None))
        secrets = {sandbox.credentials["client_secret"], *sandbox.org.sessions}
        text = logged(debug_logs)
        assert "/services/oauth2/token" in text  # urllib3 at DEBUG: the token request was made
        assert leaked(text, secrets) == set()
    finally:
        sandbox.stop()


def test_what_the_libraries_log_is_redacted_in_every_shape() -> None:
    shapes = {
        "Adding token {'access_token': 'AT-1x2y3z', 'refresh_token': 'RT1-4u5v6w', 'token_type': 'bearer'}": (
            "Adding token {'access_token': '[REDACTED]', 'refresh_token': '[REDACTED]', 'token_type': 'bearer'}"
        ),
        "body grant_type=refresh_token&refresh_token=RT1-4u5v6w&x=1": (
            "body grant_type=refresh_token&refresh_token=[REDACTED]&x=1"
        ),
        "headers {'Authorization': 'Bearer AT-1x2y3z'}": "headers {'Authorization': '[REDACTED]'}",
        "Authorization: Basic QUI6c2VjcmV0Cg==": "Authorization: [REDACTED] [REDACTED]",
        'response body: b\'{"access_token":"hs-at-99","expires_in":1800}\'': (
            'response body: b\'{"access_token":"[REDACTED]","expires_in":1800}\''
        ),
        "BILLBRIDGE_STRIPE__API_KEY=sk_live_abcdef123": "BILLBRIDGE_STRIPE__API_KEY=[REDACTED]",
        "signed with whsec_0123456789": "signed with [REDACTED]",
        "<n1:password>hunter22</n1:password>": "<n1:password>[REDACTED]</n1:password>",
        "x_refresh_token_expires_in=8726400": "x_refresh_token_expires_in=8726400",  # not a credential
        '"POST /oauth2/v1/tokens/bearer HTTP/1.1" 200': '"POST /oauth2/v1/tokens/bearer HTTP/1.1" 200',
    }
    assert {text: redaction.redact(text) for text in shapes} == shapes


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=180, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        ("the flows", "import billbridge.flows.push"),
        (
            "the API",
            "from billbridge.api.app import create_app\nfrom billbridge.store.db import open_store\n"
            "import sys\ncreate_app(open_store(sys.argv[1] if len(sys.argv) > 1 else 'sqlite://'))",
        ),
    ],
)
def test_the_flows_and_the_api_redact_in_their_own_process(entry: str, code: str) -> None:
    """A Prefect worker imports the flow it runs; ``billbridge serve`` builds the app: each installs it."""
    probe = (
        f"{code}\nimport logging\nlogging.basicConfig(level=logging.DEBUG, force=True)\n"
        "logging.getLogger('requests_oauthlib.oauth2_session').debug('Adding token %s', {'access_token': 'AT-s3cr3t'})\n"
    )
    done = _run(probe, {"BILLBRIDGE_CONFIG": "/nonexistent/billbridge.toml"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Adding token {'access_token': '[REDACTED]'}" in done.stderr, entry
    assert "AT-s3cr3t" not in done.stderr, entry


def test_the_command_at_debug_logs_no_quickbooks_token(qbo: RunningQuickBooks, tmp_path: Path) -> None:
    """The reported case: PREFECT_LOGGING_ROOT_LEVEL=DEBUG, a QuickBooks call, tokens on stderr."""
    env = {
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "BILLBRIDGE_CONFIG": "/nonexistent/billbridge.toml",
        "BILLBRIDGE_DATA_DIR": str(tmp_path / "data"),
        "BILLBRIDGE_QUICKBOOKS__CLIENT_ID": qbo.client_id,
        "BILLBRIDGE_QUICKBOOKS__CLIENT_SECRET": qbo.client_secret,
        "BILLBRIDGE_QUICKBOOKS__REALM_ID": qbo.realm_id,
        "BILLBRIDGE_QUICKBOOKS__REFRESH_TOKEN": qbo.refresh_token,
        "BILLBRIDGE_QUICKBOOKS__API_URL_V3": qbo.api_url_v3,
        "BILLBRIDGE_QUICKBOOKS__DISCOVERY_URL": qbo.discovery_url,
        "BILLBRIDGE_QUICKBOOKS__CA_BUNDLE": str(qbo.ca_bundle),
    }
    command = str(Path(sys.executable).with_name("billbridge"))
    done = subprocess.run(
        [command, "reconcile", "--source", "quickbooks", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["outcomes"] == {}
    assert "Adding token" in done.stderr and "[REDACTED]" in done.stderr  # DEBUG was on, and redacted
    assert leaked(done.stderr, quickbooks_secrets(qbo)) == set()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_the_secret_key_and_the_data_folder_are_private(tmp_path: Path) -> None:
    from billbridge.secrets import Sealer
    from billbridge.settings import Settings
    from billbridge.store.db import open_store

    saved = os.umask(0o022)  # the usual umask: files 0644 and folders 0755 unless made private
    try:
        data = tmp_path / "fresh" / "data"  # the default data folder: the one folder billbridge makes
        store = open_store(Settings(data_dir=data, database_url=None).database)
        Sealer.from_settings(None, data).seal("a refresh token")
        with store.read() as session:  # a connection open: the write-ahead log and its index exist
            session.execute(text("SELECT count(*) FROM quarantined_records"))
            made = {p.name: mode(p) for p in data.iterdir()}
        store.dispose()
        keys = tmp_path / "keys"
        Sealer.from_settings(None, keys)
    finally:
        os.umask(saved)
    assert mode(tmp_path / "fresh") == mode(data) == mode(keys) == 0o700
    names = ("billbridge.db", "billbridge.db-wal", "billbridge.db-shm", "secret.key")
    assert made == dict.fromkeys(names, 0o600)
    assert mode(keys / "secret.key") == 0o600


def test_the_demo_store_is_private(tmp_path: Path) -> None:
    from billbridge.app.demo import DEMO_STORE, demo_world_store
    from billbridge.store.db import open_store

    saved = os.umask(0o022)
    try:
        url = demo_world_store(tmp_path / "demo-data", DEMO_STORE, deals=10)
        open_store(url).dispose()
    finally:
        os.umask(saved)
    assert mode(tmp_path / "demo-data") == 0o700 and mode(tmp_path / "demo-data" / "demo.db") == 0o600


def _derive_at_once(data: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(Sealer.from_settings(None, Path(data)).derive("check"))


def test_processes_starting_together_on_a_fresh_installation_share_one_key(tmp_path: Path) -> None:
    """Two pushes started at once on a fresh installation both found no key, and the second failed on
    the first's file (FileExistsError, seen in CI). Now every process ends with the one key in place."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(5):  # the race is narrow: each attempt a fresh folder and 6 processes let go at once
        data = tmp_path / f"attempt-{attempt}"
        barrier, results = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_derive_at_once, args=(str(data), barrier, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [worker.exitcode for worker in workers] == [0] * 6
        derived = {results.get(timeout=5) for _ in workers}
        assert derived == {Sealer.from_settings(None, data).derive("check")}
        assert sorted(p.name for p in data.iterdir()) == ["secret.key"]  # no draft left behind
