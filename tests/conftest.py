"""Shared fixtures: a fresh store per test on SQLite and, where a server is configured, PostgreSQL.

PostgreSQL tests need BILLBRIDGE_TEST_POSTGRES_URL (an admin URL; .ci/run starts a throwaway
server and sets it). Without it they skip with that reason, except under CI=true where a missing
server is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Prefect configures logging when first imported: its console handler keeps the sys.stderr of that
# moment. Imported here, that is pytest's own stream; first imported by a CLI command run through
# typer's CliRunner (which swaps sys.stderr during invoke and closes its stream afterwards), every
# later warning failed on the closed stream and its "--- Logging error ---" landed in the next
# command's captured output (a --json answer no longer parsed), depending on which tests a process
# had run before.
import prefect  # noqa: F401
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from billbridge.sandbox import specs
from billbridge.store.db import Store, normalise_url, open_store

# Property tests check values, never time: hypothesis' default 200 ms deadline per example failed
# them on a loaded 2-core machine (a flaky DeadlineExceeded, not a defect). Speed is the benches' job.
hypothesis_settings.register_profile("billbridge", deadline=None)
hypothesis_settings.load_profile("billbridge")

PG_ADMIN_URL = os.environ.get("BILLBRIDGE_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _vendor_specs_present() -> bool:
    try:
        specs.spec_path("quickbooks/xsd/IntuitRestServiceDef.xsd")
        specs.spec_path("hubspot/deals.json")
    except FileNotFoundError:
        return False
    return True


# Every sandbox a test starts (in process or in a subprocess it spawns) checks its traffic against the
# vendors' published definitions; a violation fails the test that caused it. Without the specs (a
# clone without ../shared) the checks are off, except under CI=true, where their absence fails.
if IN_CI or _vendor_specs_present():
    os.environ[specs.CONTRACTS_ENV] = "1"


@pytest.fixture(autouse=True)
def vendor_contracts() -> Iterator[None]:
    specs.take_violations()
    yield
    seen = specs.take_violations()
    assert not seen, "vendor contract violations:\n" + "\n".join(seen[:20])


def vendor_spec(relative: str) -> Path:
    """A vendor spec file (``specs.spec_path``); skipped when absent, except under CI=true where it fails."""
    try:
        return specs.spec_path(relative)
    except FileNotFoundError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


def require_contracts() -> None:
    """For tests of the contract checks themselves: skipped without the vendor specs (failed under CI)."""
    vendor_spec("quickbooks/xsd/IntuitRestServiceDef.xsd")
    vendor_spec("hubspot/deals.json")


def postgres_admin_url() -> str:
    if not PG_ADMIN_URL:
        reason = "PostgreSQL tests need BILLBRIDGE_TEST_POSTGRES_URL (set by .ci/run)"
        if IN_CI:
            pytest.fail(f"CI=true but no PostgreSQL: {reason}")
        pytest.skip(reason)
    return normalise_url(PG_ADMIN_URL)


@contextmanager
def _postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` when given), dropped afterwards."""
    admin_url = postgres_admin_url()
    name = f"bb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with _postgres_database() as url:
        yield url


# Migrating a new store from nothing takes a second or two (every Alembic revision, SQLite's table
# rebuilds); a test of something else starts from a copy of a store migrated once per test process
# instead. The copy is at the head revision, so the product's own open_store still runs its (no-op)
# migration on it; the migrations themselves are tested from an empty database in tests/store.
@pytest.fixture(scope="session")
def _sqlite_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrated") / "billbridge.db"
    open_store(f"sqlite:///{path}").dispose()
    assert not path.with_name(path.name + "-wal").exists(), "the migrated store left a WAL file to copy"
    return path


@pytest.fixture(scope="session")
def _postgres_migrated() -> Iterator[str]:
    with _postgres_database() as url:
        open_store(url).dispose()  # no connection may stay open on a template
        yield make_url(url).database or ""


