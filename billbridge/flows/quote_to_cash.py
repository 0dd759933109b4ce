"""The parent flow: CRM sync -> billing -> push -> collect -> reconcile -> customer messages (with an SMTP
server configured) -> revenue recognition, each step its
own flow.

Every step also runs (and reruns) alone from the Prefect UI; the parent only calls them in the
order of the data flow. Which CRMs (and Stripe subscriptions: ``crm_sources`` may name ``stripe``),
targets and payment sources take part is configuration.
A step that fails does not stop the ones that do not depend on it: billing still runs when one
CRM is down, reconciliation still runs when a push failed; the run then ends failed, showing which.
Last, the monitors' values of the day are kept and their alerts raised (``snapshot_monitors``).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from billbridge.flows.bill import bill
from billbridge.flows.collect import collect_payments
from billbridge.flows.message_templates import template_dir
from billbridge.flows.messages import send_reminders
from billbridge.flows.metrics import headline, headline_markdown, today_utc
from billbridge.flows.monitors import snapshot_monitors
from billbridge.flows.push import push_invoices
from billbridge.flows.reconcile import reconcile_payments
from billbridge.flows.revenue import recognize_revenue
from billbridge.flows.sync_crm import sync_crm
from billbridge.settings import Settings
from billbridge.store.db import open_store
from billbridge.vendors.registry import payment_sources, push_target

PAYMENT_SOURCES = payment_sources()  # the registry's: stripe, quickbooks


@flow(name="quote_to_cash")
def quote_to_cash(as_of: date | None = None) -> dict[str, Any]:
    """One pass of the whole loop over the configured systems; safe to rerun at any time."""
    settings = Settings()
    if settings.smtp is not None:  # a broken template file stops the loop before it does anything
        template_dir(settings.message_templates_dir)
    steps: dict[str, Any] = {}
    failed: list[str] = []

    def step(name: str, run: Any, *args: Any, **kwargs: Any) -> None:
        state = run(*args, return_state=True, **kwargs)
        if state.is_completed():
            steps[name] = state.result()
        else:
            failed.append(name)
            steps[name] = {"failed": str(state.message or state.name)}

    for source in settings.crm_sources:
        step(f"sync_crm.{source}", sync_crm, source=source)
    step("bill", bill, as_of=as_of)
    for target in settings.push_targets:
        step(f"push.{target}", push_invoices, target=target)
    if any(push_target(target).collects for target in settings.push_targets):
        step("collect", collect_payments)
    for source in PAYMENT_SOURCES:  # a source's payments pay the invoices pushed to it
        if source in settings.push_targets:
            step(f"reconcile.{source}", reconcile_payments, source=source)
    if settings.smtp is not None:
        step("send_reminders", send_reminders, as_of=as_of)
    step("recognize_revenue", recognize_revenue, through=as_of)
    step("snapshot_monitors", snapshot_monitors, as_of=as_of)
    publish_metrics(settings, as_of)
    if failed:
        raise RuntimeError(f"quote_to_cash: {', '.join(failed)} failed (the other steps ran): {steps}")
    return steps


def publish_metrics(settings: Settings, as_of: date | None) -> None:
    """The headline finance metrics as a markdown artifact, and a link artifact to the dashboard."""
    day = as_of or today_utc()
    data = headline(open_store(settings.database), day)
    create_markdown_artifact(
        headline_markdown(data, day), key="finance-metrics", description=f"Finance metrics on {day}"
    )
    dashboard = f"http://{settings.api_host}:{settings.api_port}/"
    create_link_artifact(dashboard, link_text="billbridge dashboard", key="dashboard", description="billbridge serve")
