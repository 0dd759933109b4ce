"""Writing to a QuickBooks company: creates and updates through the batch endpoint, 30 operations a
call, each batch with a deterministic ``requestid`` so a retry after a lost answer is replayed, not
re-executed; and find-or-create by a unique name, converging when two runs create at once.

python-quickbooks' ``BatchManager`` cannot carry a requestid (``batch_operation`` posts without one)
and makes random ``bId`` values, so batches are posted with the same client's ``make_request``, which
does pass ``request_id``. Writers take vendor payloads (built by ``mapping/quickbooks.py``) and know
nothing of billbridge's documents.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import quote as url_quote

from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.connectors.quickbooks.connection import chunks
from billbridge.connectors.quickbooks.readers import QuickBooksReader

BATCH_LIMIT = 30  # Intuit: at most 30 operations in one batch request
_REQUEST_ID_NS = uuid.UUID("6f9d5f8e-1f8b-4a8c-9d0e-0b1b2b3c4d5e")
STALE_OBJECT = "5010"  # Intuit's error code for an update with an outdated SyncToken
DUPLICATE_NAME = "6240"  # Intuit: a Customer (Vendor, Employee) or Item of that name exists
DUPLICATE_DOC_NUMBER = "6140"  # Intuit: the DocNumber is used (with duplicate-number checking on)


NAME_SHARERS = ("Customer", "Vendor", "Employee")  # QuickBooks keeps DisplayName unique across the three


def hidden_holders(entity: str) -> str:
    """Who holds a name a create of ``entity`` was refused for (6240) when a look-up of ``entity`` by
    that name finds nothing: an inactive one (queries return active records only) or, for the parties
    sharing DisplayName, a record of another of them."""
    kind = entity.lower()
    if entity not in NAME_SHARERS:
        return f"the name belongs to an inactive {kind} (queries do not return it)"
    others = " or ".join(("an " if e[0] in "AEIOU" else "a ") + e.lower() for e in NAME_SHARERS if e != entity)
    return (
        f"the name belongs to {others} (DisplayName is unique across customers, vendors and employees) "
        f"or to an inactive {kind} (queries do not return it)"
    )


@dataclass(frozen=True)
class Write:
    """One create, update or delete: its idempotency key, the entity and its payload (a vendor record;
    for a delete, its Id and SyncToken, as Intuit's ``operation=delete`` takes it)."""

    key: str
    entity: str
    payload: dict[str, Any]
    operation: Literal["create", "update", "delete"] = "create"


@dataclass(frozen=True)
class Written:
    """The outcome of one ``Write``: the record QuickBooks holds now (of a delete: its tombstone, Id and
    status "Deleted"), or why not."""

    record: dict[str, Any] | None
    error: str | None = None
    retriable: bool = False
    codes: frozenset[str] = frozenset()  # Intuit's error codes of a refused write


def batch_request_id(keys: Iterable[str]) -> str:
    """A 36-character requestid (Intuit's batch limit) determined by the writes the batch carries."""
    return str(uuid.uuid5(_REQUEST_ID_NS, "\n".join(keys)))


def batch_item_id(key: str) -> str:
    """A 10-character bId (Intuit: only 10 characters per bId when a requestid is given)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


class QuickBooksWriteError(Exception):
    """Customers or items that could not be created (the documents that need them cannot be pushed)."""

    def __init__(self, failed: Mapping[str, str | None]) -> None:
        self.failed = dict(failed)
        super().__init__("QuickBooks refused: " + "; ".join(f"{k}: {v}" for k, v in self.failed.items()))


class QuickBooksConnector(QuickBooksReader):
    """One QuickBooks company: its reads (``QuickBooksReader``) and its writes."""

    def send_invoice(
        self, invoice_id: str, to: Sequence[str], cc: Sequence[str], key: str, *, since: int | None = None
    ) -> PushResult:
        """QuickBooks e-mails its own invoice (``POST /invoice/{id}/send?sendTo=``) to every ``to``
        address (comma separated, as ``BillEmail.Address`` takes them; it becomes the invoice's
        BillEmail) with ``cc`` in copy: set first as ``BillEmailCc`` by a sparse update, which the
        send mails too. QuickBooks sets ``EmailStatus`` EmailSent and ``DeliveryInfo``. Looked up
        first: an invoice QuickBooks has sent already is not sent again (``existing``), so a retry
        after a lost answer or a crash mails nobody twice (``EmailStatus`` says so whenever it
        happened: ``since`` is not needed). Addresses longer than the fields take (BillEmail 100
        characters, BillEmailCc 200) are refused before anything is sent, naming the field."""
        send_to, copy_to = ", ".join(to), ", ".join(cc)
        for field_name, value, most in (("BillEmail", send_to, 100), ("BillEmailCc", copy_to, 200)):
            if len(value) > most:
                reason = (
                    f"invoice {invoice_id}: {field_name} would be {len(value)} characters ({value}); "
                    f"QuickBooks takes at most {most}: fewer billing contacts, or the email channel"
                )
                raise VendorError(self.vendor, Classified(ErrorKind.FATAL, reason), 0)

        def read(qb: Any) -> dict[str, Any]:
            return dict(qb.make_request("GET", self._url(qb, f"invoice/{invoice_id}")))

        current = self._call(read, what="read invoice")["Invoice"]
        number = str(current.get("DocNumber") or invoice_id)
        if current.get("EmailStatus") == "EmailSent":
            return PushResult(number, "invoice", "existing", invoice_id, str(current.get("SyncToken")))
        if copy_to and (current.get("BillEmailCc") or {}).get("Address") != copy_to:
            change = {
                "Id": invoice_id,
                "SyncToken": current["SyncToken"],
                "sparse": True,
                "BillEmailCc": {"Address": copy_to},
            }
            body = json.dumps(change, sort_keys=True)
            self._call(self._poster("invoice", body, f"{key}-cc"), what="set the invoice's BillEmailCc")
        endpoint = f"invoice/{invoice_id}/send?sendTo={url_quote(send_to, safe='')}"
        sent = self._call(self._poster(endpoint, "", key), what="send invoice")["Invoice"]
        return PushResult(number, "invoice", "created", invoice_id, str(sent.get("SyncToken")))

    def batch(self, writes: Sequence[Write]) -> dict[str, Written]:
        """Send ``writes`` through the batch endpoint, 30 per call; the outcome per idempotency key."""
        out: dict[str, Written] = {}
        for chunk in chunks(writes, BATCH_LIMIT):
            by_bid = {batch_item_id(w.key): w for w in chunk}
            items = [{"bId": bid, "operation": w.operation, w.entity: w.payload} for bid, w in by_bid.items()]
            body = json.dumps({"BatchItemRequest": items}, sort_keys=True)
            rid = batch_request_id(w.key + "\t" + json.dumps(w.payload, sort_keys=True) for w in chunk)
            try:
                answer = self._call(self._poster("batch", body, rid), self.batch_pacer, what="batch")
            except VendorError as exc:
                retriable = exc.classified.kind == ErrorKind.RETRIABLE
                out.update({w.key: Written(None, str(exc), retriable) for w in chunk})
                continue
            for item in answer.get("BatchItemResponse", []):
                write = by_bid[item["bId"]]
                if "Fault" in item:
                    errors = item["Fault"].get("Error", [{}])
                    text = "; ".join(f"{e.get('code')} {e.get('Message')}: {e.get('Detail')}" for e in errors)
                    codes = frozenset(str(e.get("code")) for e in errors)
                    # 5010: an update named an old SyncToken (the record changed since it was read): read again
                    out[write.key] = Written(None, text, retriable=STALE_OBJECT in codes, codes=codes)
                else:
                    out[write.key] = Written(item[write.entity])
            for write in chunk:  # QuickBooks answers every bId; if not, the outcome is unknown
                out.setdefault(write.key, Written(None, "no answer for this batch item", retriable=True))
        return out

    def ensure(self, writes: Mapping[str, Write]) -> tuple[dict[str, str], dict[str, Written]]:
        """Create ``writes`` (by our ref): the new Ids, and the failures."""
        results = self.batch(list(writes.values()))
        outcomes = {ref: results[w.key] for ref, w in writes.items()}
        ids = {ref: str(o.record["Id"]) for ref, o in outcomes.items() if o.record is not None}
        return ids, {ref: o for ref, o in outcomes.items() if o.record is None}

    def find_or_create(
        self, entity: str, name_field: str, names: Mapping[str, str], write: Callable[[str], Write]
    ) -> tuple[dict[str, str], dict[str, Written]]:
        """Ids by our ref of the ``entity`` records named ``names[ref]`` (names are unique in a
        company): looked up by name, created (``write(ref)``) when missing. A create refused because
        the name exists (6240) means another run made it since the look-up: it is looked up again
        and used, so concurrent pushes converge. The name may also be taken by a record the look-up
        does not return (``hidden_holders``): that one stays a failure."""
        found = self.find(entity, name_field, names.values())
        ids = {ref: str(found[name]["Id"]) for ref, name in names.items() if name in found}
        created, failed = self.ensure({ref: write(ref) for ref in names if ref not in ids})
        taken = [ref for ref, outcome in failed.items() if DUPLICATE_NAME in outcome.codes]
        again = self.find(entity, name_field, {names[ref] for ref in taken}) if taken else {}
        for ref in taken:
            if names[ref] in again:
                created[ref] = str(again[names[ref]]["Id"])
                del failed[ref]
            else:
                failed[ref] = replace(failed[ref], error=f"{failed[ref].error} ({hidden_holders(entity)}: rename one)")
        return ids | created, failed
