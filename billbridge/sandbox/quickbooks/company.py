"""The state of one emulated QuickBooks Online company: entities, OAuth tokens, request ids, webhooks.

Everything the HTTP layer (``app.py``) does goes through ``QboCompany`` under one lock, so the
uvicorn thread pool cannot interleave two writes. Time comes from an injectable clock, so tests can
expire tokens and move change-data-capture windows without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from billbridge.sandbox.quickbooks.errors import QboFault, not_found, validation
from billbridge.sandbox.quickbooks.query import parse_query, run_query

ENTITIES = (
    "Account",
    "Customer",
    "Item",
    "Invoice",
    "CreditMemo",
    "Payment",
    "JournalEntry",
    "Vendor",
    "Employee",
    "Bill",
    "BillPayment",
    "VendorCredit",
)
BATCH_LIMIT = 30  # Intuit's limits page: "maximum number of payloads in a single batch request is 30"
CDC_MAX_OBJECTS = 1000  # Intuit's CDC reference: at most 1,000 objects of an entity per response
CDC_LOOKBACK = timedelta(days=30)  # CDC tracks changes within the last 30 days
REQUEST_ID_MAX = 50  # requestid: up to 50 characters (36 on batch), Intuit blog "Request ID update"
BATCH_REQUEST_ID_MAX = 36
DOC_NUMBER_MAX = 21  # Intuit's XSD (Transaction.DocNumber): "maximum length for DocNumber is 21 characters"
ACCESS_TOKEN_SECONDS = 3600  # Intuit: access tokens last one hour
REFRESH_TOKEN_SECONDS = 8726400  # x_refresh_token_expires_in Intuit reports (101 days)
# Since 2025 an authorisation ends at a hard expiry whatever the refreshes (five years from the
# connection); the token answer reports the seconds left in x_refresh_token_hard_expires_in
REFRESH_TOKEN_HARD_SECONDS = 5 * 365 * 86400


def dumps(body: Any) -> bytes:
    """JSON with Decimal amounts written as JSON numbers, digit for digit (no binary float in between)."""
    text = json.dumps(body, default=lambda o: f"\x00{o}\x00" if isinstance(o, Decimal) else str(o))
    return re.sub(r'"\\u0000(-?[0-9.E+-]+)\\u0000"', r"\1", text).encode()


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise validation(f"{name} must be a number", "2010", "Request has invalid or unsupported property")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise validation(
            f"{name} is not a number: {value!r}", "2010", "Request has invalid or unsupported property"
        ) from None


@dataclass
class RefreshToken:
    token: str
    issued_at: float
    granted_at: float  # when the company was connected: the chain's hard expiry counts from it
    superseded_at: float | None = None  # when a refresh with it returned a newer one
    spent: int = 0  # how many refreshes it paid for (more than one: two workers raced)


@dataclass
class TokenPolicy:
    access_seconds: float = ACCESS_TOKEN_SECONDS
    grace_seconds: float = 120.0  # how long a superseded refresh token still works
    hard_seconds: float = REFRESH_TOKEN_HARD_SECONDS  # the authorisation's lifetime, whatever the refreshes


@dataclass
class Webhook:
    url: str | None = None
    verifier_token: str = field(default_factory=lambda: secrets.token_hex(16))
    # Intuit moved every app to CloudEvents in 2026; "legacy" sends the eventNotifications format.
    format: str = "cloudevents"
    delivered: list[tuple[int | None, bytes]] = field(default_factory=list)  # (status or None, payload)


_PAST_TENSE = {"Create": "created", "Update": "updated", "Delete": "deleted", "Merge": "merged", "Void": "voided"}


def _utc_z(stamp: str) -> str:
    """A CloudEvent's ``time``: UTC, milliseconds, ``Z`` (as Intuit sends it)."""
    try:
        moment = datetime.fromisoformat(stamp).astimezone(UTC)
    except ValueError:
        return stamp
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign_webhook(payload: bytes, verifier_token: str) -> str:
    """``intuit-signature``: base64 of the HMAC-SHA256 of the payload keyed with the verifier token."""
    return base64.b64encode(hmac.new(verifier_token.encode(), payload, hashlib.sha256).digest()).decode()


