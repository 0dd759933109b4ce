"""The ``bill`` Prefect flow: bills, approves and queues when configured, leaves a summary artifact;
a rerun from the UI creates nothing twice."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from billbridge.flows.bill import bill
from billbridge.flows.importing import import_file
from billbridge.store import outbox
from billbridge.store.db import open_store
from billbridge.store.invoices import list_invoices

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


async def _artifact(key: str) -> str:
    async with get_client() as client:
        [latest] = await client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        return str(latest.data)


def test_bill_flow_approves_queues_and_reruns_safely(flow_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLBRIDGE_AUTO_APPROVE_INVOICES", "true")
    monkeypatch.setenv("BILLBRIDGE_PUSH_TARGETS", '["quickbooks", "stripe"]')
    store = open_store(flow_env)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        import_file(store, path)

    first = bill(as_of=date(2026, 11, 22))
    assert first["invoices"] > 0
    with store.read() as session:
        documents = list_invoices(session)
        pending = outbox.pending(session)
    assert {d["status"] for d in documents} == {"approved"}
    assert (
        first["queued"]["push.quickbooks"]
        == len(documents)
        == len([p for p in pending if p["topic"] == "push.quickbooks"])
    )
    assert "queued for push.quickbooks" in asyncio.run(_artifact("billing-run"))

    again = bill(as_of=date(2026, 11, 22))
    assert (again["invoices"], again["credit_notes"], again["queued"]) == (0, 0, {})
    with store.read() as session:
        assert len(list_invoices(session)) == len(documents)
        assert len(outbox.pending(session)) == len(pending)
    store.dispose()
