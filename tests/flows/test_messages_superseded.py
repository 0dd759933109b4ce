"""Reminder steps not sent are reported, each with its invoice and step: a step superseded by a
later one due on the same run (one reminder, not a burst) as well as a stale one, in the plan's
summary and the run's artifact."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from billbridge.flows.messages import messages_markdown, plan_messages
from billbridge.settings import Settings
from billbridge.store.db import Store
from tests.flows.messaging_world import world
from tests.flows.test_messages_plan import DUE, made


def test_superseded_and_stale_steps_are_reported_with_invoice_and_step(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    [invoice] = world(store, 1)
    settings = Settings(database_url=database_url, data_dir=tmp_path, reminder_stale_days=5)
    summary = plan_messages(store, settings, DUE + timedelta(days=1))  # down from before -3: -3 and +0 both due
    assert made(store, "reminder") == [f"reminder:{invoice}:+0 queued", f"reminder:{invoice}:-3 skipped"]
    assert summary.skipped == [
        f"invoice US-INV-1: reminder step -3 of {DUE - timedelta(days=3)} superseded "
        f"(step +0 of {DUE} goes out instead): skipped"
    ]
    artifact = messages_markdown(summary, None)
    assert "## Reminder steps skipped (1)" in artifact and "- invoice US-INV-1: reminder step -3 of" in artifact

    # Down again from +0 until +16: +7 is 9 days old (stale), +14 is due and goes out.
    later = plan_messages(store, settings, DUE + timedelta(days=16))
    assert later.skipped == [
        f"invoice US-INV-1: reminder step +7 of {DUE + timedelta(days=7)} is 9 days old (reminder_stale_days 5): "
        "skipped"
    ]
    assert f"reminder:{invoice}:+14 queued" in made(store, "reminder")
    assert plan_messages(store, settings, DUE + timedelta(days=17)).skipped == []  # reported once