# The schema as PostgreSQL describes it: columns, constraints, indexes, triggers. A test that changed
# it (a migration downgraded and upgraded again, a trigger injecting a failure) leaves a database that
# is not handed to the next test.
SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
    SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
        || coalesce(column_default, '') AS x
    FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT tgrelid::regclass::text || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT sequencename || ' ' || start_value FROM pg_sequences WHERE schemaname = 'public'
    UNION ALL SELECT 'alembic ' || version_num FROM alembic_version
) AS schema
"""


class _ReusedPostgres:
    """One PostgreSQL database per test process, emptied for each test instead of copied from the
    migrated template: copying it is CREATE DATABASE (0.5 to 0.8 s a test on 2 cores, about 300 s
    of the suite's PostgreSQL tests), emptying it is one round trip. Empty means what a copy of the
    template is: every table without rows (the migrated template holds none but Alembic's version,
    checked at start), every sequence at its start, no connection left open, and the same schema
    (checked by its fingerprint; a test that changed it gets a new copy)."""

    def __init__(self, template: str) -> None:
        self.admin_url = postgres_admin_url()
        self.template = template
        self.name: str | None = None
        template_url = make_url(self.admin_url).set(database=template).render_as_string(hide_password=False)
        engine = create_engine(template_url)
        try:
            with engine.connect() as conn:
                self.fingerprint = conn.execute(text(SCHEMA_FINGERPRINT)).scalar_one()
                tables = sorted(
                    conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                        )
                    ).scalars()
                )
                held = [t for t in tables if conn.execute(text(f'SELECT EXISTS (SELECT FROM "{t}")')).scalar()]
                assert not held, f"the migrated template holds rows in {held}: emptying would not copy it"
                sequences = conn.execute(
                    text("SELECT sequencename, start_value FROM pg_sequences WHERE schemaname = 'public'")
                ).all()
        finally:
            engine.dispose()
        # Foreign keys are not checked while emptying (replication role: their triggers do not fire),
        # so the tables need no order; nothing refers to a row once all are gone.
        self.empty_sql = (
            "SET LOCAL lock_timeout = '10s'; SET LOCAL session_replication_role = replica; "
            + " ".join(f'DELETE FROM "{t}";' for t in tables)
            + " ".join(f"SELECT setval('\"{name}\"', {start}, false);" for name, start in sequences)
        )

    def url(self) -> str:
        assert self.name is not None
        return make_url(self.admin_url).set(database=self.name).render_as_string(hide_password=False)

    def fresh(self) -> str:
        """The database emptied for the next test (a new copy of the template if it cannot be)."""
        if self.name is not None and not self._emptied():
            self.drop()
        if self.name is None:
            self.name = f"bb_test_{uuid.uuid4().hex[:12]}"
            self._admin(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')
        return self.url()

    def _emptied(self) -> bool:
        # what the last test left connected (a pool not disposed, a killed run's children) goes first
        self._admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        engine = create_engine(self.url())
        try:
            with engine.connect() as conn:
                if conn.execute(text(SCHEMA_FINGERPRINT)).scalar_one() != self.fingerprint:
                    return False
                conn.exec_driver_sql(self.empty_sql)  # in the transaction the fingerprint's query began
                conn.commit()
            return True
        except OperationalError:  # a lock not given up in time, a connection refused: a new copy instead
            return False
        finally:
            engine.dispose()

    def drop(self) -> None:
        if self.name is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = None

    def _admin(self, sql: str) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(sql))
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def _postgres_reused(_postgres_migrated: str) -> Iterator[_ReusedPostgres]:
    reused = _ReusedPostgres(_postgres_migrated)
    try:
        yield reused
    finally:
        reused.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store's URL for one test: SQLite in the test's folder, or a PostgreSQL database; migrated
    and empty (PostgreSQL's is one database per test process, emptied for each test)."""
    if request.param == "sqlite":
        path = tmp_path / "billbridge.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_migrated"), path)
        yield f"sqlite:///{path}"
        return
    yield request.getfixturevalue("_postgres_reused").fresh()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.dispose()


def _cli_modules() -> list[object]:
    """The command's modules loaded so far: the ``billbridge.app.cli`` package, its command groups, errors."""
    import sys

    return [
        m for n, m in list(sys.modules.items()) if n.startswith("billbridge.app.cli") or n == "billbridge.app.errors"
    ]


@pytest.fixture(autouse=True)
def _cli_consoles_follow_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's module-level rich consoles read COLUMNS at each print, as in a terminal: a console
    made while some test had COLUMNS set keeps that width for good (rich reads it at construction),
    so a later test's table would wrap at another test's width."""
    monkeypatch.delenv("COLUMNS", raising=False)
    for module in _cli_modules():
        for attribute in ("console", "err"):
            found = getattr(module, attribute, None)
            if found is not None:
                found.width = None  # rich: None = measure again at each print


# The fast tier (`pytest -m "not slow"`, for development) leaves out what needs a process, a server
# or a database server to start: a Prefect API (the flow tests), PostgreSQL (its variant of every
# store test; SQLite's stays), a browser, the installed command in a subprocess, fuzzing, linting.
# The README's test command runs everything. Single tests elsewhere carry @pytest.mark.slow.
SLOW_FIXTURES = frozenset({"prefect_api", "postgres_url"})
SLOW_FOLDERS = ("tests/flows/",)  # the Prefect flows end to end: sandboxes, worker processes, kills
SLOW_MODULES = frozenset(
    {
        "tests/app/test_cli.py",  # the installed command, the sandbox command
        "tests/app/test_cli_errors.py",  # the installed command in subprocesses, demo start-up
        "tests/app/test_secrets_stay_secret.py",  # each surface in its own process
        "tests/api/test_dashboard_browser.py",  # headless Chromium
        "tests/api/test_openapi_fuzz.py",  # schemathesis
        "tests/api/test_write_api_fuzz.py",  # schemathesis
        "tests/app/test_cli_api.py",  # `billbridge serve` over HTTP
        "tests/app/test_demo_serve.py",  # the demo twice, the second with a Prefect server
        "tests/test_code_quality.py",  # ruff and mypy over the tree
    }
)


# Connector tests against a running sandbox: the recorded scenarios (tests/connectors/test_*_replay.py)
# replay their main exchanges in the fast tier; the sandbox tests, with their faults, call counts and
# concurrent workers, run in the full suite.
SANDBOX_FIXTURES = frozenset({"stripe_sb", "clock", "qb", "connect", "sandbox", "sf", "hs", "world"})
SANDBOX_MODULES = ("tests/connectors/test_",)


# The suite's longest tests (a minute and more each on 2 cores), started first: with `-n 2 --dist
# worksteal` the other process works through the rest meanwhile, and no long test starts last and
# keeps one process busy while the other has nothing left (the suite's tail).
LONGEST_FIRST = (
    "tests/app/test_demo_serve.py::test_the_demo_twice_in_one_folder",
    "tests/api/test_openapi_fuzz.py::",
    "tests/api/test_write_api_fuzz.py::",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
    root = config.rootpath
    for item in items:
        module = item.path.relative_to(root).as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            module in SLOW_MODULES
            or module.startswith(SLOW_FOLDERS)
            or fixtures & SLOW_FIXTURES
            or item.get_closest_marker("postgres")
            or (module.startswith(SANDBOX_MODULES) and fixtures & SANDBOX_FIXTURES)
        ):
            item.add_marker(pytest.mark.slow)
