"""QuickBooks Online as billbridge uses it: the connector's reads and writes with ``mapping.quickbooks``
translating both ways (documents and payments to vendor payloads, Payment records to payments).

``QuickBooks`` is the connector plus what billbridge asks of it: push documents (customers and items
ensured first, each document once), enter payments collected elsewhere and their later changes, and
pull the payments QuickBooks received. The connector knows payloads and HTTP; the mapping knows the
canonical shapes; this module joins them and holds no translation of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from billbridge.billing.documents import IncomingPayment, OutboundDocument
from billbridge.billing.partner_fees import PartnerBill
from billbridge.billing.revenue import month_end
from billbridge.connectors.base import PushResult, PushStatus
from billbridge.connectors.cursor import LagWindow
from billbridge.connectors.errors import ErrorKind, RetryPolicy, VendorError
from billbridge.connectors.pacing import SHARED, Pacer, Pacers
from billbridge.connectors.quickbooks.client import QuickBooksConfig
from billbridge.connectors.quickbooks.readers import EPOCH, PAYMENT_PAGE, PAYMENTS
from billbridge.connectors.quickbooks.tokens import TokenStore
from billbridge.connectors.quickbooks.writers import (
    DUPLICATE_DOC_NUMBER,
    DUPLICATE_NAME,
    QuickBooksConnector,
    QuickBooksWriteError,
    Write,
    Written,
    hidden_holders,
)
from billbridge.errors import NotConfigured
from billbridge.mapping.fields import map_each, record_id
from billbridge.mapping.journal import (
    AccountMapping,
    PeriodRevenue,
    account_problems,
    doc_number,
    journal_entry_payload,
    note,
    same_entry,
)
from billbridge.mapping.quickbooks import (
    CustomerSpec,
    amendments_in,
    bill_entity,
    bill_payload,
    clash_name,
    customer_payload,
    customer_spec,
    document_payload,
    expense_account_payload,
    item_name,
    item_payload,
    linked_invoice_ids,
    note_key,
    payment_amended,
    payment_deleted,
    payment_from_qbo,
    payment_note,
    payment_payload,
    qbo_entity,
    vendor_clash_name,
    vendor_payload,
)
from billbridge.settings import Settings
from billbridge.vendors.contract import PaymentPage

if TYPE_CHECKING:
    from billbridge.vendors.registry import TokenVault

ALL_CUSTOMERS = "Active IN (true, false)"  # a query returns active records only unless it names Active


@dataclass(frozen=True)
class PaymentToRecord:
    """A payment collected elsewhere, to enter in QuickBooks against the invoices it paid there."""

    payment: IncomingPayment
    customer_id: str  # the QuickBooks customer
    invoice_ids: Mapping[str, str]  # our invoice number -> QuickBooks Invoice Id


@dataclass(frozen=True)
class AmendmentToRecord:
    """A change to a payment we entered in QuickBooks, to make on that Payment: a refund or dispute
    withdrawal taking money back from its invoices, or its unapplied money applied by hand."""

    change_ref: str  # unique per change (listed in the Payment's PrivateNote once made)
    payment_id: str  # the QuickBooks Payment that entered the payment
    lines: Mapping[str, Decimal]  # QuickBooks Invoice Id -> change of the amount applied to it
    total_change: Decimal  # change of the payment's total (a refund: negative; an application: 0)


FEE_ACCOUNT = "Partner fees"  # the expense account partner fee Bills post to, by Name


def _existing_bill(bill: PartnerBill, record: dict[str, Any]) -> PushResult:
    return PushResult(bill.number, bill.doc_type, "existing", str(record["Id"]), str(record["SyncToken"]))


def connect(settings: Settings, tokens: TokenVault) -> QuickBooks:
    """The configured company (``settings.quickbooks``), its rotating tokens kept by ``tokens``
    (under ``quickbooks:<realm>``; the configured refresh token seeds it on first use)."""
    qs = settings.quickbooks
    if qs is None:
        raise NotConfigured("QuickBooks is not configured (BILLBRIDGE_QUICKBOOKS__CLIENT_ID, ...)")
    optional: dict[str, Any] = {
        k: v
        for k, v in {
            "api_url_v3": qs.api_url_v3,
            "discovery_url": qs.discovery_url,
            "ca_bundle": qs.ca_bundle,
            "requests_per_second": qs.requests_per_second,
            "batches_per_minute": qs.batches_per_minute,
        }.items()
        if v is not None
    }
    accounts = settings.revenue_accounts
    if accounts is not None:  # invoices post to deferred revenue through their items
        optional["income_account_id"] = accounts.deferred_revenue
    config = QuickBooksConfig(qs.client_id, qs.client_secret.get_secret_value(), qs.realm_id, **optional)
    initial = qs.refresh_token.get_secret_value() if qs.refresh_token else None
    return QuickBooks(
        config,
        tokens(f"quickbooks:{qs.realm_id}", initial),
        repoint_items=accounts is not None,
        pass_through_account=None if accounts is None else accounts.pass_through_account,
        policy=RetryPolicy.of(qs.retry),
    )


class QuickBooks(QuickBooksConnector):
    """One QuickBooks company as a push target and a payment source."""

    def __init__(
        self,
        config: QuickBooksConfig,
        tokens: TokenStore,
        *,
        worker: str | None = None,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        batch_pacer: Pacer | None = None,
        sleep: Callable[[float], None] | None = None,
        repoint_items: bool = False,
        pass_through_account: Callable[[str], str] | None = None,
        pacers: Pacers = SHARED,
    ) -> None:
        super().__init__(
            config,
            tokens,
            worker=worker,
            policy=policy,
            pacer=pacer,
            batch_pacer=batch_pacer,
            sleep=sleep,
            pacers=pacers,
        )
        # Revenue recognition on: items found with another income account are moved to ours (deferred revenue).
        self.repoint_items = repoint_items
        # Revenue recognition on: product_ref -> the income account its ``recognition: none`` (pass-through)
        # lines post to, through an item of their own (``PASS_THROUGH_ITEM``), never deferred revenue.
        self.pass_through_account = pass_through_account
        # Customers and items found or made by this connector: a push run's later batches need no look-up.
        self.customer_ids: dict[str, str] = {}
        self.item_ids: dict[str, str] = {}
        # Customers found or made under their clash name (a vendor or employee holds the plain one):
        # our customer ref -> (QuickBooks Id, DisplayName), for the caller to record as their reference.
        self.renamed_customers: dict[str, tuple[str, str]] = {}

    def payment_streams(self) -> dict[str, Callable[[str | None], Iterator[PaymentPage]]]:
        """One stream: a payment is one record however it changes."""
        return {"payments": self.pull_payments}

    def find_documents(self, docs: Sequence[OutboundDocument]) -> dict[str, dict[str, Any]]:
        """Our documents already in QuickBooks, by DocNumber: the lookup after an uncertain outcome."""
        found: dict[str, dict[str, Any]] = {}
        for entity in sorted({qbo_entity(d) for d in docs}):
            found.update(self.find(entity, "DocNumber", [d.number for d in docs if qbo_entity(d) == entity]))
        return found

    def _ensure_customers(self, customers: Sequence[CustomerSpec]) -> tuple[dict[str, str], dict[str, Written]]:
        """Customers by DisplayName, inactive ones included (QuickBooks' queries return active ones
        only, while a name is unique among all of them): an inactive one is made active again, a
        missing one created. A create refused as a taken name (6240) looks the name up again with
        its ``clash_name``: another run made the customer meanwhile, or a vendor or an employee holds
        the name, and then the customer is (or was, on an earlier run) made under the suffixed name."""
        specs = {c.customer_ref: c for c in customers}
        plain = {ref: customer_payload(c)["DisplayName"] for ref, c in specs.items()}
        suffixed = {ref: clash_name(c) for ref, c in specs.items()}
        found = self._customers_named(list(plain.values()))
        records = {ref: found[plain[ref]] for ref in specs if plain[ref] in found}
        writes = {
            ref: Write(f"billbridge-customer-{ref}-create", "Customer", customer_payload(c))
            for ref, c in specs.items()
            if ref not in records
        }
        created, failed = self.ensure(writes)
        taken = [ref for ref, outcome in failed.items() if DUPLICATE_NAME in outcome.codes]
        if taken:
            again = self._customers_named([n for ref in taken for n in (plain[ref], suffixed[ref])])
            records |= {
                ref: again.get(plain[ref]) or again[suffixed[ref]]
                for ref in taken
                if plain[ref] in again or suffixed[ref] in again
            }
            self.renamed_customers |= {
                ref: (str(again[suffixed[ref]]["Id"]), suffixed[ref])
                for ref in taken
                if plain[ref] not in again and suffixed[ref] in again
            }
            clashes = {
                ref: Write(
                    f"billbridge-customer-{ref}-create-suffixed",
                    "Customer",
                    customer_payload(specs[ref], name=suffixed[ref]),
                )
                for ref in taken
                if ref not in records
            }
            for ref in taken:
                del failed[ref]
            made, refused = self.ensure(clashes)
            created |= made
            converged = [ref for ref, o in refused.items() if DUPLICATE_NAME in o.codes]
            last = self._customers_named([suffixed[ref] for ref in converged]) if converged else {}
            records |= {ref: last[suffixed[ref]] for ref in converged if suffixed[ref] in last}
            self.renamed_customers |= {ref: (ident, suffixed[ref]) for ref, ident in made.items()}
            self.renamed_customers |= {
                ref: (str(last[suffixed[ref]]["Id"]), suffixed[ref]) for ref in converged if suffixed[ref] in last
            }
            failed |= {ref: o for ref, o in refused.items() if ref not in records}
        ids, asleep = self._reactivated({ref: r for ref, r in records.items() if ref not in created})
        return ids | created, failed | asleep

    def _recorded_customers(self, recorded: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Written]]:
        """Customers by the QuickBooks Id recorded for them on an earlier run (one query by Id, active or
        not; no name look-up, no create): an inactive one is made active again. A recorded customer
        QuickBooks no longer has is left out, to be looked up by name as a new one would."""
        found = self.find("Customer", "Id", list(recorded.values()), also=ALL_CUSTOMERS)
        return self._reactivated({ref: found[ident] for ref, ident in recorded.items() if ident in found})

    def _customers_named(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Customers by DisplayName, active or not."""
        return self.find("Customer", "DisplayName", names, also=ALL_CUSTOMERS) if names else {}

    def _reactivated(self, records: Mapping[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, Written]]:
        """Ids of found customers, the inactive ones made active again first (a sparse update naming
        the SyncToken read: a document cannot be made out to an inactive customer)."""
        ids = {ref: str(r["Id"]) for ref, r in records.items() if r.get("Active", True) is not False}
        asleep = {
            ref: Write(
                f"billbridge-customer-{ref}-reactivate-{r['Id']}-{r['SyncToken']}",
                "Customer",
                {"Id": r["Id"], "SyncToken": r["SyncToken"], "sparse": True, "Active": True},
                "update",
            )
            for ref, r in records.items()
            if ref not in ids
        }
        woken, failed = self.ensure(asleep)
        return ids | woken, failed

    def _ensure_items(
        self, items: Mapping[str, str], accounts: Mapping[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, Written]]:
        """Items by Name (``items``: name -> description), made when missing with their income account
        (``accounts``: name -> account; the connector's income account for the others)."""
        default = self.config.income_account_id
        wanted = {sku: (accounts or {}).get(sku, default) for sku in items}
        ids, failed = self.find_or_create(
            "Item",
            "Name",
            {sku: sku for sku in items},
            lambda sku: Write(f"billbridge-item-{sku}-create", "Item", item_payload(sku, items[sku], wanted[sku])),
        )
        if self.repoint_items and ids:
            by_account: dict[str, list[str]] = defaultdict(list)
            for sku in ids:
                by_account[wanted[sku]].append(sku)
            for account, skus in sorted(by_account.items()):
                _, refused = self._repoint_items(skus, account)
                failed.update(refused)
            ids = {sku: ident for sku, ident in ids.items() if sku not in failed}
        return ids, failed

    def _repoint_items(self, skus: Sequence[str], account: str) -> tuple[list[str], dict[str, Written]]:
        """Items whose income account is not ``account`` moved to it (a sparse update naming the SyncToken
        read): with revenue recognition on, invoice lines post to deferred revenue through their items (and
        pass-through lines to theirs). QuickBooks applies an item's income account to transactions made
        after the change."""
        found = self.find("Item", "Name", skus)
        writes = {
            sku: Write(
                f"billbridge-item-{sku}-income-{account}-{record['SyncToken']}",
                "Item",
                {
                    "Id": record["Id"],
                    "SyncToken": record["SyncToken"],
                    "sparse": True,
                    "IncomeAccountRef": {"value": account},
                },
                "update",
            )
            for sku, record in found.items()
            if str((record.get("IncomeAccountRef") or {}).get("value")) != account and record.get("Type") != "Group"
        }
        updated, refused = self.ensure(writes) if writes else ({}, {})
        return list(updated), refused

    def ensure_customers(self, customers: Sequence[CustomerSpec]) -> dict[str, str]:
        """QuickBooks customer Ids by our customer ref: looked up by DisplayName, created when missing."""
        ids, failed = self._ensure_customers(customers)
        if failed:
            raise QuickBooksWriteError({ref: o.error for ref, o in failed.items()})
        return ids

    def ensure_items(self, items: Mapping[str, str]) -> dict[str, str]:
        """QuickBooks item Ids by SKU (``items``: SKU -> description): looked up by Name, created when missing."""
        ids, failed = self._ensure_items(items)
        if failed:
            raise QuickBooksWriteError({sku: o.error for sku, o in failed.items()})
        return ids

    def push_documents(
        self,
        docs: Sequence[OutboundDocument],
        *,
        customer_ids: Mapping[str, str] | None = None,
        item_ids: Mapping[str, str] | None = None,
        look_up_first: bool = True,
        recorded_customers: Mapping[str, str] | None = None,
    ) -> list[PushResult]:
        """Create invoices and credit memos, once each; one PushResult per document, in order.

        ``look_up_first`` finds documents already in QuickBooks by DocNumber (an earlier attempt whose
        answer was lost) and reports them ``existing`` instead of creating them again; pass False only
        for documents never attempted before. Customers and items missing from ``customer_ids`` /
        ``item_ids``, and not found or made earlier by this connector, are ensured first (looked up, then
        created); a document whose customer or item could not be made fails alone. ``recorded_customers``
        (our customer ref -> the QuickBooks Id recorded for it, e.g. a customer under its clash name)
        are read by that Id instead of looked up by name.
        """
        customers = {**self.customer_ids, **(customer_ids or {})}
        wanted = {d.customer_ref for d in docs}
        recorded = {
            ref: ident for ref, ident in (recorded_customers or {}).items() if ref not in customers and ref in wanted
        }
        by_id, customer_failures = self._recorded_customers(recorded) if recorded else ({}, {})
        customers.update(by_id)
        missing = {
            d.customer_ref: customer_spec(d)
            for d in docs
            if d.customer_ref not in customers and d.customer_ref not in customer_failures
        }
        new_customers, failures = self._ensure_customers(list(missing.values())) if missing else ({}, {})
        customer_failures |= failures
        new_customers |= by_id
        self.customer_ids.update(new_customers)
        customers.update(new_customers)
        known_items = {**self.item_ids, **(item_ids or {})}
        apart = self.pass_through_account  # pass-through lines post through items of their own
        names = {ln: item_name(ln, apart is not None) for d in docs for ln in d.lines}
        skus = {name: ln.description for ln, name in names.items() if name not in known_items}
        accounts = {name: apart(ln.product_ref) for ln, name in names.items() if apart is not None and ln.pass_through}
        new_items, item_failures = self._ensure_items(skus, accounts) if skus else ({}, {})
        self.item_ids.update(new_items)
        known_items.update(new_items)
        existing = self.find_documents(docs) if look_up_first else {}
        results: dict[str, PushResult] = {}
        writes: list[Write] = []
        for doc in docs:
            record = existing.get(doc.number)
            blocker = customer_failures.get(doc.customer_ref) or next(
                (item_failures[names[ln]] for ln in doc.lines if names[ln] in item_failures), None
            )
            if record is not None:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "existing", str(record["Id"]), str(record["SyncToken"])
                )
            elif blocker is not None:
                error = f"customer or item not in QuickBooks: {blocker.error}"
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "failed", error=error, retriable=blocker.retriable
                )
            else:
                try:
                    payload = document_payload(
                        doc,
                        customer_id=customers[doc.customer_ref],
                        item_ids=known_items,
                        pass_through_items=apart is not None,
                    )
                except (ValueError, KeyError) as exc:
                    results[doc.number] = PushResult(doc.number, doc.doc_type, "failed", error=f"cannot map: {exc!r}")
                    continue
                writes.append(Write(doc.idempotency_key("qbo-create"), qbo_entity(doc), payload))
        written = self.batch(writes)
        # 6140: the DocNumber is taken (an earlier attempt whose answer was lost made it): look it up
        taken = [
            d
            for d in docs
            if d.number not in results and DUPLICATE_DOC_NUMBER in written[d.idempotency_key("qbo-create")].codes
        ]
        found = self.find_documents(taken) if taken else {}
        for doc in docs:
            if doc.number in results:
                continue
            outcome = written[doc.idempotency_key("qbo-create")]
            if doc.number in found:
                record = found[doc.number]
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "existing", str(record["Id"]), str(record["SyncToken"])
                )
            elif outcome.record is None:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "failed", error=outcome.error, retriable=outcome.retriable
                )
            else:
                results[doc.number] = PushResult(
                    doc.number, doc.doc_type, "created", str(outcome.record["Id"]), str(outcome.record["SyncToken"])
                )
        return [results[d.number] for d in docs]

    def record_payments(self, payments: Sequence[PaymentToRecord], *, look_up_first: bool = True) -> list[PushResult]:
        """Enter payments (collected by Stripe, say) in QuickBooks, once each, so its receivables are right.

        A recorded payment carries ``payment_note`` in its PrivateNote; ``look_up_first`` searches the
        customers' payments for it (PrivateNote cannot be filtered in a query) before creating again.
        """
        existing: dict[str, dict[str, Any]] = {}
        if look_up_first:
            existing = {note_key(r.get("PrivateNote")): r for r in self.payments_of(p.customer_id for p in payments)}
        results: dict[str, PushResult] = {}
        writes: dict[str, Write] = {}
        for item in payments:
            ref, note = item.payment.payment_ref, payment_note(item.payment)
            if note in existing:
                found = existing[note]
                results[ref] = PushResult(ref, "payment", "existing", str(found["Id"]), str(found["SyncToken"]))
                continue
            try:
                payload = payment_payload(item.payment, customer_id=item.customer_id, invoice_ids=item.invoice_ids)
            except (ValueError, KeyError) as exc:
                results[ref] = PushResult(ref, "payment", "failed", error=f"cannot map: {exc!r}")
                continue
            writes[ref] = Write(f"billbridge-payment-{item.payment.source}-{ref}-qbo-record", "Payment", payload)
        created, failed = self.ensure(writes)
        for ref, ident in created.items():
            results[ref] = PushResult(ref, "payment", "created", ident, "0")
        for ref, outcome in failed.items():
            results[ref] = PushResult(ref, "payment", "failed", error=outcome.error, retriable=outcome.retriable)
        return [results[p.payment.payment_ref] for p in payments]

    def record_amendments(self, changes: Sequence[AmendmentToRecord]) -> list[PushResult]:
        """Make changes to the Payments that entered our payments (refunds taken off, money applied by
        hand), so their invoices stand in QuickBooks as they do here. Each once: the Payments are read
        first, and a change their PrivateNote lists is made already ("existing"); the rest of a
        Payment's changes go in one sparse update naming the SyncToken read, which a concurrent
        change makes fail as stale (retriable)."""
        found = self.find("Payment", "Id", {c.payment_id for c in changes})
        results: dict[str, PushResult] = {}
        pending: dict[str, list[AmendmentToRecord]] = {}
        for change in changes:
            record = found.get(change.payment_id)
            if record is None:
                error = f"QuickBooks has no Payment {change.payment_id} to change"
                results[change.change_ref] = PushResult(change.change_ref, "payment", "failed", error=error)
            elif change.change_ref in amendments_in(record.get("PrivateNote")):
                results[change.change_ref] = PushResult(
                    change.change_ref, "payment", "existing", str(record["Id"]), str(record["SyncToken"])
                )
            else:
                pending.setdefault(change.payment_id, []).append(change)
        writes: dict[str, Write] = {}
        for payment_id, mine in pending.items():
            record, body = found[payment_id], {}
            try:
                for change in mine:  # one update carrying all of them (two would name the same SyncToken)
                    body = payment_amended(record, change.change_ref, change.lines, change.total_change)
                    record = {**record, **body}
            except ValueError as exc:
                for change in mine:
                    results[change.change_ref] = PushResult(change.change_ref, "payment", "failed", error=str(exc))
                continue
            refs = ",".join(c.change_ref for c in mine)
            writes[payment_id] = Write(f"billbridge-amend-{payment_id}-{refs}", "Payment", body, "update")
        updated, failed = self.ensure(writes)
        for payment_id, mine in pending.items():
            for change in mine:
                ref = change.change_ref
                if payment_id in updated:
                    results[ref] = PushResult(ref, "payment", "created", updated[payment_id])
                elif payment_id in failed:
                    outcome = failed[payment_id]
                    results[ref] = PushResult(
                        ref, "payment", "failed", error=outcome.error, retriable=outcome.retriable
                    )
        return [results[c.change_ref] for c in changes]

    # -- journal entries ------------------------------------------------------------------------------

    def account_problems(self, mappings: Sequence[AccountMapping]) -> list[str]:
        """What is wrong with the accounts ``mappings`` name, read from the company's chart of accounts."""
        ids = {account for mapping in mappings for account in mapping.roles()}
        return account_problems(mappings, self.find("Account", "Id", ids) if ids else {})

    def post_journal_entries(self, entries: Sequence[tuple[PeriodRevenue, AccountMapping]]) -> list[PushResult]:
        """Post each month's recognition as one JournalEntry, once: one PushResult per entry, in order.

        The accounts are checked against the chart of accounts first (a missing, inactive or mistyped
        one fails every entry naming it, fatally: a person fixes the mapping). Each entry is looked up
        by DocNumber before anything is written: one of ours posting the same lines is ``existing`` (an
        earlier attempt whose answer was lost), one posting other amounts (the month was reopened and
        closed again) is replaced in place, naming its SyncToken (``updated``); a DocNumber held by an
        entry billbridge did not make is a failure, never overwritten.

        A month whose recognition came to nothing (reclosed after a backdated change) has no entry: one of
        ours standing under its DocNumber is deleted (``operation=delete`` naming its Id and SyncToken;
        ``deleted``), none there is ``existing`` (nothing to remove: an earlier attempt removed it, or it
        never posted), and an entry a person made under that number is left alone (``existing``)."""
        ids = {account for _, mapping in entries for account in mapping.roles()}
        chart = self.find("Account", "Id", ids) if ids else {}
        rates = self._entry_rates([period for period, _ in entries])
        results: dict[int, PushResult] = {}
        payloads: dict[int, dict[str, Any]] = {}
        removals: dict[int, str] = {}  # entry -> the DocNumber whose entry of ours must go
        for n, (period, mapping) in enumerate(entries):
            number = doc_number(period)
            problems = account_problems([mapping], chart)
            if problems:
                error = f"{period.entity_ref} revenue_accounts: " + "; ".join(problems)
                results[n] = PushResult(number, "journal_entry", "failed", error=error)
                continue
            rate = rates.get((period.currency, month_end(period.month)))
            if isinstance(rate, str):  # a foreign currency with no rate (or no multicurrency): said why
                results[n] = PushResult(number, "journal_entry", "failed", error=f"{period.entity_ref}: {rate}")
                continue
            payload = journal_entry_payload(period, mapping, rate)
            if payload is None:
                removals[n] = number  # nothing moved: no entry of ours may stand for the month
                continue
            payloads[n] = payload
        numbers = {p["DocNumber"] for p in payloads.values()} | set(removals.values())
        existing = self.find("JournalEntry", "DocNumber", numbers)
        writes: dict[int, Write] = {}
        for n, number in removals.items():
            record = existing.get(number)
            if record is None or record.get("PrivateNote") != note(entries[n][0]):
                results[n] = PushResult(number, "journal_entry", "existing")  # none of ours: nothing to remove
                continue
            body = {"Id": record["Id"], "SyncToken": record["SyncToken"]}
            key = f"billbridge-{note(entries[n][0])}-delete-{record['Id']}-{record['SyncToken']}"
            writes[n] = Write(key, "JournalEntry", body, "delete")
        for n, payload in payloads.items():
            number, record = payload["DocNumber"], existing.get(payload["DocNumber"])
            if record is None:
                close = entries[n][0].close_id  # a rerun of this close repeats it; a later close does not
                writes[n] = Write(f"billbridge-{note(entries[n][0])}-create-{close}", "JournalEntry", payload)
            elif record.get("PrivateNote") != payload["PrivateNote"]:
                error = f"JournalEntry {record['Id']} holds DocNumber {number} and was not made by billbridge"
                results[n] = PushResult(number, "journal_entry", "failed", error=error)
            elif same_entry(record, payload):
                results[n] = PushResult(
                    number, "journal_entry", "existing", str(record["Id"]), str(record["SyncToken"])
                )
            else:
                body = {**payload, "Id": record["Id"], "SyncToken": record["SyncToken"], "sparse": True}
                key = f"billbridge-{note(entries[n][0])}-update-{record['SyncToken']}"
                writes[n] = Write(key, "JournalEntry", body, "update")
        written = self.batch(list(writes.values()))
        for n, write in writes.items():
            outcome, number = written[write.key], doc_number(entries[n][0])
            if outcome.record is not None and write.operation == "delete":
                results[n] = PushResult(number, "journal_entry", "deleted", str(outcome.record["Id"]))
            elif outcome.record is not None:
                status: PushStatus = "created" if write.operation == "create" else "updated"
                record = outcome.record
                results[n] = PushResult(number, "journal_entry", status, str(record["Id"]), str(record["SyncToken"]))
            else:
                results[n] = PushResult(
                    number, "journal_entry", "failed", error=outcome.error, retriable=outcome.retriable
                )
        return [results[n] for n in range(len(entries))]

    def _entry_rates(self, periods: Sequence[PeriodRevenue]) -> dict[tuple[str, date], Decimal | str]:
        """The ExchangeRate of each (currency, month's last day) an entry is in that is not the company's
        home currency: QuickBooks' own rate of that day (its ExchangeRate entity), so the entry's home
        amounts are the ones the company's own screens would book; or why there is none (multicurrency
        off, no rate for that day). Home-currency entries carry none."""
        home, multicurrency = self.currency_prefs()
        out: dict[tuple[str, date], Decimal | str] = {}
        for key in sorted({(p.currency, month_end(p.month)) for p in periods if p.currency != home}):
            currency, day = key
            if not multicurrency:
                out[key] = f"an entry in {currency} needs multicurrency on in QuickBooks (home currency {home})"
                continue
            try:
                out[key] = self.exchange_rate(currency, day)
            except VendorError as exc:
                if exc.classified.kind == ErrorKind.RETRIABLE:
                    raise  # QuickBooks unreachable or throttled: every entry is tried again later
                out[key] = f"no QuickBooks exchange rate for {currency} on {day}: {exc}"
        return out

    # -- partner fees (accounts payable) ---------------------------------------------------------------

    def push_bills(
        self, bills: Sequence[PartnerBill], *, fee_account: str = FEE_ACCOUNT, look_up_first: bool = True
    ) -> list[PushResult]:
        """Create each partner statement's Bill (a negative one's VendorCredit) once, to the partner as a
        Vendor; one PushResult each.

        Vendors (by DisplayName, ``_ensure_vendors``) and the expense account (by Name) are looked up,
        then created when missing. ``look_up_first`` finds Bills an earlier attempt made (by DocNumber, the statement's
        number) and reports them ``existing``; a create refused because the number exists (6140)
        looks it up again, so a retry after a lost answer never makes a second Bill.
        """
        vendor_ids, vendor_failures = self._ensure_vendors(bills)
        accounts, account_failures = self.find_or_create(
            "Account",
            "Name",
            {"fees": fee_account},
            lambda _ref: Write(
                f"billbridge-account-{fee_account}-create", "Account", expense_account_payload(fee_account)
            ),
        )
        existing = self._find_bills(bills) if look_up_first else {}
        results: dict[str, PushResult] = {}
        writes: list[Write] = []
        for bill in bills:
            blocker = vendor_failures.get(bill.partner_ref) or account_failures.get("fees")
            if bill.number in existing:
                results[bill.number] = _existing_bill(bill, existing[bill.number])
            elif blocker is not None:
                error = f"vendor or expense account not in QuickBooks: {blocker.error}"
                results[bill.number] = PushResult(
                    bill.number, bill.doc_type, "failed", error=error, retriable=blocker.retriable
                )
            else:
                try:
                    payload = bill_payload(bill, vendor_id=vendor_ids[bill.partner_ref], account_id=accounts["fees"])
                except ValueError as exc:
                    results[bill.number] = PushResult(bill.number, bill.doc_type, "failed", error=f"cannot map: {exc}")
                    continue
                writes.append(Write(bill.idempotency_key, bill_entity(bill), payload))
        written = self.batch(writes)
        taken = [
            b for b in bills if b.number not in results and DUPLICATE_DOC_NUMBER in written[b.idempotency_key].codes
        ]
        found = self._find_bills(taken) if taken else {}
        for bill in bills:
            if bill.number in results:
                continue
            outcome = written[bill.idempotency_key]
            if bill.number in found:
                results[bill.number] = _existing_bill(bill, found[bill.number])
            elif outcome.record is None:
                results[bill.number] = PushResult(
                    bill.number, bill.doc_type, "failed", error=outcome.error, retriable=outcome.retriable
                )
            else:
                record = outcome.record
                results[bill.number] = PushResult(
                    bill.number, bill.doc_type, "created", str(record["Id"]), str(record["SyncToken"])
                )
        return [results[b.number] for b in bills]

    def _ensure_vendors(self, bills: Sequence[PartnerBill]) -> tuple[dict[str, str], dict[str, Written]]:
        """Vendor Ids by partner ref. Each partner's Vendor is looked up under its name and its
        ``vendor_clash_name`` (one query), and created under its name when neither exists. A create
        refused as a taken name (6240) looks both up again (another run made it meanwhile), else creates
        the Vendor under the suffixed name: a customer (a partner of kind ``both`` is one, as a
        reseller) or an employee holds the plain one, as QuickBooks keeps DisplayName unique across the
        three. A suffixed create refused too is looked up once more, then stays a failure naming both."""
        by_ref = {b.partner_ref: b for b in bills}
        plain = {ref: vendor_payload(b)["DisplayName"] for ref, b in by_ref.items()}
        suffixed = {ref: vendor_clash_name(b) for ref, b in by_ref.items()}

        def named(refs: Iterable[str], names: Sequence[Mapping[str, str]]) -> dict[str, str]:
            wanted = sorted({n[ref] for ref in refs for n in names})
            found = self.find("Vendor", "DisplayName", wanted) if wanted else {}
            return {
                ref: str(record["Id"])
                for ref in refs
                for record in [next((found[n[ref]] for n in names if n[ref] in found), None)]
                if record is not None
            }

        ids = named(by_ref, (plain, suffixed))
        writes = {
            ref: Write(f"billbridge-vendor-{ref}-create", "Vendor", vendor_payload(b))
            for ref, b in by_ref.items()
            if ref not in ids
        }
        created, failed = self.ensure(writes)
        taken = [ref for ref, outcome in failed.items() if DUPLICATE_NAME in outcome.codes]
        if not taken:
            return ids | created, failed
        ids |= named(taken, (plain, suffixed))
        clashes = {
            ref: Write(
                f"billbridge-vendor-{ref}-create-suffixed", "Vendor", vendor_payload(by_ref[ref], name=suffixed[ref])
            )
            for ref in taken
            if ref not in ids
        }
        for ref in taken:
            del failed[ref]
        made, refused = self.ensure(clashes)
        converged = [ref for ref, outcome in refused.items() if DUPLICATE_NAME in outcome.codes]
        ids |= named(converged, (suffixed,))
        for ref, outcome in refused.items():
            if ref not in ids:
                names = f"{plain[ref]!r} and {suffixed[ref]!r}"
                failed[ref] = replace(
                    outcome, error=f"{outcome.error} (vendor names {names}: {hidden_holders('Vendor')})"
                )
        return ids | created | made, failed

    def _find_bills(self, bills: Sequence[PartnerBill]) -> dict[str, dict[str, Any]]:
        """The Bills and VendorCredits QuickBooks holds already for these statements, by DocNumber."""
        found: dict[str, dict[str, Any]] = {}
        for entity in sorted({bill_entity(b) for b in bills}):
            numbers = [b.number for b in bills if bill_entity(b) == entity]
            found.update(self.find(entity, "DocNumber", numbers))
        return found

    def bill_payments(self, bill_ids: Iterable[str]) -> dict[str, Decimal]:
        """What was paid on each of these Bills (their BillPayments' linked amounts), by Bill Id."""
        wanted = set(bill_ids)
        paid: dict[str, Decimal] = {}
        for payment in self.query_all("BillPayment"):
            for line in payment.get("Line", []):
                for link in line.get("LinkedTxn", []):
                    if link.get("TxnType") == "Bill" and str(link.get("TxnId")) in wanted:
                        bill = str(link["TxnId"])
                        paid[bill] = paid.get(bill, Decimal(0)) + Decimal(str(line.get("Amount", 0)))
        return paid

    # -- payments -------------------------------------------------------------------------------------

    def pull_payments(self, cursor: str | None, *, page_size: int = PAYMENT_PAGE) -> Iterator[PaymentPage]:
        """Payments changed since ``cursor`` (inclusive, minus a lag window), oldest change first, in pages.

        Each payment's invoice links are mapped back to our DocNumbers; the caller dedupes by
        ``payment_ref`` (and ``source_version`` for edits) and stores ``page.cursor`` after the page.
        """
        start = LagWindow(PAYMENTS.lag, None if cursor is None else datetime.fromisoformat(cursor)).start()
        since = EPOCH if start is None else start.isoformat()
        newest = cursor
        for records in self.payment_records(since, linked_invoice_ids, page_size):
            assert records.cursor is not None  # every page of payments carries its newest change
            payments, refused = map_each(
                records.records,
                partial(payment_from_qbo, doc_numbers=records.related),
                partial(record_id, field="Id"),
            )
            newest = records.cursor if newest is None else max(newest, records.cursor)
            yield PaymentPage(payments, records.cursor, refused=refused)
        if cursor is not None:  # a first pull has nothing recorded that could have been deleted
            deleted = self.deleted_payments(since)
            if deleted:
                times = [p.deleted_at or "" for p in deleted]
                yield PaymentPage(deleted, max([newest or cursor, *times]))

    def deleted_payments(self, since: str) -> list[IncomingPayment]:
        """Payments deleted in QuickBooks since ``since`` (change data capture, the last 30 days)."""
        tombstones = self.deleted_payment_records(since)
        deleted, _unreadable = map_each(tombstones, payment_deleted, lambda t: record_id(t, "Id"))
        return deleted  # a tombstone without a readable Id names nothing to take back