class QboCompany:
    """One realm with its app credentials; the emulator's whole state."""

    def __init__(
        self,
        *,
        realm_id: str = "9130350000000000",
        client_id: str | None = None,
        client_secret: str | None = None,
        tokens: TokenPolicy | None = None,
        clock: Callable[[], float] = time.time,
        home_currency: str = "USD",
        duplicate_doc_number_check: bool = True,
    ) -> None:
        self.realm_id = realm_id
        self.client_id = client_id or "AB" + secrets.token_hex(12)
        self.client_secret = client_secret or secrets.token_hex(20)
        self.tokens = tokens or TokenPolicy()
        self.clock = clock
        self.home_currency = home_currency
        # the company setting "warn if duplicate invoice number is used": with it on, the API refuses one (6140)
        self.duplicate_doc_number_check = duplicate_doc_number_check
        self.webhook = Webhook()
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES}
        # What change data capture reports of deleted records: Id, status "Deleted", when.
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in ENTITIES}
        self._next_id = 1
        self._last_stamp = 0.0
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.replies: dict[str, tuple[int, Any]] = {}  # requestid -> the first answer
        self.sent_emails: list[dict[str, str]] = []  # what QuickBooks "mailed" (POST /invoice/{id}/send)
        self.initial_refresh_token = self._issue_refresh()
        self.create("Account", {"Name": "Services", "AccountType": "Income", "AccountSubType": "ServiceFeeIncome"})

    # -- time ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _stamp(self) -> str:
        """A strictly increasing modification time (millisecond steps), as QuickBooks' MetaData shows."""
        moment = max(self.clock(), self._last_stamp + 0.001)
        self._last_stamp = moment
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")

    # -- OAuth ------------------------------------------------------------------------------------

    def _issue_refresh(self, granted_at: float | None = None) -> str:
        token = "RT1-" + secrets.token_urlsafe(24)
        now = self.clock()
        self.refresh_tokens[token] = RefreshToken(token, now, granted_at if granted_at is not None else now)
        return token

    def check_client(self, client_id: str, client_secret: str) -> bool:
        return hmac.compare_digest(client_id, self.client_id) and hmac.compare_digest(client_secret, self.client_secret)

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """Spend a refresh token: a new access token and a new (rotated) refresh token, or None (invalid_grant)."""
        with self.lock:
            record = self.refresh_tokens.get(refresh_token)
            now = self.clock()
            if record is None or now - record.issued_at > REFRESH_TOKEN_SECONDS:
                return None
            hard_left = record.granted_at + self.tokens.hard_seconds - now
            if hard_left <= 0:  # past the hard expiry: someone must connect the company again
                return None
            if record.superseded_at is not None and now - record.superseded_at > self.tokens.grace_seconds:
                return None
            record.spent += 1
            if record.superseded_at is None:
                record.superseded_at = now
            access = "AT-" + secrets.token_urlsafe(32)
            self.access_tokens[access] = now + self.tokens.access_seconds
            return {
                "token_type": "bearer",
                "access_token": access,
                "expires_in": int(self.tokens.access_seconds),
                "refresh_token": self._issue_refresh(record.granted_at),
                "x_refresh_token_expires_in": int(min(REFRESH_TOKEN_SECONDS, hard_left)),
                "x_refresh_token_hard_expires_in": int(hard_left),
            }

    def access_ok(self, token: str) -> bool:
        with self.lock:
            expiry = self.access_tokens.get(token)
            return expiry is not None and self.clock() < expiry

    def expire_access_tokens(self) -> None:
        """Let every issued access token run out now (an expired token mid-run)."""
        with self.lock:
            self.access_tokens = dict.fromkeys(self.access_tokens, self.clock())

    # -- request ids ------------------------------------------------------------------------------

    def once(
        self, request_id: str | None, work: Callable[[], tuple[int, Any]], *, limit: int = REQUEST_ID_MAX
    ) -> tuple[int, Any]:
        """Run ``work`` unless this requestid was seen: then answer what it answered the first time."""
        if request_id is not None and len(request_id) > limit:
            raise validation(
                f"requestid longer than {limit} characters", "2010", "Request has invalid or unsupported property"
            )
        with self.lock:
            if request_id is not None and request_id in self.replies:
                return self.replies[request_id]
            try:
                reply = work()
            except QboFault as fault:
                reply = (fault.status, fault.body())
            if request_id is not None:
                self.replies[request_id] = reply
            return reply

    # -- entities ---------------------------------------------------------------------------------

    def get(self, entity: str, ident: str) -> dict[str, Any]:
        with self.lock:
            record = self.records[entity].get(ident)
            if record is None:
                raise not_found(entity, ident)
            return record

    def all(self, entity: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.records[entity].values())

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if "Id" in body:
                raise validation("Id must not be sent on create", "2010", "Request has invalid or unsupported property")
            record = _VALIDATORS.get(entity, _plain)(self, dict(body))
            record["Id"] = str(self._next_id)
            self._next_id += 1
            record["SyncToken"] = "0"
            stamp = self._stamp()
            record["MetaData"] = {"CreateTime": stamp, "LastUpdatedTime": stamp}
            self.records[entity][record["Id"]] = record
            self._apply(entity, record, +1)
            return record

    def update(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sparse (or full) update: the SyncToken must be the current one (else a stale object error)."""
        with self.lock:
            current = self.get(entity, str(body.get("Id")))
            if str(body.get("SyncToken")) != current["SyncToken"]:
                raise QboFault(
                    400,
                    "Stale Object Error",
                    f"Stale Object Error : You and root were working on this at the same time. SyncToken {body.get('SyncToken')} is not {current['SyncToken']}",
                    "5010",
                )
            sparse = bool(body.get("sparse"))
            merged = {**current, **body} if sparse else dict(body)
            merged.pop("sparse", None)
            merged.pop("MetaData", None)
            merged["Id"] = current["Id"]
            self._apply(entity, current, -1)
            try:
                record = _VALIDATORS.get(entity, _plain)(self, merged)
            except QboFault:
                self._apply(entity, current, +1)
                raise
            record["SyncToken"] = str(int(current["SyncToken"]) + 1)
            record["MetaData"] = {**current["MetaData"], "LastUpdatedTime": self._stamp()}
            self.records[entity][record["Id"]] = record
            self._apply(entity, record, +1)
            return record

    def send(self, ident: str, send_to: str | None) -> dict[str, Any]:
        """E-mail an invoice as QuickBooks does: to ``sendTo`` (which becomes its BillEmail) or its
        BillEmail; EmailStatus EmailSent, DeliveryInfo with the time. Recorded in ``sent_emails``."""
        with self.lock:
            current = self.get("Invoice", ident)
            address = send_to or (current.get("BillEmail") or {}).get("Address")
            if not address:
                raise validation(
                    "BillEmail is required to send an invoice",
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                )
            stamp = self._stamp()
            record = {
                **current,
                "BillEmail": {"Address": address},
                "EmailStatus": "EmailSent",
                "DeliveryInfo": {"DeliveryType": "Email", "DeliveryTime": stamp},
                "SyncToken": str(int(current["SyncToken"]) + 1),
                "MetaData": {**current["MetaData"], "LastUpdatedTime": stamp},
            }
            self.records["Invoice"][ident] = record
            self.sent_emails.append({"Invoice": ident, "DocNumber": str(record.get("DocNumber")), "To": address})
            return record

    def delete(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """``operation=delete``: the record goes (a payment's invoices open again); the answer and
        change data capture carry only its Id and status "Deleted"."""
        with self.lock:
            current = self.get(entity, str(body.get("Id")))
            if str(body.get("SyncToken")) != current["SyncToken"]:
                raise QboFault(400, "Stale Object Error", "Stale Object Error", "5010")
            self._apply(entity, current, -1)
            del self.records[entity][current["Id"]]
            tombstone = {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}
            self.deleted[entity].append({**tombstone, "MetaData": {"LastUpdatedTime": self._stamp()}})
            return tombstone

    def _apply(self, entity: str, record: dict[str, Any], sign: int) -> None:
        """A payment (of invoices) or bill payment changes the balances it links to."""
        if entity == "Payment":
            self._apply_payment(record, sign)
        elif entity == "BillPayment":
            self._apply_bill_payment(record, sign)

    def _apply_payment(self, payment: dict[str, Any], sign: int) -> None:
        for line in payment.get("Line", []):
            for link in line.get("LinkedTxn", []):
                invoice = self.records["Invoice"][link["TxnId"]]
                invoice["Balance"] = invoice["Balance"] - sign * line["Amount"]
                invoice["MetaData"] = {**invoice["MetaData"], "LastUpdatedTime": self._stamp()}

    def _apply_bill_payment(self, payment: dict[str, Any], sign: int) -> None:
        for line in payment.get("Line", []):
            for link in line.get("LinkedTxn", []):
                bill = self.records["Bill"][link["TxnId"]]
                bill["Balance"] = bill["Balance"] - sign * line["Amount"]
                bill["MetaData"] = {**bill["MetaData"], "LastUpdatedTime": self._stamp()}

    def query(self, text: str) -> dict[str, Any]:
        parsed = parse_query(text)
        if parsed.entity not in self.records:
            raise QboFault(400, "Error parsing query", f"QueryValidationError: Invalid entity {parsed.entity}", "4001")
        return run_query(parsed, self.all(parsed.entity))

    def changed_since(self, entities: Iterable[str], since: datetime) -> dict[str, list[dict[str, Any]]]:
        """Change data capture: every entity of the listed kinds modified at or after ``since``."""
        if since < self.now() - CDC_LOOKBACK:
            raise validation("changedSince must be within the last 30 days", "2010", "Invalid changedSince")
        out: dict[str, list[dict[str, Any]]] = {}
        for entity in entities:
            if entity not in self.records:
                raise validation(
                    f"Unsupported entity {entity} for CDC", "2010", "Request has invalid or unsupported property"
                )
            rows = [
                r
                for r in [*self.all(entity), *self.deleted[entity]]
                if datetime.fromisoformat(r["MetaData"]["LastUpdatedTime"]) >= since
            ]
            rows.sort(key=lambda r: r["MetaData"]["LastUpdatedTime"])
            out[entity] = rows[:CDC_MAX_OBJECTS]  # the oldest 1,000 changes of each entity; the rest are not said
        return out

    # -- helpers for tests and the demo -------------------------------------------------------------

    def receive_payment(
        self,
        invoice_ids: dict[str, Decimal],
        *,
        amount: Decimal | None = None,
        ref: str | None = None,
        txn_date: str | None = None,
    ) -> dict[str, Any]:
        """A customer pays in QuickBooks (or a bookkeeper enters it by hand): a Payment linked to invoices."""
        invoices = [self.get("Invoice", i) for i in invoice_ids]
        customers = {inv["CustomerRef"]["value"] for inv in invoices}
        if len(customers) != 1:
            raise ValueError("one payment pays invoices of one customer")
        lines = [{"Amount": amt, "LinkedTxn": [{"TxnId": i, "TxnType": "Invoice"}]} for i, amt in invoice_ids.items()]
        body: dict[str, Any] = {
            "CustomerRef": {"value": customers.pop()},
            "TotalAmt": amount if amount is not None else sum(invoice_ids.values(), Decimal(0)),
            "CurrencyRef": invoices[0]["CurrencyRef"],
            "TxnDate": txn_date or self.now().date().isoformat(),
            "Line": lines,
        }
        if ref:
            body["PaymentRefNum"] = ref
        payment = self.create("Payment", body)
        self.notify([("Payment", payment["Id"], "Create", payment["MetaData"]["LastUpdatedTime"])])
        return payment

    def pay_bill(self, bill_id: str, amount: Decimal | None = None, *, txn_date: str | None = None) -> dict[str, Any]:
        """A bookkeeper pays a vendor's bill by check (what billbridge reads back as fees paid)."""
        bill = self.get("Bill", bill_id)
        bank = next((a for a in self.all("Account") if a.get("AccountType") == "Bank"), None)
        if bank is None:
            bank = self.create("Account", {"Name": "Checking", "AccountType": "Bank"})
        paid = bill["Balance"] if amount is None else amount
        body: dict[str, Any] = {
            "VendorRef": {"value": bill["VendorRef"]["value"]},
            "PayType": "Check",
            "CheckPayment": {"BankAccountRef": {"value": bank["Id"]}},
            "TotalAmt": paid,
            "CurrencyRef": bill["CurrencyRef"],
            "TxnDate": txn_date or self.now().date().isoformat(),
            "Line": [{"Amount": paid, "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}],
        }
        payment = self.create("BillPayment", body)
        self.notify([("BillPayment", payment["Id"], "Create", payment["MetaData"]["LastUpdatedTime"])])
        return payment

    def webhook_payload(self, changes: list[tuple[str, str, str, str]]) -> bytes:
        """A notification of (entity, id, operation, last updated) changes, in the webhook's format."""
        if self.webhook.format == "legacy":
            entities = [{"name": n, "id": i, "operation": op, "lastUpdated": at} for n, i, op, at in changes]
            return json.dumps(
                {"eventNotifications": [{"realmId": self.realm_id, "dataChangeEvent": {"entities": entities}}]}
            ).encode()
        source = "intuit." + base64.b64encode(hashlib.sha256(self.realm_id.encode()).digest()).decode()
        return json.dumps(
            [
                {
                    "specversion": "1.0",
                    "id": secrets.token_hex(16),
                    "source": source,
                    "type": f"qbo.{name.lower()}.{_PAST_TENSE.get(op, op.lower())}.v1",
                    "datacontenttype": "application/json",
                    "time": _utc_z(at),
                    "intuitentityid": entity_id,
                    "intuitaccountid": self.realm_id,
                    "data": {},
                }
                for name, entity_id, op, at in changes
            ]
        ).encode()

    def notify(self, changes: list[tuple[str, str, str, str]]) -> None:
        """POST a signed webhook notification to the configured URL (best effort, as Intuit retries later)."""
        if self.webhook.url is None:
            return
        payload = self.webhook_payload(changes)
        headers = {
            "intuit-signature": sign_webhook(payload, self.webhook.verifier_token),
            "Content-Type": "application/json",
        }
        try:
            status: int | None = requests.post(self.webhook.url, data=payload, headers=headers, timeout=5).status_code
        except requests.RequestException:
            status = None
        self.webhook.delivered.append((status, payload))


# -- per-entity validation, as QuickBooks checks references and amounts ------------------------------------


def _ref(company: QboCompany, body: dict[str, Any], key: str, entity: str) -> dict[str, Any]:
    ref = body.get(key)
    if not isinstance(ref, dict) or not ref.get("value"):
        raise validation(f"Required parameter {key} is missing in the request")
    ident = str(ref["value"])
    if ident not in company.records[entity]:
        raise QboFault(
            400,
            "Invalid Reference Id",
            f"Invalid Reference Id : {entity} assigned to this transaction has been deleted or does not exist: {ident}",
            "2500",
        )
    return company.records[entity][ident]


def _plain(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    return body


_NAME_SHARERS = ("Customer", "Vendor", "Employee")  # DisplayName is unique across the three, inactive included


def _unique(company: QboCompany, entity: str, key: str, body: dict[str, Any]) -> None:
    name = body.get(key)
    if not name:
        raise validation(f"Required parameter {key} is missing in the request")
    sharers = _NAME_SHARERS if entity in _NAME_SHARERS else (entity,)
    for other in (r for e in sharers for r in company.records[e].values()):
        if other.get(key) == name and other.get("Id") != body.get("Id"):  # Ids are unique across entities
            raise QboFault(
                400, "Duplicate Name Exists Error", f"The name supplied already exists. : Id={other['Id']}", "6240"
            )


def _customer(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    if ":" in str(body.get("DisplayName", "")):  # Intuit's XSD: "The customer name must not contain a colon"
        raise validation(
            "Business Validation Error: The customer name must not contain a colon (:).",
            "6000",
            "A business validation error has occurred while processing your request",
        )
    _unique(company, "Customer", "DisplayName", body)
    body.setdefault("CurrencyRef", {"value": company.home_currency})
    body.setdefault("Balance", Decimal(0))
    body.setdefault("Active", True)
    return body


def _party(entity: str) -> Callable[[QboCompany, dict[str, Any]], dict[str, Any]]:
    """Employees: only what the name rule needs (they share DisplayNames with customers and vendors)."""

    def check(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
        _unique(company, entity, "DisplayName", body)
        body.setdefault("Active", True)
        return body

    return check


def _vendor(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    """A vendor: its DisplayName unique across customers, vendors and employees (DESIGN.md; the XSD
    states a colon rule for customers only), in the home currency unless it says another."""
    _unique(company, "Vendor", "DisplayName", body)
    body.setdefault("CurrencyRef", {"value": company.home_currency})
    body.setdefault("Balance", Decimal(0))
    body.setdefault("Active", True)
    return body


def _purchase_by_vendor(entity: str) -> Callable[[QboCompany, dict[str, Any]], dict[str, Any]]:
    """The validator of a Bill or a VendorCredit (the XSD's PurchaseByVendor both extend)."""
    return lambda company, body: _bill(company, body, entity)


def _bill(company: QboCompany, body: dict[str, Any], entity: str = "Bill") -> dict[str, Any]:
    """As QuickBooks takes a Bill (or a VendorCredit, shaped alike): a VendorRef, lines each an
    AccountBasedExpenseLineDetail naming an existing AccountRef (or an ItemBasedExpenseLineDetail naming
    an item) with a non-negative Amount, in the vendor's currency; DocNumber (the vendor's reference) at
    most 21 characters and, with duplicate checking on, not used twice for the same vendor (6140)."""
    vendor = _ref(company, body, "VendorRef", "Vendor")
    currency = (body.get("CurrencyRef") or {}).get("value", vendor["CurrencyRef"]["value"])
    if currency != vendor["CurrencyRef"]["value"]:
        raise validation(
            f"Currency {currency} does not match the vendor's currency {vendor['CurrencyRef']['value']}",
            "6000",
            "A business validation error has occurred while processing your request",
        )
    body["CurrencyRef"] = {"value": currency}
    number = body.get("DocNumber")
    if number is not None and len(str(number)) > DOC_NUMBER_MAX:
        raise QboFault(
            400,
            "String length is either shorter or longer than supported by specification",
            f"String length specified does not match the supported length. Min:0 Max:{DOC_NUMBER_MAX} "
            f"supplied:{len(str(number))}",
            "2050",
        )
    if number is not None and company.duplicate_doc_number_check:
        for other in company.records[entity].values():
            same_vendor = other["VendorRef"]["value"] == vendor["Id"]
            if same_vendor and other.get("DocNumber") == number and other.get("Id") != body.get("Id"):
                raise QboFault(
                    400,
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. This number has "
                    f"already been used. DocNumber={number} is assigned to TxnType={entity} with TxnId={other['Id']}",
                    "6140",
                )
    lines = body.get("Line")
    if not isinstance(lines, list) or not lines:
        raise validation("Required parameter Line is missing in the request")
    total = Decimal(0)
    for n, line in enumerate(lines, start=1):
        kind = line.get("DetailType")
        if kind not in ("AccountBasedExpenseLineDetail", "ItemBasedExpenseLineDetail") or not isinstance(
            line.get(kind), dict
        ):
            raise validation(
                f"Line {n}: DetailType must be AccountBasedExpenseLineDetail or ItemBasedExpenseLineDetail, with its detail"
            )
        if kind == "AccountBasedExpenseLineDetail":
            _ref(company, line[kind], "AccountRef", "Account")
        else:
            _ref(company, line[kind], "ItemRef", "Item")
        line["Amount"] = _decimal(line.get("Amount"), f"Line {n} Amount")
        if line["Amount"] < 0:
            raise validation(
                f"Line {n}: Amount must not be negative",
                "6000",
                "A business validation error has occurred while processing your request",
            )
        line["LineNum"] = n
        line.setdefault("Id", str(n))
        total += line["Amount"]
    body["TotalAmt"] = total
    body["Balance"] = total if "Balance" not in body else _decimal(body["Balance"], "Balance")
    body.setdefault("TxnDate", company.now().date().isoformat())
    return body


def _bill_payment(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    """A payment of bills: a VendorRef, a PayType (Check with a CheckPayment's BankAccountRef, or
    CreditCard with a CreditCardPayment's CCAccountRef), lines linking that vendor's bills."""
    vendor = _ref(company, body, "VendorRef", "Vendor")
    pay_type = body.get("PayType")
    detail = {"Check": ("CheckPayment", "BankAccountRef"), "CreditCard": ("CreditCardPayment", "CCAccountRef")}
    if pay_type not in detail:
        raise validation("Required parameter PayType is missing in the request (Check or CreditCard)")
    holder, account = detail[pay_type]
    _ref(company, body.get(holder) or {}, account, "Account")
    body["TotalAmt"] = _decimal(body.get("TotalAmt"), "TotalAmt")
    for line in body.get("Line", []):
        line["Amount"] = _decimal(line.get("Amount"), "Line Amount")
        for link in line.get("LinkedTxn", []):
            if link.get("TxnType") != "Bill":
                raise validation("a bill payment links bills", "2010", "Request has invalid or unsupported property")
            bill = _ref(company, {"Ref": {"value": link.get("TxnId")}}, "Ref", "Bill")
            if bill["VendorRef"]["value"] != vendor["Id"]:
                raise validation(
                    "The linked bill belongs to another vendor",
                    "6000",
                    "A business validation error has occurred while processing your request",
                )
    body.setdefault("CurrencyRef", vendor["CurrencyRef"])
    body.setdefault("TxnDate", company.now().date().isoformat())
    return body


def _item(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    _unique(company, "Item", "Name", body)
    if body.get("Type", "Service") in ("Service", "NonInventory"):
        _ref(company, body, "IncomeAccountRef", "Account")
    body.setdefault("Type", "Service")
    body.setdefault("Active", True)
    return body


def _doc_number(company: QboCompany, entity: str, body: dict[str, Any], *, unique: bool = True) -> None:
    """DocNumber: at most 21 characters (Intuit's XSD), and unique per transaction type when the
    company checks duplicate numbers: 6140 "Duplicate Document Number Error" (not 6240, a name's)."""
    number = body.get("DocNumber")
    if number is None:
        return
    if len(str(number)) > DOC_NUMBER_MAX:
        raise QboFault(
            400,
            "String length is either shorter or longer than supported by specification",
            f"String length specified does not match the supported length. Min:0 Max:{DOC_NUMBER_MAX} "
            f"supplied:{len(str(number))}",
            "2050",
        )
    if unique and company.duplicate_doc_number_check:
        for other in company.records[entity].values():
            if other.get("DocNumber") == number and other.get("Id") != body.get("Id"):
                raise QboFault(
                    400,
                    "Duplicate Document Number Error",
                    "Duplicate Document Number Error : You must specify a different number. This number has "
                    f"already been used. DocNumber={number} is assigned to TxnType={entity} with TxnId={other['Id']}",
                    "6140",
                )


def _invoice(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    _doc_number(company, "Invoice", body)
    return _sales_document(company, body)


def _credit_memo(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    _doc_number(company, "CreditMemo", body)
    return _sales_document(company, body)


def _sales_document(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    customer = _ref(company, body, "CustomerRef", "Customer")
    currency = (body.get("CurrencyRef") or {}).get("value", company.home_currency)
    if currency != customer["CurrencyRef"]["value"]:
        raise validation(
            f"Currency {currency} does not match the customer's currency {customer['CurrencyRef']['value']}",
            "6000",
            "A business validation error has occurred while processing your request",
        )
    body["CurrencyRef"] = {"value": currency}
    lines = body.get("Line")
    if not isinstance(lines, list) or not lines:
        raise validation("Required parameter Line is missing in the request")
    total = Decimal(0)
    for n, line in enumerate(lines, start=1):
        line["Amount"] = _decimal(line.get("Amount"), f"Line {n} Amount")
        line["LineNum"] = n
        detail = line.get("SalesItemLineDetail") or {}
        _ref(company, detail, "ItemRef", "Item")
        if "Qty" in detail and "UnitPrice" in detail:
            detail["Qty"] = _decimal(detail["Qty"], f"Line {n} Qty")
            detail["UnitPrice"] = _decimal(detail["UnitPrice"], f"Line {n} UnitPrice")
            if detail["Qty"] * detail["UnitPrice"] != line["Amount"]:
                # QuickBooks rejects a line whose Amount is not UnitPrice * Qty
                raise validation(
                    f"Line {n}: Amount is not equal to UnitPrice * Qty",
                    "6070",
                    "Amount calculation incorrect in the request",
                )
        total += line["Amount"]
    body["TotalAmt"] = total
    body["Balance"] = total if "Balance" not in body else _decimal(body["Balance"], "Balance")
    body.setdefault("TxnDate", company.now().date().isoformat())
    return body


def _payment(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    customer = _ref(company, body, "CustomerRef", "Customer")
    body["TotalAmt"] = _decimal(body.get("TotalAmt"), "TotalAmt")
    applied = Decimal(0)
    for line in body.get("Line", []):
        line["Amount"] = _decimal(line.get("Amount"), "Line Amount")
        for link in line.get("LinkedTxn", []):
            if link.get("TxnType") != "Invoice":
                raise validation(
                    "only invoices can be linked to a payment in this sandbox",
                    "2010",
                    "Request has invalid or unsupported property",
                )
            invoice = _ref(company, {"Ref": {"value": link.get("TxnId")}}, "Ref", "Invoice")
            if invoice["CustomerRef"]["value"] != customer["Id"]:
                raise validation(
                    "The linked invoice belongs to another customer",
                    "6000",
                    "A business validation error has occurred while processing your request",
                )
        applied += line["Amount"]
    if applied > body["TotalAmt"]:
        raise validation(
            "The payment amount must be at least the amount applied to invoices",
            "6000",
            "A business validation error has occurred while processing your request",
        )
    body["UnappliedAmt"] = body["TotalAmt"] - applied
    body.setdefault("CurrencyRef", customer["CurrencyRef"])
    body.setdefault("TxnDate", company.now().date().isoformat())
    return body


def _journal_entry(company: QboCompany, body: dict[str, Any]) -> dict[str, Any]:
    """As QuickBooks takes a JournalEntry: every line a JournalEntryLineDetail with a PostingType (Debit
    or Credit), an existing AccountRef and a non-negative Amount; the debits equal the credits. DocNumber
    at most 21 characters; a repeated journal number is only a warning in QuickBooks' own screens."""
    _doc_number(company, "JournalEntry", body, unique=False)
    lines = body.get("Line")
    if not isinstance(lines, list) or not lines:
        raise validation("Required parameter Line is missing in the request")
    sides = {"Debit": Decimal(0), "Credit": Decimal(0)}
    for n, line in enumerate(lines, start=1):
        if line.get("DetailType") != "JournalEntryLineDetail" or not isinstance(
            line.get("JournalEntryLineDetail"), dict
        ):
            raise validation(f"Line {n}: DetailType must be JournalEntryLineDetail, with its JournalEntryLineDetail")
        detail = line["JournalEntryLineDetail"]
        posting = detail.get("PostingType")
        if posting not in sides:
            raise validation(
                f"Line {n}: PostingType must be Debit or Credit", "2010", "Request has invalid or unsupported property"
            )
        _ref(company, detail, "AccountRef", "Account")
        line["Amount"] = _decimal(line.get("Amount"), f"Line {n} Amount")
        if line["Amount"] < 0:
            raise validation(
                f"Line {n}: Amount must not be negative",
                "6000",
                "A business validation error has occurred while processing your request",
            )
        line["LineNum"] = n
        line.setdefault("Id", str(n - 1))
        sides[posting] += line["Amount"]
    if sides["Debit"] != sides["Credit"]:
        raise validation(
            f"Business Validation Error: debits ({sides['Debit']}) and credits ({sides['Credit']}) must balance",
            "6000",
            "A business validation error has occurred while processing your request",
        )
    body["TotalAmt"] = sides["Debit"]
    body.setdefault("CurrencyRef", {"value": company.home_currency})
    body.setdefault("Adjustment", False)
    body.setdefault("TxnDate", company.now().date().isoformat())
    return body


_VALIDATORS: dict[str, Callable[[QboCompany, dict[str, Any]], dict[str, Any]]] = {
    "JournalEntry": _journal_entry,
    "Customer": _customer,
    "Item": _item,
    "Invoice": _invoice,
    "CreditMemo": _credit_memo,
    "Payment": _payment,
    "Vendor": _vendor,
    "Employee": _party("Employee"),
    "Bill": _purchase_by_vendor("Bill"),
    "BillPayment": _bill_payment,
    "VendorCredit": _purchase_by_vendor("VendorCredit"),
}
