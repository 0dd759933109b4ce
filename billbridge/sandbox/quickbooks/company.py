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
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billbridge.sandbox.quickbooks.errors import QboFault, not_found, validation
from billbridge.sandbox.quickbooks.query import parse_query, run_query
from billbridge.sandbox.webhooks import Attempt, Redelivery, WebhookQueue

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
INTUIT_WEBHOOK_TIMEOUT_SECONDS = 3.0  # Intuit: an endpoint must answer a notification with 200 within 3 seconds


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
    client_id: str = ""  # the app it was issued to: only that app can spend it
    superseded_at: float | None = None  # when a refresh with it returned a newer one
    spent: int = 0  # how many refreshes it paid for (more than one: two workers raced)


@dataclass
class TokenPolicy:
    access_seconds: float = ACCESS_TOKEN_SECONDS
    grace_seconds: float = 120.0  # how long a superseded refresh token still works
    hard_seconds: float = REFRESH_TOKEN_HARD_SECONDS  # the authorisation's lifetime, whatever the refreshes


@dataclass
class Webhook:
    """Where the company's change notifications go. Intuit sends them from a queue, one realm at a time
    and in order, retrying one its endpoint did not answer 200 within 3 seconds (10 s, 20 s, 30 s, 5 min,
    ...); the sandbox does the same with ``redelivery``'s short delays."""

    url: str | None = None
    verifier_token: str = field(default_factory=lambda: secrets.token_hex(16))
    # Intuit moved every app to CloudEvents in 2026; "legacy" sends the eventNotifications format.
    format: str = "cloudevents"
    delivered: list[tuple[int | None, bytes]] = field(default_factory=list)  # (final status or None, payload)
    redelivery: Redelivery = field(default_factory=lambda: Redelivery(timeout=INTUIT_WEBHOOK_TIMEOUT_SECONDS))
    _queue: WebhookQueue | None = None
    _sent: int = 0

    def send(self, payload: bytes) -> None:
        """Queue a signed notification to ``url`` (a changed ``url`` gets a queue of its own)."""
        if self.url is None:
            return
        if self._queue is None or self._queue.url != self.url:
            self._queue = WebhookQueue(self.url, self.redelivery, name="quickbooks-webhooks", on_done=self._done)
        headers = {"intuit-signature": sign_webhook(payload, self.verifier_token), "Content-Type": "application/json"}
        self._sent += 1
        self._queue.send(str(self._sent), lambda: (payload, headers))

    def _done(self, key: str, status: int | None, payload: bytes) -> None:
        self.delivered.append((status, payload))

    @property
    def attempts(self) -> list[Attempt]:
        return self._queue.attempts if self._queue is not None else []

    def flush(self) -> None:
        """Wait until every queued notification has been delivered or has used up its attempts."""
        if self._queue is not None:
            self._queue.flush()


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
        multicurrency: bool = False,
        online_payments: bool = False,
    ) -> None:
        # QuickBooks Payments on: new invoices allow card and bank payment unless they say otherwise,
        # and such an invoice with a BillEmail has a sharable InvoiceLink (read with include=invoiceLink)
        self.online_payments = online_payments
        self.realm_id = realm_id
        self.client_id = client_id or "AB" + secrets.token_hex(12)
        self.client_secret = client_secret or secrets.token_hex(20)
        self.tokens = tokens or TokenPolicy()
        self.clock = clock
        self.home_currency = home_currency
        # Preferences.CurrencyPrefs.MultiCurrencyEnabled: off by default (Intuit: "By default, multicurrency
        # is disabled in a QuickBooks company"); with it on, transactions may be in other currencies
        self.multicurrency = multicurrency
        self.exchange_rates: dict[str, dict[str, Decimal]] = {}  # source currency -> AsOfDate -> home per unit
        # the company setting "warn if duplicate invoice number is used": with it on, the API refuses one (6140)
        self.duplicate_doc_number_check = duplicate_doc_number_check
        self.webhook = Webhook()
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES}
        # What change data capture reports of deleted records: Id, status "Deleted", when.
        self.deleted: dict[str, list[dict[str, Any]]] = {name: [] for name in ENTITIES}
        self._next_id = 1
        self._last_stamp = 0.0
        # the apps connected to this company (client id -> secret); Intuit throttles each app apart
        self.apps: dict[str, str] = {self.client_id: self.client_secret}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.access_apps: dict[str, str] = {}  # access token -> the app (client id) it was issued to
        self.replies: dict[str, tuple[int, Any]] = {}  # requestid -> the first answer
        self.sent_emails: list[dict[str, str]] = []  # what QuickBooks "mailed" (POST /invoice/{id}/send)
        self.initial_refresh_token = self._issue_refresh(client_id=self.client_id)
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

    def _issue_refresh(self, granted_at: float | None = None, *, client_id: str) -> str:
        token = "RT1-" + secrets.token_urlsafe(24)
        now = self.clock()
        self.refresh_tokens[token] = RefreshToken(
            token, now, granted_at if granted_at is not None else now, client_id=client_id
        )
        return token

    def connect_app(self) -> tuple[str, str, str]:
        """Another app connected to this company (a second integration): its client id, secret and first
        refresh token. Intuit's 10 requests a second are per realm and app, so each app has its own."""
        with self.lock:
            client_id, secret = "AB" + secrets.token_hex(12), secrets.token_hex(20)
            self.apps[client_id] = secret
            return client_id, secret, self._issue_refresh(client_id=client_id)

    def check_client(self, client_id: str, client_secret: str) -> bool:
        secret = self.apps.get(client_id)
        return secret is not None and hmac.compare_digest(client_secret, secret)

    def refresh(self, refresh_token: str, client_id: str | None = None) -> dict[str, Any] | None:
        """Spend a refresh token (of app ``client_id``, by default the first): a new access token and a
        new (rotated) refresh token, or None (invalid_grant)."""
        client_id = client_id or self.client_id
        with self.lock:
            record = self.refresh_tokens.get(refresh_token)
            now = self.clock()
            if record is None or record.client_id != client_id or now - record.issued_at > REFRESH_TOKEN_SECONDS:
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
            self.access_apps[access] = client_id
            return {
                "token_type": "bearer",
                "access_token": access,
                "expires_in": int(self.tokens.access_seconds),
                "refresh_token": self._issue_refresh(record.granted_at, client_id=client_id),
                "x_refresh_token_expires_in": int(min(REFRESH_TOKEN_SECONDS, hard_left)),
                "x_refresh_token_hard_expires_in": int(hard_left),
            }

    def access_ok(self, token: str) -> bool:
        with self.lock:
            expiry = self.access_tokens.get(token)
            return expiry is not None and self.clock() < expiry

    def app_of(self, token: str) -> str:
        """The app (client id) an access token was issued to."""
        with self.lock:
            return self.access_apps.get(token, self.client_id)

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
            record = validate(self, entity, dict(body))
            record["Id"] = str(self._next_id)
            self._next_id += 1
            if entity == "Invoice" and self.online_payments:
                record.setdefault("AllowOnlineCreditCardPayment", True)
                record.setdefault("AllowOnlineACHPayment", True)
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
                record = validate(self, entity, merged)
            except QboFault:
                self._apply(entity, current, +1)
                raise
            record["SyncToken"] = str(int(current["SyncToken"]) + 1)
            record["MetaData"] = {**current["MetaData"], "LastUpdatedTime": self._stamp()}
            self.records[entity][record["Id"]] = record
            self._apply(entity, record, +1)
            return record

    def with_invoice_link(self, record: dict[str, Any]) -> dict[str, Any]:
        """An invoice as read with ``include=invoiceLink`` (minor version 36 on): with its sharable
        ``InvoiceLink`` when online payment is allowed on it and it has a BillEmail (Intuit returns it
        only then), else as it is."""
        online = record.get("AllowOnlineCreditCardPayment") or record.get("AllowOnlineACHPayment")
        if not online or not (record.get("BillEmail") or {}).get("Address"):
            return record
        code = hashlib.sha256(f"{self.realm_id}:{record['Id']}".encode()).hexdigest()[:32]
        return {
            **record,
            "InvoiceLink": f"https://connect.intuit.sandbox/portal/app/CommerceNetwork/view/scs-v1-{code}",
        }

    def send(self, ident: str, send_to: str | None) -> dict[str, Any]:
        """E-mail an invoice as QuickBooks does: to ``sendTo`` (which becomes its BillEmail; several
        addresses comma separated, as ``BillEmail.Address`` holds them) or its BillEmail, with its
        ``BillEmailCc`` in copy; EmailStatus EmailSent, DeliveryInfo with the time. Recorded in
        ``sent_emails`` (``To`` and ``Cc`` as the invoice holds them). Intuit's limits: BillEmail
        100 characters, BillEmailCc 200 (Finance.xsd)."""
        with self.lock:
            current = self.get("Invoice", ident)
            address = send_to or (current.get("BillEmail") or {}).get("Address")
            if not address:
                raise validation(
                    "BillEmail is required to send an invoice",
                    "2020",
                    "Required param missing, need to supply the required value for the API",
                )
            copy_to = str((current.get("BillEmailCc") or {}).get("Address") or "")
            for field_name, value, most in (("BillEmail", address, 100), ("BillEmailCc", copy_to, 200)):
                if len(value) > most:
                    raise validation(
                        f"{field_name} is {len(value)} characters; the maximum is {most}",
                        "6000",
                        f"String length is either shorter or longer than supported by specification: {field_name}",
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
            self.sent_emails.append(
                {"Invoice": ident, "DocNumber": str(record.get("DocNumber")), "To": address, "Cc": copy_to}
            )
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

    def preferences(self) -> dict[str, Any]:
        """``GET /preferences``: the part of Intuit's Preferences entity the sandbox keeps (CurrencyPrefs)."""
        return {
            "CurrencyPrefs": {
                "MultiCurrencyEnabled": self.multicurrency,
                "HomeCurrency": {"value": self.home_currency},
            },
            "Id": "1",
            "SyncToken": "0",
        }

    def set_exchange_rate(self, source: str, as_of: str, rate: Decimal) -> None:
        """The rate QuickBooks holds for ``source`` from ``as_of`` on: home currency units per one unit."""
        with self.lock:
            self.exchange_rates.setdefault(source, {})[as_of] = rate

    def exchange_rate(self, source: str, as_of: str | None) -> dict[str, Any]:
        """``GET /exchangerate?sourcecurrencycode=&asofdate=``: the rate into the home currency in force on
        ``as_of`` (default today): the newest one set on or before that day. Intuit answers only for a
        multicurrency company; a currency without a rate is not found."""
        with self.lock:
            day = as_of or self.now().date().isoformat()
            if not self.multicurrency:
                raise validation(
                    "Multicurrency is not enabled for this company", "6000", "A business validation error has occurred"
                )
            if source == self.home_currency:
                rate, on = Decimal(1), day
            else:
                known = [d for d in self.exchange_rates.get(source, {}) if d <= day]
                if not known:
                    raise not_found("ExchangeRate", f"{source} {day}")
                on = max(known)
                rate = self.exchange_rates[source][on]
            return {
                "SourceCurrencyCode": source,
                "TargetCurrencyCode": self.home_currency,
                "Rate": rate,
                "AsOfDate": on,
                "SyncToken": "0",
                "MetaData": {"LastUpdatedTime": self._stamp()},
            }

    def _apply(self, entity: str, record: dict[str, Any], sign: int) -> None:
        """A payment (of invoices) or bill payment changes the balances of what it links to (its rule's
        ``links``); a bill adds to its vendor's Balance (what the company owes it), a vendor credit
        or bill payment takes from it (Intuit: Vendor.Balance, the open balance unpaid); ``sign`` -1
        takes it back (an update's old version, a delete)."""
        effect = _VENDOR_BALANCE.get(entity)
        vendor = self.records["Vendor"].get(str(record.get("VendorRef", {}).get("value")))
        if effect is not None and vendor is not None:
            vendor["Balance"] = vendor["Balance"] + sign * effect * record["TotalAmt"]
        rule = RULES.get(entity)
        if rule is None or rule.links is None:
            return
        for line in record.get("Line", []):
            for link in line.get("LinkedTxn", []):
                linked = self.records[rule.links.entity][link["TxnId"]]
                linked["Balance"] = linked["Balance"] - sign * line["Amount"]
                linked["MetaData"] = {**linked["MetaData"], "LastUpdatedTime": self._stamp()}

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
        """Send a signed webhook notification to the configured URL, from the webhook's queue (retried
        while the endpoint does not take it); ``webhook.flush()`` waits for it."""
        if self.webhook.url is not None:
            self.webhook.send(self.webhook_payload(changes))


# -- per-entity validation, as QuickBooks checks references and amounts ------------------------------------
#
# One path for every entity, driven by ``RULES``: what an entity requires, which name is unique, the
# party it belongs to (and whether its currency must be the party's), how its DocNumber is checked, what
# its lines are, how its totals follow, and the defaults QuickBooks fills in. ``validate`` runs the
# steps in that order, so every entity refuses a bad request the same way.

BUSINESS = "A business validation error has occurred while processing your request"
INVALID = "Request has invalid or unsupported property"


@dataclass(frozen=True)
class LineRule:
    """An entity's lines: ``details`` maps each DetailType to the reference its detail must name.
    ``typed``: the DetailType must be one of them (else ``wrong_kind``); untyped lines (sales
    documents) read the one detail they have. ``posting``: Debit/Credit sides (a journal entry)."""

    details: dict[str, tuple[str, str]]
    typed: bool = True
    wrong_kind: str = ""
    non_negative: bool = False
    first_id: int | None = None  # line Ids QuickBooks gives from this number (None: none)
    posting: bool = False
    qty_price: bool = False  # Amount must be Qty * UnitPrice when both are given (6070)


@dataclass(frozen=True)
class LinkRule:
    """Lines that apply money to transactions: each links a ``txn_type`` (``entity``) of the same party."""

    txn_type: str
    entity: str
    wrong_type: str
    applied_at_most_total: bool = False  # the money applied may not exceed TotalAmt; the rest is UnappliedAmt
    # A bill payment: TotalAmt is the sum of its lines (Intuit's XSD: "determined by taking the sum of all
    # lines"), it has lines, and no line pays more than its bill's open balance.
    applied_is_total: bool = False


Default = Callable[["QboCompany", dict[str, Any], dict[str, Any] | None], Any]
Check = Callable[["QboCompany", dict[str, Any]], None]


@dataclass(frozen=True)
class EntityRule:
    """How QuickBooks takes one entity (see ``validate``)."""

    required: tuple[str, ...] = ()
    unique: str | None = None  # a name unique among the entity's records (DisplayName: across the parties)
    checks: tuple[Check, ...] = ()  # the entity's own rules, before anything else
    party: tuple[str, str] | None = None  # (reference key, entity): whose document it is
    currency: str | None = None  # "match": the party's currency or refused; "default": the party's if unsaid
    doc_number: str | None = None  # "unique", "per_party" (a vendor's bill numbers), "free" (length only)
    refs: tuple[tuple[str, str], ...] = ()  # further references that must exist (key, entity)
    lines: LineRule | None = None
    links: LinkRule | None = None
    defaults: tuple[tuple[str, Default], ...] = ()  # filled in order where the body has none
    after: tuple[Check, ...] = ()  # checks on the finished body (totals and defaults filled in)


def _home_currency(company: QboCompany, body: dict[str, Any], party: dict[str, Any] | None) -> Any:
    return {"value": company.home_currency}


def _party_currency(company: QboCompany, body: dict[str, Any], party: dict[str, Any] | None) -> Any:
    return party["CurrencyRef"] if party is not None else {"value": company.home_currency}


def _today(company: QboCompany, body: dict[str, Any], party: dict[str, Any] | None) -> Any:
    return company.now().date().isoformat()


def _const(value: Any) -> Default:
    return lambda company, body, party: value


def _no_colon(company: QboCompany, body: dict[str, Any]) -> None:
    if ":" in str(body.get("DisplayName", "")):  # Intuit's XSD: "The customer name must not contain a colon"
        raise validation("Business Validation Error: The customer name must not contain a colon (:).", "6000", BUSINESS)


def _income_account(company: QboCompany, body: dict[str, Any]) -> None:
    """A service or non-inventory item names an existing income account."""
    if body.get("Type", "Service") in ("Service", "NonInventory"):
        _ref(company, body, "IncomeAccountRef", "Account")


_VENDOR_BALANCE = {"Bill": 1, "VendorCredit": -1, "BillPayment": -1}  # how each moves its vendor's Balance


_PAY_TYPES = {"Check": ("CheckPayment", "BankAccountRef"), "CreditCard": ("CreditCardPayment", "CCAccountRef")}


def _pay_type(company: QboCompany, body: dict[str, Any]) -> None:
    """A bill payment's PayType: Check with a CheckPayment's BankAccountRef, or CreditCard with a
    CreditCardPayment's CCAccountRef."""
    if body.get("PayType") not in _PAY_TYPES:
        raise validation("Required parameter PayType is missing in the request (Check or CreditCard)")
    holder, account = _PAY_TYPES[body["PayType"]]
    _ref(company, body.get(holder) or {}, account, "Account")


_PARTY_DEFAULTS: tuple[tuple[str, Default], ...] = (
    ("CurrencyRef", _home_currency),
    ("Balance", _const(Decimal(0))),
    ("Active", _const(True)),
)

# Invoices and credit memos: a customer's, in its currency, item lines whose Amount is Qty * UnitPrice.
_SALES_DOCUMENT = EntityRule(
    required=("Line",),
    party=("CustomerRef", "Customer"),
    currency="match",
    doc_number="unique",
    lines=LineRule({"SalesItemLineDetail": ("ItemRef", "Item")}, typed=False, qty_price=True),
    defaults=(("TxnDate", _today),),
)

# Bills and vendor credits (both extend the XSD's PurchaseByVendor): a vendor's, in its currency.
# A Bill's DocNumber is the vendor's reference: with duplicate checking on, not twice for one vendor.
_PURCHASE_BY_VENDOR = EntityRule(
    required=("Line",),
    party=("VendorRef", "Vendor"),
    currency="match",
    doc_number="per_party",
    lines=LineRule(
        {
            "AccountBasedExpenseLineDetail": ("AccountRef", "Account"),
            "ItemBasedExpenseLineDetail": ("ItemRef", "Item"),
        },
        wrong_kind="DetailType must be AccountBasedExpenseLineDetail or ItemBasedExpenseLineDetail, with its detail",
        non_negative=True,
        first_id=1,
    ),
    defaults=(("TxnDate", _today),),
)

_HOME_DIGITS = {"JPY": 0, "KRW": 0, "BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3}  # else 2


def _exchange(company: QboCompany, body: dict[str, Any]) -> None:
    """A transaction's currency against the company's: in a company without multicurrency only the home
    currency is taken; with it, a transaction in another currency names its ExchangeRate (home units per
    foreign unit, positive) and gets HomeTotalAmt, TotalAmt at that rate rounded to the home currency's
    minor unit; one in the home currency has rate 1. Real QuickBooks fills a missing rate from its own
    rate of the day; the sandbox refuses it, so an entry always carries the rate it was made with."""
    currency = str(body["CurrencyRef"].get("value"))
    home = company.home_currency
    if currency != home and not company.multicurrency:
        raise validation(
            f"CurrencyRef {currency} is not the home currency {home}, and multicurrency is not enabled",
            "6000",
            BUSINESS,
        )
    if not company.multicurrency:
        if "ExchangeRate" in body:
            raise validation("ExchangeRate is valid only in a multicurrency company", "2010", "Invalid property")
        return
    if currency != home and body.get("ExchangeRate") is None:
        raise validation(
            f"ExchangeRate is required for a transaction in {currency} (home currency {home})",
            "2020",
            "Required param missing, need to supply the required value for the API",
        )
    rate = _decimal(body.get("ExchangeRate", 1), "ExchangeRate")
    if rate <= 0 or (currency == home and rate != 1):
        raise validation(
            f"ExchangeRate {rate} is not valid for {currency} (home currency {home})",
            "6000",
            BUSINESS,
        )
    body["ExchangeRate"] = rate
    quantum = Decimal(1).scaleb(-_HOME_DIGITS.get(home, 2))
    body["HomeTotalAmt"] = (body["TotalAmt"] * rate).quantize(quantum, ROUND_HALF_UP)


RULES: dict[str, EntityRule] = {
    # DisplayName is unique across customers, vendors and employees (DESIGN.md; the XSD states the
    # colon rule for customers only); employees hold only what the name rule needs.
    "Customer": EntityRule(unique="DisplayName", checks=(_no_colon,), defaults=_PARTY_DEFAULTS),
    "Vendor": EntityRule(unique="DisplayName", defaults=_PARTY_DEFAULTS),
    "Employee": EntityRule(unique="DisplayName", defaults=(("Active", _const(True)),)),
    "Item": EntityRule(
        unique="Name", checks=(_income_account,), defaults=(("Type", _const("Service")), ("Active", _const(True)))
    ),
    "Invoice": _SALES_DOCUMENT,
    "CreditMemo": _SALES_DOCUMENT,
    "Bill": _PURCHASE_BY_VENDOR,
    "VendorCredit": _PURCHASE_BY_VENDOR,
    # Every line a JournalEntryLineDetail with a PostingType; the debits equal the credits. A repeated
    # journal number is only a warning in QuickBooks' own screens.
    "JournalEntry": EntityRule(
        required=("Line",),
        doc_number="free",
        lines=LineRule(
            {"JournalEntryLineDetail": ("AccountRef", "Account")},
            wrong_kind="DetailType must be JournalEntryLineDetail, with its JournalEntryLineDetail",
            non_negative=True,
            first_id=0,
            posting=True,
        ),
        defaults=(
            ("CurrencyRef", _home_currency),
            ("Adjustment", _const(False)),
            ("TxnDate", _today),
        ),
        after=(_exchange,),
    ),
    "Payment": EntityRule(
        party=("CustomerRef", "Customer"),
        currency="default",
        links=LinkRule(
            "Invoice", "Invoice", "only invoices can be linked to a payment in this sandbox", applied_at_most_total=True
        ),
        defaults=(("TxnDate", _today),),
    ),
    "BillPayment": EntityRule(
        party=("VendorRef", "Vendor"),
        checks=(_pay_type,),
        currency="default",
        required=("Line",),
        links=LinkRule("Bill", "Bill", "a bill payment links bills", applied_is_total=True),
        defaults=(("TxnDate", _today),),
    ),
}


def validate(company: QboCompany, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as QuickBooks stores it, or the fault it answers: the entity's ``RULES`` in order: its
    party, its own checks, required fields, the unique name, the party's currency, the DocNumber,
    the lines and their totals (or the money a payment applies), then the defaults."""
    rule = RULES.get(entity)
    if rule is None:
        return body
    party = _ref(company, body, *rule.party) if rule.party else None
    for check in rule.checks:
        check(company, body)
    for key in rule.required:
        if not isinstance(body.get(key), list) or not body[key]:
            raise validation(f"Required parameter {key} is missing in the request")
    if rule.unique:
        _unique(company, entity, rule.unique, body)
    if rule.currency == "match" and party is not None and rule.party is not None:
        _same_currency(company, body, party, rule.party[1])
    if rule.doc_number:
        _doc_number(company, entity, body, rule, party)
    if rule.lines:
        _lines(company, body, rule.lines)
    if rule.links and party is not None and rule.party is not None:
        _links(company, body, rule.links, party, rule.party, entity)
    if rule.currency == "default":
        body.setdefault("CurrencyRef", _party_currency(company, body, party))
    for key, default in rule.defaults:
        if key not in body:
            body[key] = default(company, body, party)
    for check in rule.after:
        check(company, body)
    return body


def _same_currency(company: QboCompany, body: dict[str, Any], party: dict[str, Any], kind: str) -> None:
    """A document is in its party's currency (what it says, else the home currency for a customer's,
    the vendor's for a bill's)."""
    theirs = party["CurrencyRef"]["value"]
    unsaid = company.home_currency if kind == "Customer" else theirs
    currency = (body.get("CurrencyRef") or {}).get("value", unsaid)
    if currency != theirs:
        raise validation(f"Currency {currency} does not match the {kind.lower()}'s currency {theirs}", "6000", BUSINESS)
    body["CurrencyRef"] = {"value": currency}


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


def _doc_number(
    company: QboCompany, entity: str, body: dict[str, Any], rule: EntityRule, party: dict[str, Any] | None
) -> None:
    """DocNumber: at most 21 characters (Intuit's XSD), and unique per transaction type (a bill's: per
    vendor) when the company checks duplicate numbers: 6140 "Duplicate Document Number Error" (not
    6240, a name's)."""
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
    if rule.doc_number == "free" or not company.duplicate_doc_number_check:
        return
    key = rule.party[0] if rule.doc_number == "per_party" and rule.party and party else None
    for other in company.records[entity].values():
        same_party = key is None or other[key]["value"] == party["Id"]  # type: ignore[index]
        if same_party and other.get("DocNumber") == number and other.get("Id") != body.get("Id"):
            raise QboFault(
                400,
                "Duplicate Document Number Error",
                "Duplicate Document Number Error : You must specify a different number. This number has "
                f"already been used. DocNumber={number} is assigned to TxnType={entity} with TxnId={other['Id']}",
                "6140",
            )


def _lines(company: QboCompany, body: dict[str, Any], rule: LineRule) -> None:
    """Each line's detail and reference, its Amount (a number; not negative where the rule says), its
    LineNum (and Id); then TotalAmt (a journal entry's: its debits, which must equal its credits) and
    Balance (the total unless given)."""
    sides = {"Debit": Decimal(0), "Credit": Decimal(0)}
    total = Decimal(0)
    for n, line in enumerate(body["Line"], start=1):
        kind = line.get("DetailType") if rule.typed else next(iter(rule.details))
        if rule.typed and (kind not in rule.details or not isinstance(line.get(kind), dict)):
            raise validation(f"Line {n}: {rule.wrong_kind}")
        detail = line.get(kind) or {}
        if rule.posting and detail.get("PostingType") not in sides:
            raise validation(f"Line {n}: PostingType must be Debit or Credit", "2010", INVALID)
        _ref(company, detail, *rule.details[str(kind)])
        line["Amount"] = _decimal(line.get("Amount"), f"Line {n} Amount")
        if rule.non_negative and line["Amount"] < 0:
            raise validation(f"Line {n}: Amount must not be negative", "6000", BUSINESS)
        if rule.qty_price and "Qty" in detail and "UnitPrice" in detail:
            detail["Qty"] = _decimal(detail["Qty"], f"Line {n} Qty")
            detail["UnitPrice"] = _decimal(detail["UnitPrice"], f"Line {n} UnitPrice")
            if detail["Qty"] * detail["UnitPrice"] != line["Amount"]:
                # QuickBooks rejects a line whose Amount is not UnitPrice * Qty
                raise validation(
                    f"Line {n}: Amount is not equal to UnitPrice * Qty",
                    "6070",
                    "Amount calculation incorrect in the request",
                )
        line["LineNum"] = n
        if rule.first_id is not None:
            line.setdefault("Id", str(n - 1 + rule.first_id))
        total += line["Amount"]
        if rule.posting:
            sides[detail["PostingType"]] += line["Amount"]
    if rule.posting:
        if sides["Debit"] != sides["Credit"]:
            raise validation(
                f"Business Validation Error: debits ({sides['Debit']}) and credits ({sides['Credit']}) must balance",
                "6000",
                BUSINESS,
            )
        body["TotalAmt"] = sides["Debit"]
        return
    body["TotalAmt"] = total
    body["Balance"] = total if "Balance" not in body else _decimal(body["Balance"], "Balance")


def _links(
    company: QboCompany,
    body: dict[str, Any],
    rule: LinkRule,
    party: dict[str, Any],
    owner: tuple[str, str],
    entity: str,
) -> None:
    """TotalAmt (a number), and each line's Amount applied to transactions of the same party; a
    payment of invoices applies at most its total, the rest unapplied; a bill payment's lines each
    link a bill, pay at most its open balance (what this payment paid on it before counts as open, on
    an update) and add up to its TotalAmt."""
    body["TotalAmt"] = _decimal(body.get("TotalAmt"), "TotalAmt")
    applied = Decimal(0)
    on: dict[str, Decimal] = {}  # linked transaction -> what this payment applies to it
    for line in body.get("Line", []):
        line["Amount"] = _decimal(line.get("Amount"), "Line Amount")
        if rule.applied_is_total and (line["Amount"] <= 0 or not line.get("LinkedTxn")):
            raise validation(
                f"Each line of a {entity} links a {rule.entity.lower()} with a positive Amount", "6000", BUSINESS
            )
        for link in line.get("LinkedTxn", []):
            on[str(link.get("TxnId"))] = on.get(str(link.get("TxnId")), Decimal(0)) + line["Amount"]
            if link.get("TxnType") != rule.txn_type:
                raise validation(rule.wrong_type, "2010", INVALID)
            linked = _ref(company, {"Ref": {"value": link.get("TxnId")}}, "Ref", rule.entity)
            if linked[owner[0]]["value"] != party["Id"]:
                raise validation(
                    f"The linked {rule.entity.lower()} belongs to another {owner[1].lower()}", "6000", BUSINESS
                )
        applied += line["Amount"]
    if rule.applied_at_most_total:
        if applied > body["TotalAmt"]:
            raise validation("The payment amount must be at least the amount applied to invoices", "6000", BUSINESS)
        body["UnappliedAmt"] = body["TotalAmt"] - applied
    if rule.applied_is_total:
        if applied != body["TotalAmt"]:
            raise validation(
                f"TotalAmt {body['TotalAmt']} must be the sum of the lines' amounts, {applied}", "6000", BUSINESS
            )
        before = company.records[entity].get(str(body.get("Id"))) if body.get("Id") else None
        for txn_id, amount in on.items():
            linked = company.records[rule.entity][txn_id]
            paid_before = sum(
                (
                    line["Amount"]
                    for line in (before or {}).get("Line", [])
                    for link in line.get("LinkedTxn", [])
                    if str(link.get("TxnId")) == txn_id
                ),
                Decimal(0),
            )
            if amount > linked["Balance"] + paid_before:
                raise validation(
                    f"The amount applied to {rule.entity.lower()} {txn_id}, {amount}, exceeds its open balance "
                    f"{linked['Balance'] + paid_before}",
                    "6000",
                    BUSINESS,
                )
