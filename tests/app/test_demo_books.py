"""The demo's QuickBooks company keeps the books of all four demo entities: a month's journal entry of
each posts (closing October used to post only the USD one: the company had multicurrency off, so the
EUR, GBP and JPY entries were refused and the demo summary said ``journal_entries: 1``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billbridge.app.demo import running_sandboxes
from billbridge.flows.push import token_vault
from billbridge.mapping.journal import AccountMapping, PeriodRevenue
from billbridge.sandbox import demo_world
from billbridge.settings import Settings
from billbridge.store.db import Store
from billbridge.vendors.registry import vendor

pytestmark = pytest.mark.slow  # starts the demo's sandboxes


def test_a_journal_entry_of_every_demo_entity_posts_at_the_demo_rate(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    amount = Decimal(100)  # 100 of each entity's currency recognised in October, drawn from deferred revenue
    with running_sandboxes(3) as running:
        for key, value in running.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
        settings = Settings()
        accounts = settings.revenue_accounts
        build = vendor("quickbooks").journals
        assert accounts is not None and build is not None
        entries = [
            (
                PeriodRevenue(
                    e.entity_ref, e.currency, date(2026, 10, 1), {("", "ratable"): amount}, amount, Decimal(0)
                ),
                AccountMapping.model_validate(accounts.for_entity(e.entity_ref)),
            )
            for e in demo_world.ENTITIES
        ]
        target = build(settings, token_vault(store, settings))
        try:
            results = target.post_journal_entries(entries)
        finally:
            target.close()
        posted = {str(r["DocNumber"]): r for r in running.quickbooks.company.all("JournalEntry")}
    assert [(r.status, r.error) for r in results] == [("created", None)] * len(demo_world.ENTITIES)
    # at the demo price book's rates (USD per unit, 6 places): EUR 1/0.92, GBP 1/0.79, JPY 1/150
    assert {number: (str(e["ExchangeRate"]), str(e["HomeTotalAmt"])) for number, e in posted.items()} == {
        "REV202610-USD-US-INC": ("1", "100.00"),
        "REV202610-EUR-EU-BV": ("1.086957", "108.70"),
        "REV202610-GBP-UK-LTD": ("1.265823", "126.58"),
        "REV202610-JPY-JP-KK": ("0.006667", "0.67"),
    }
