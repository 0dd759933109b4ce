"""quote_to_cash's finance artifacts, and the summaries fresh after a billing run, on a Prefect server."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from billbridge.flows.importing import import_file
from billbridge.flows.quote_to_cash import quote_to_cash
from billbridge.store import metrics as sql
from billbridge.store.db import open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


async def _artifact(key: str) -> tuple[str, str]:
    async with get_client() as client:
        [latest] = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.type), str(latest.data)


def test_quote_to_cash_publishes_the_headline_metrics_and_a_link_to_the_dashboard(
    flow_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLBRIDGE_API_PORT", "8123")
    store = open_store(flow_env)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)
    quote_to_cash(as_of=date(2026, 11, 22))  # no CRM or targets configured: billing only

    with store.read() as session:  # the bill flow left the summaries built from what it billed
        states = sql.states(session)
        assert states["documents"].stamp == sql.invoices_stamp(session)
        assert states["mrr"].stamp == sql.contracts_stamp(session)[0]
    kind, markdown = asyncio.run(_artifact("finance-metrics"))
    assert kind == "markdown"
    assert "# Finance metrics on 2026-11-22" in markdown
    assert "| us-inc | USD | 5025.00 | 60300.00 | 3 |" in markdown  # MRR, ARR, active customers
    assert "## AR aging" in markdown and "## Cash expected in the next 4 weeks" in markdown
    _, link = asyncio.run(_artifact("dashboard"))  # Prefect keeps a link artifact as its markdown
    assert link == "[billbridge dashboard](http://127.0.0.1:8123/)"
    store.dispose()
