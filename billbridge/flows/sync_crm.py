"""Prefect flow ``sync_crm``: one CRM's deals into the contract store, one task per page.

Thin by design: the pipeline is ``flows/crm_pages.py``; here it is run with a task per page (so a
page's work is visible and retried alone) and a summary artifact in the Prefect UI. Rerunning a
run is safe: it resumes from the stored cursor, and re-storing a page changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import OperationalError

from billbridge.connectors.base import DealSource
from billbridge.flows.crm_pages import spec_for, sync_pages
from billbridge.flows.limits import vendor_slot
from billbridge.flows.metrics_refresh import refresh as refresh_metrics
from billbridge.settings import Settings
from billbridge.store.db import open_store
from billbridge.vendors.registry import vendor


def transient_store_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a page only when the store was briefly unavailable (locked, connection lost)."""
    try:
        state.result()
    except OperationalError:
        return True
    except Exception:
        return False
    return False


@task(
    name="store-crm-page",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_jitter_factor=0.5,
    retry_condition_fn=transient_store_error,
)
def store_page_task(work: Callable[[], None]) -> None:
    """One page: map, store, save the cursor (in one transaction)."""
    work()


def connect(name: str, settings: Settings) -> DealSource:
    """The configured connector of a contract source (the vendor registry's)."""
    contracts = vendor(name).contracts
    if contracts is None:
        raise ValueError(f"{name} is not a contract source")
    return contracts.connect(settings)


@flow(name="sync_crm", log_prints=False)
def sync_crm(source: str = "salesforce", full: bool = False) -> dict[str, Any]:
    """Pull the CRM's changed deals (``source="stripe"``: subscriptions) since the last run (``full``:
    all of them again) and store them as contracts; quarantined deals whose missing entity, customer
    or product the store has now are retried first."""
    settings = Settings()
    store = open_store(settings.database)
    spec = spec_for(source, dates=settings.crm_dates, settings=settings)
    with vendor_slot(source):
        summary = sync_pages(
            store,
            spec,
            connect(source, settings),
            today=datetime.now(UTC).date(),
            run_page=store_page_task,
            writer_process=settings.crm_sync_writer,
            full=full,
        )
    create_markdown_artifact(summary.markdown(), key=f"sync-crm-{source}", description=f"CRM sync from {source}")
    refresh_metrics(store, workers=settings.billing_workers)
    return summary.as_dict()
