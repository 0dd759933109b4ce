"""Customer messages: plan the reminders that are due, then send every queued message (invoice
deliveries, reminders, receipts, dunning notices) exactly once; ``send_reminders`` is the daily
flow doing both, and ``push_invoices`` and ``reconcile_payments`` send what they made (``send_made``).

Every message is an outbox row committed with the event that causes it, once per event (the
store's unique event key): a document issued makes its delivery (``store.outbound_documents.mark_sent``),
a payment applied its receipt (``store.payments``), a declined charge its dunning notice (``flows.collect``);
only reminders, which time makes due, are planned by the daily run. Sending claims outbox rows with a lease like every relay and, per
message: renders it, runs the SMTP envelope, commits the message as ``sending`` and only then sends
DATA (``connectors.smtp``). The boundary: a crash before that commit sends nothing and the message
goes out on the next run; a crash after it leaves ``sending``, which the next run turns into
``unconfirmed`` (shown, never sent blindly again: a person checks and retries). A message the
server took but whose ``sent`` we could not commit is therefore never sent twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import Connection

from billbridge.billing.messaging import Recipients, decline_code, reminder_steps, step_name
from billbridge.billing.partner_fees import statement_csv, statement_of_details
from billbridge.connectors.base import PushResult
from billbridge.connectors.errors import Classified, ErrorKind, VendorError
from billbridge.connectors.smtp import SmtpFailed, SmtpSender, SmtpUnavailable, SmtpUnknown
from billbridge.errors import NotConfigured
from billbridge.flows.message_templates import TemplateDir, template_dir
from billbridge.flows.outbox_relay import Delivery, Handler, RelaySummary, StopRelay, relay
from billbridge.flows.push import token_vault
from billbridge.mapping import messages as render
from billbridge.mapping.invoice_pdf import render_pdf
from billbridge.settings import Settings, SmtpSettings
from billbridge.store import messages as sql
from billbridge.store.db import Store, open_store
from billbridge.store.external_refs import get_external_id
from billbridge.store.outbox import Message
from billbridge.vendors import registry
from billbridge.vendors.registry import PayLink, TokenVault

if TYPE_CHECKING:
    from billbridge.connectors.quickbooks.tokens import TokenStore

UNCONFIRMED = (
    "unconfirmed: a run stopped after handing message {id} to the SMTP server, so it may have arrived; "
    "check the recipient's mailbox or the server's log, then `billbridge messages retry {id} --checked`"
)
EMAIL_BATCH = 200  # e-mails claimed and read per relay batch: the claim, the reads and the delivered mark are per batch
Attach = Callable[[Mapping[str, Any]], Sequence[render.Attachment]]


@dataclass
class Extras:
    """What a message may carry beyond its template: attachments (the invoice PDF) and the pay link."""

    attachments: Attach = field(default=lambda context: ())
    pay_link: Callable[[Mapping[str, Any]], str | None] = field(default=lambda context: None)
    templates: Mapping[str, str] | None = None
    files: TemplateDir | None = None  # the installation's template files (message_templates_dir)

    def environment(self, context: Mapping[str, Any]) -> Environment | None:
        """The template files' environment of a message's entity, language and currency, if any."""
        if self.files is None:
            return None
        values = template_context(context, None)
        return self.files.environment(context["entity"]["entity_ref"], values["language"], values["currency"])


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core


def pdf_font(settings: Settings) -> Path | None:
    """The Unicode font of the PDFs: ``pdf_font``, else DejaVu Sans where installed, else the PDF's
    core fonts (Latin-1 only)."""
    if settings.pdf_font is not None:
        return settings.pdf_font
    return DEJAVU if DEJAVU.exists() else None


def read_logo(entity: Mapping[str, Any]) -> bytes | None:
    """The bytes of an entity's logo file, if it has one; ValueError naming the entity and the file
    when it cannot be read (the message fails with that reason, the others go on)."""
    path = entity.get("logo")
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(
            f"entity {entity['entity_ref']}: its logo {path} cannot be read: {exc.strerror or exc}"
        ) from exc


def invoice_pdf(font: Path | None) -> Attach:
    """Attach the document itself to its delivery message (with the entity's logo, read once a run)."""
    logos: dict[str, bytes | None] = {}

    def attach(context: Mapping[str, Any]) -> Sequence[render.Attachment]:
        invoice = context["invoice"]
        if context["kind"] != "invoice" or invoice is None:
            return ()
        entity = context["entity"]
        if entity.get("logo") not in logos:
            logos[entity.get("logo")] = read_logo(entity)
        try:
            pdf = render_pdf(
                invoice,
                entity=entity,
                customer=context["customer"],
                language=context["language"],
                pay_link=context.get("pay_link"),
                font=font,
                logo=logos[entity.get("logo")],
            )
        except ValueError as exc:
            raise ValueError(f"entity {entity['entity_ref']}: {exc}") from exc
        return (render.Attachment(f"{invoice['number']}.pdf", pdf),)

    return attach


def statement_attachment(context: Mapping[str, Any]) -> Sequence[render.Attachment]:
    """A partner statement's lines as CSV (the columns of ``partners statement --csv``), from what the
    message keeps of the statement as it was closed; nothing for other messages."""
    if context["kind"] != sql.PARTNER_STATEMENT:
        return ()
    of = statement_of_details(context["details"])
    name = f"partner-statement-{of.partner_ref}-{of.period}.csv"
    return (render.Attachment(name, statement_csv(of).encode("utf-8"), "text", "csv"),)


def pay_link(store: Store | None, settings: Settings) -> Callable[[Mapping[str, Any]], str | None]:
    """Where the customer pays an invoice online: the page of the first vendor declaring a pay link
    (the registry's ``pay_link``, in its order: Stripe's hosted invoice page, also the page to update a
    card, then QuickBooks' ``InvoiceLink``) that holds the invoice (the message context's
    ``<vendor>_invoice``); None when none does, or for a credit note. Each vendor is built only when
    first needed; one not configured (or needing its tokens without ``store``) gives none."""
    vault: TokenVault = token_vault(store, settings) if store is not None else _no_tokens
    built: dict[str, PayLink | None] = {}

    def link(context: Mapping[str, Any]) -> str | None:
        invoice = context["invoice"]
        if invoice is None or invoice["doc_type"] != "invoice":
            return None
        for name, build in registry.pay_links().items():
            held = invoice.get(f"{name}_invoice")
            if not held:
                continue
            if name not in built:
                try:
                    built[name] = build(settings, vault)
                except NotConfigured:
                    built[name] = None
            linker = built[name]
            if linker is not None:
                return linker(str(held))
        return None

    return link


def _no_tokens(key: str, initial: str | None) -> TokenStore:
    raise NotConfigured(f"no store to keep the {key} tokens in")


def default_extras(
    settings: Settings, templates: Mapping[str, str] | None = None, store: Store | None = None
) -> Extras:
    """The PDF attachment, the pay link (Stripe's page, else QuickBooks' InvoiceLink with ``store``
    for its tokens) and the template files, as configured; a broken template file is refused here,
    before anything is sent (TemplateProblem naming its file and line)."""
    return Extras(
        attachments=invoice_pdf(pdf_font(settings)),
        pay_link=pay_link(store, settings),
        templates=templates,
        files=template_dir(settings.message_templates_dir),
    )


def template_context(context: Mapping[str, Any], pay_link: str | None, sent_on: date | None = None) -> dict[str, Any]:
    """The variables a template sees: customer, entity, invoice (money as Decimal), details, pay link,
    the day it is sent and how many days overdue the invoice is then. ``sent_on``: the day of the run
    sending it (a reminder planned on one day and sent on a later one, after the SMTP server was down,
    says the later day); for a message only shown, not sent, the day of the run that made it (kept in
    its details), else its own day."""
    invoice = context["invoice"]
    currency = invoice["currency"] if invoice else context["entity"]["currency"]
    statement = context["details"].get("statement")
    if context["kind"] == sql.PARTNER_STATEMENT:  # in the partner's currency, its money as Decimal
        currency = statement["currency"]
        statement = render.partner_statement_values(statement)
    if sent_on is None:
        planned = context["details"].get("sent_on")  # the run's day, kept with a reminder when it was made
        sent_on = date.fromisoformat(planned) if planned else context["as_of"]
    shown = None
    if invoice is not None:
        shown = {
            "number": invoice["number"],
            "doc_type": invoice["doc_type"],
            "billing_date": invoice["billing_date"],
            "due_date": invoice["due_date"],
            "total": invoice["invoice_total"],
            "paid": invoice["amount_paid"],
            "open": invoice["open"],  # after payments and the credit notes applied to it
            "credited": invoice.get("credited", 0),
            "currency": invoice["currency"],
        }
    return {
        "language": context["language"],
        "currency": currency,
        "customer": context["customer"],
        "partner": context.get("partner"),
        "entity": context["entity"],
        "invoice": shown,
        "details": context["details"],
        "payment": context["details"].get("payment"),
        "pay_link": pay_link or context["details"].get("pay_link"),
        "statement": statement,
        "sent_on": sent_on,
        "days_overdue": (sent_on - invoice["due_date"]).days if invoice is not None else None,
    }


def still_due(context: Mapping[str, Any]) -> str | None:
    """Why a queued message should not go out any more (a reminder for an invoice paid or credited in
    full meanwhile), or None."""
    invoice = context["invoice"]
    if invoice is None or context["kind"] not in ("reminder", "dunning"):
        return None
    if invoice["status"] not in ("sent", "partially_paid"):
        return f"invoice {invoice['number']} is {invoice['status']} now"
    if invoice["open"] <= 0:  # paid, or credited: credit notes take back what is open
        return f"invoice {invoice['number']} has nothing open now (credited {invoice.get('credited', 0)})"
    return None


@dataclass(frozen=True)
class _Ready:
    """A message rendered and built, ready for the SMTP envelope."""

    message: Message
    message_id: int
    what: str
    kind: str
    rendered: render.Rendered  # kept with the message once sent (what ``messages show`` prints)
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    email: bytes  # as sent (mapping.messages.email_bytes)


def email_handler(
    store: Store, smtp: SmtpSettings, extras: Extras | None = None, *, today: date | None = None
) -> tuple[Handler, Callable[[], None]]:
    """The relay handler of ``message.email``: one SMTP connection for the run, a batch's messages
    read in one go, and one commit per message: before its DATA command, marking it ``sending``
    together with how the message before it ended (``sent``, or why not). A crash therefore leaves
    at most one message ``sending`` (the one in flight, or the one whose ``sent`` was riding on the
    next commit), which the next run makes ``unconfirmed``: never sent twice, never lost silently.
    The next message is rendered while the server takes in the current one (between DATA's end
    and its answer), so neither side waits for the other's CPU. A problem of the server or the
    settings (a refused login, no STARTTLS, a refused connection) stops the run at once: the
    message it met stays queued with the reason and the rest of the batch is handed back
    (``StopRelay``), not failed one by one. ``today``: the day the run sends on (a run with a date of
    its own, ``send_reminders(as_of)``); else the calendar's day when each message is rendered."""
    extras = extras or Extras()
    sender = SmtpSender(smtp)
    ended: list[sql.Ended] = []  # attempts whose end is not committed yet (it rides on the next commit)
    held: list[Connection] = []  # the run's connection for its commits, opened on first use

    def finish(message_id: int, state: str, error: str | None = None, sent: render.Rendered | None = None) -> None:
        subject, text, html = (sent.subject, sent.text, sent.html) if sent else (None, None, None)
        ended.append(sql.Ended(message_id, state, error, subject, text, html))

    def commit(sending: int | None = None) -> bool:
        if not held:
            held.append(store.held_writer())
        connection = held[0]
        try:
            with connection.begin():
                taken = sql.record_attempts(connection, ended, sending)
        except BaseException:
            held.pop().close()  # a connection that failed is not used again
            raise
        ended.clear()
        return taken

    def close() -> None:
        try:
            sender.close()
        finally:
            while held:
                held.pop().close()

    def prepare(message: Message, context: dict[str, Any] | None) -> _Ready | Delivery:
        """Render and build a message, or say why it does not go out (recorded with ``finish``)."""
        message_id = int(message.payload["message"])
        if context is None:
            return Delivery(message.id, outcome="gone")
        state = context["state"]
        if state == "sending":  # a run died after committing ``sending``: the server may have it
            reason = UNCONFIRMED.format(id=message_id)
            finish(message_id, "unconfirmed", reason)
            return Delivery(message.id, error=Classified(ErrorKind.FATAL, reason), outcome="unconfirmed")
        if state != "queued":  # sent, skipped, retried under a new outbox row: nothing to do here
            return Delivery(message.id, outcome=f"already {state}")
        what = _naming(context)
        stale = still_due(context)
        if stale is not None:
            finish(message_id, "skipped", stale)
            return Delivery(message.id, outcome="skipped")
        try:
            pay_link = extras.pay_link(context) or context["details"].get("pay_link")
            context = {**context, "pay_link": pay_link}
            rendered = render.render(
                context["kind"],
                template_context(context, pay_link, today or date.today()),  # the day it goes out
                extras.templates,
                extras.environment(context),
            )
            attachments = (*extras.attachments(context), *statement_attachment(context))
        except VendorError as exc:  # the pay link could not be read: try again later
            reason = f"{what}: {exc}"
            finish(message_id, "queued", reason)
            return Delivery(message.id, error=Classified(exc.classified.kind, reason))
        except (render.TemplateProblem, ValueError) as exc:
            reason = f"{what}: {exc}"
            finish(message_id, "failed", reason)
            return Delivery(message.id, error=Classified(ErrorKind.FATAL, reason), outcome="failed")
        recipients = context["recipients"]
        email = render.email_bytes(
            rendered,
            sender=context["entity"]["sender"],
            sender_name=context["entity"]["name"],
            to=recipients["to"],
            cc=recipients["cc"],
            message_id=context["message_id"],
            attachments=attachments,
        )
        return _Ready(
            message,
            message_id,
            what,
            context["kind"],
            rendered,
            context["entity"]["sender"],
            tuple(recipients["to"]),
            tuple(recipients["cc"]),
            email,
        )

    def transmit(ready: _Ready, meanwhile: Callable[[], None]) -> Delivery:
        """The envelope, the ``sending`` commit, DATA (``meanwhile`` while the server takes it in)."""
        message, message_id = ready.message, ready.message_id
        try:
            sent = sender.send(
                ready.email, ready.sender, ready.to, lambda: commit(sending=message_id), meanwhile, cc=ready.cc
            )
        except SmtpFailed as exc:
            reason = f"{ready.what}: {exc.classified.reason}"
            retriable = exc.classified.kind == ErrorKind.RETRIABLE
            finish(message_id, "queued" if retriable else "failed", reason)
            return Delivery(message.id, error=Classified(exc.classified.kind, reason))
        except SmtpUnknown as exc:
            reason = f"{ready.what}: {exc}; " + UNCONFIRMED.format(id=message_id)
            finish(message_id, "unconfirmed", reason)
            return Delivery(message.id, error=Classified(ErrorKind.FATAL, reason), outcome="unconfirmed")
        if sent is None:
            return Delivery(message.id, outcome="taken by another run")
        # refused recipients (a cc the server does not know) stay on the message with their answers
        refused = f"{ready.what}: sent, but not to: {'; '.join(sent.refused)}" if sent.refused else None
        finish(message_id, "sent", refused, ready.rendered)
        return Delivery(message.id, outcome=ready.kind)

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        with store.read() as session:
            contexts = sql.sending_contexts(session, [int(m.payload["message"]) for m in messages])
        queue = [(message, contexts.get(int(message.payload["message"]))) for message in messages]
        deliveries: list[Delivery] = []
        upcoming: list[_Ready | Delivery | BaseException] = []  # the next message, prepared ahead

        def prepare_next() -> None:
            if not upcoming and len(deliveries) + 1 < len(queue):
                try:
                    upcoming.append(prepare(*queue[len(deliveries) + 1]))
                except BaseException as exc:  # raised once the current message is recorded
                    upcoming.append(exc)

        try:
            for item in queue:
                current = upcoming.pop() if upcoming else prepare(*item)
                if isinstance(current, BaseException):
                    raise current
                if isinstance(current, Delivery):
                    deliveries.append(current)
                    continue
                try:
                    deliveries.append(transmit(current, prepare_next))
                except SmtpUnavailable as exc:  # the server or the settings: every message would fail alike
                    finish(current.message_id, "queued", f"{current.what}: not sent: {exc}")
                    raise StopRelay(str(exc), deliveries, tried=current.message.id) from None
            return deliveries
        finally:
            if ended:  # before the relay marks the batch delivered
                commit()

    return handle, close


def rendered(
    context: Mapping[str, Any], templates: Mapping[str, str] | None = None, files: TemplateDir | None = None
) -> render.Rendered:
    """A message as its template renders it from what the store holds (no vendor call: the pay link
    is the one recorded with the message, if any)."""
    env = Extras(files=files).environment(context)
    return render.render(context["kind"], template_context(context, None), templates, env)


def _naming(context: Mapping[str, Any]) -> str:
    """A message as errors name it: its kind, customer (or partner) and invoice."""
    if context.get("partner") is not None:
        return f"{context['kind']} message {context['id']} (partner {context['partner']['partner_ref']})"
    invoice = context["invoice"]
    number = f", invoice {invoice['number']}" if invoice else ""
    return f"{context['kind']} message {context['id']} (customer {context['customer']['customer_ref']}{number})"


def vendor_message_handler(store: Store, settings: Settings, vendor: str) -> tuple[Handler, Callable[[], None]]:
    """The relay handler of ``message.<vendor>`` (the ``quickbooks`` and ``stripe`` channels): the
    vendor e-mails the invoice it holds (the registry's ``mails`` role). Unlike SMTP, the vendor can be
    asked whether it sent one (QuickBooks' EmailStatus, Stripe's invoice status and ``invoice.sent``
    events), so a message left ``sending`` by a crash is looked up there and finished, never sent
    twice and never left unconfirmed."""
    title = registry.vendor(vendor).display
    mails = registry.vendor(vendor).mails
    assert mails is not None, vendor
    connector = mails(settings, token_vault(store, settings))

    def finish(message_id: int, state: str, error: str | None = None) -> None:
        with store.write() as session:
            sql.finish(session, message_id, state, error)

    def finish_sent(context: Mapping[str, Any], result: PushResult) -> str | None:
        """Record the message sent and, when the vendor mailed only some of the billing contacts
        (Stripe mails the Stripe customer's e-mail only), make in the same transaction a copy by
        e-mail to the others (once: its event key is the message's). What it made, or None."""
        recipients = context["recipients"]
        reached = {address.lower() for address in result.sent_to}
        to = [a for a in recipients["to"] if a.lower() not in reached] if reached else []
        cc = [a for a in recipients["cc"] if a.lower() not in reached] if reached else []
        note = None
        with store.write() as session:
            if to or cc:
                copy = sql.MessageDraft(
                    f"invoice-copy:{context['id']}",
                    "invoice",
                    context["customer_id"],
                    context["as_of"],
                    invoice_id=context["invoice_id"],
                    channel="email",
                    recipients=Recipients(tuple(to or cc), tuple(cc if to else ()), context["language"]),
                )
                sql.create(session, [copy])
                note = (
                    f"{title} mailed {', '.join(result.sent_to)} (it sends to its customer's e-mail "
                    f"only); a copy goes by e-mail to {', '.join((*to, *cc))}"
                )
            sql.finish(session, context["id"], "sent", note)
        return note

    def one(message: Message) -> Delivery:
        message_id = int(message.payload["message"])
        with store.read() as session:
            context = sql.sending_context(session, message_id)
            invoice = context["invoice"] if context else None
            external = get_external_id(session, vendor, "invoice", invoice["id"]) if invoice else None
        if context is None or invoice is None:
            return Delivery(message.id, outcome="gone")
        if context["state"] not in ("queued", "sending"):
            return Delivery(message.id, outcome=f"already {context['state']}")
        what = _naming(context)
        if external is None:
            reason = f"{what}: not in {title} yet (push it first: billbridge push --target {vendor})"
            return Delivery(message.id, error=Classified(ErrorKind.RETRIABLE, reason))
        # an earlier attempt may have reached the vendor: it is asked what it sent since the message was made
        made = context["created_at"]
        made = made if made.tzinfo else made.replace(tzinfo=UTC)
        since = int(made.timestamp()) if context["attempts"] else None
        if context["state"] == "queued":
            with store.write() as session:
                sql.begin_sending(session, message_id)
        recipients = context["recipients"]
        try:
            result = connector.send_invoice(
                external, recipients["to"], recipients["cc"], f"billbridge-{context['event_key']}", since=since
            )
        except VendorError as exc:
            reason = f"{what}: {exc.classified.reason}"
            retriable = exc.classified.kind != ErrorKind.FATAL
            finish(message_id, "sending" if retriable else "failed", reason)  # sending: looked up on the retry
            return Delivery(message.id, error=Classified(exc.classified.kind, reason))
        if result.status == "created":
            finish_sent(context, result)
            return Delivery(message.id, outcome=f"invoice sent by {vendor}")
        # a vendor that says the invoice's state (Stripe) found it paid, void or uncollectible: nothing to send
        if result.vendor_status is not None and result.vendor_status != "open":
            finish(message_id, "skipped", f"{what}: not sent, the {title} invoice is {result.vendor_status}")
            return Delivery(message.id, outcome="skipped")
        finish_sent(context, result)
        return Delivery(message.id, outcome="sent before")

    def handle(messages: Sequence[Message]) -> list[Delivery]:
        return [one(message) for message in messages]

    return handle, connector.close


def send_messages(
    store: Store,
    settings: Settings,
    *,
    extras: Extras | None = None,
    limit: int | None = None,
    today: date | None = None,
) -> RelaySummary:
    """Send the queued messages (each once; failures stay visible): e-mails through SMTP, and the
    invoices QuickBooks or Stripe sends itself when it is configured. One summary for all. ``today``:
    the day they go out, as their text says it (default: the calendar's)."""
    summary = RelaySummary(sql.TOPIC)
    mailers = [v for v in registry.invoice_mailers() if getattr(settings, v, None) is not None]
    for vendor in mailers:
        try:
            handler, close = vendor_message_handler(store, settings, vendor)
        except NotConfigured:  # Stripe set up for webhooks only: its channel's messages wait, queued
            continue
        try:
            _merge(summary, relay(store, sql.VENDOR_TOPICS[vendor], handler, batch=30, limit=limit))
        finally:
            close()
    if settings.smtp is not None or not mailers:
        handler, close = email_handler(
            store, settings.vendor(SmtpSettings), extras or default_extras(settings, store=store), today=today
        )
        try:
            _merge(summary, relay(store, sql.TOPIC, handler, batch=EMAIL_BATCH, limit=limit))
        finally:
            close()
    return summary


def _merge(into: RelaySummary, part: RelaySummary) -> None:
    into.outcomes.update(part.outcomes)
    into.failures.extend(part.failures)
    into.leased = into.leased or part.leased
    into.stopped = into.stopped or part.stopped


@dataclass
class PlanSummary:
    """What a planning pass made: messages by kind and state, and the reminder steps it skipped.
    ``caught_up``: dunning notices of declines recorded before they were made with the decline."""

    created: Counter[str] = field(default_factory=Counter)
    released: int = 0  # messages that waited for a contact and now have one
    skipped: list[str] = field(default_factory=list)
    caught_up: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": dict(self.created),
            "released": self.released,
            "skipped": self.skipped,
            "caught_up": dict(self.caught_up),
        }


def plan_messages(store: Store, settings: Settings, today: date) -> PlanSummary:
    """Make the reminder steps due by ``today`` (time makes them: nothing else does), each once, and
    queue the messages that waited for a contact and now have one. Deliveries, receipts and dunning
    notices are not planned here: each is made with the event that causes it (a document issued,
    a payment applied, a charge declined), in its transaction. A sweep without a date window makes
    the dunning notice of a decline still waiting that has none (one recorded before they were
    made with the decline), counted as ``caught_up``. A stale reminder step is recorded as skipped
    (and reported), not sent."""
    summary = PlanSummary()
    with store.write() as session:
        drafts = _reminders(session, today, settings.reminder_stale_days, summary)
        summary.created = sql.create(session, drafts)
        summary.caught_up = sql.create(session, [_swept_dunning(d, today) for d in sql.declined_charges(session)])
        summary.released = sql.release_waiting(session)
    return summary


def _reminders(session: Any, today: date, stale_days: int, summary: PlanSummary) -> list[sql.MessageDraft]:
    drafts = []
    horizon = today + timedelta(days=60)  # the earliest step is at most 60 days before the due date
    for invoice in sql.open_for_reminders(session, horizon):
        steps = reminder_steps(
            invoice["due_date"], today, invoice["reminder_days"], invoice["done"], stale_days=stale_days
        )
        sent = [step for step in steps if step.action == "send"]
        for step in steps:
            details: dict[str, Any] = {"offset": step.offset, "sent_on": today.isoformat()}  # a late step says so
            state = None
            if step.action != "send":
                state = "skipped"
                details["skipped"] = step.action
                if step.action == "stale":
                    summary.skipped.append(
                        f"invoice {invoice['number']}: reminder step {step_name(step.offset)} of {step.day} is "
                        f"{(today - step.day).days} days old (reminder_stale_days {stale_days}): skipped"
                    )
                elif step.action == "superseded":
                    instead = (
                        f"step {step_name(sent[0].offset)} of {sent[0].day} goes out instead"
                        if sent
                        else f"step {step_name(max(invoice['done']))} was made before"
                    )
                    summary.skipped.append(
                        f"invoice {invoice['number']}: reminder step {step_name(step.offset)} of {step.day} "
                        f"superseded ({instead}): skipped"
                    )
            drafts.append(
                sql.MessageDraft(
                    f"reminder:{invoice['id']}:{step_name(step.offset)}",
                    "reminder",
                    invoice["customer_id"],
                    step.day,
                    invoice_id=invoice["id"],
                    details=details,
                    state=state,
                )
            )
    return drafts


def dunning_draft(
    invoice_id: int, customer_id: int, attempt: int, error: str, *, final: bool, as_of: date
) -> sql.MessageDraft:
    """The dunning notice of a declined auto-charge: once per try (``dunning:<invoice>:<try>``, the
    collect message's attempts after the try), the decline in plain words, and whether it was the
    last try (the invoice then joins the reminder schedule)."""
    code = decline_code(error)
    return sql.MessageDraft(
        f"dunning:{invoice_id}:{attempt}",
        "dunning",
        customer_id,
        as_of,
        invoice_id=invoice_id,
        details={
            "attempt": attempt,
            "final": final,
            "reason_code": code,
            "reason_text": render.decline_text(code),
        },
    )


def _swept_dunning(decline: Mapping[str, Any], today: date) -> sql.MessageDraft:
    return dunning_draft(
        decline["invoice_id"],
        decline["customer_id"],
        decline["attempts"],
        str(decline["error"]),
        final=decline["final"],
        as_of=today,
    )


@dataclass
class MessagesSent:
    """The message relay run after a flow's own work (``push_invoices``, ``reconcile_payments``):
    what it sent, or why it did not run (no channel configured) or stopped (the error). It never
    fails its flow: a message that did not go stays queued or failed, visible in ``messages list``."""

    summary: RelaySummary | None = None
    error: str | None = None
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.summary.as_dict() if self.summary else None,
            "error": self.error,
            "skipped": self.skipped,
        }

    def markdown(self) -> str:
        lines = ["", "## Customer messages", ""]
        if self.skipped:
            return "\n".join([*lines, f"Not sent: {self.skipped}."]) + "\n"
        if self.error:
            lines += [f"**Not sent:** {self.error} (they stay queued: `billbridge messages list --status queued`)", ""]
        if self.summary is not None and self.summary.stopped:
            lines += [f"**Stopped:** {self.summary.stopped} (the messages stay queued for the next run)", ""]
        if self.summary is not None:
            lines += ["| messages | count |", "|---|---:|"]
            lines += [f"| {key} | {count} |" for key, count in sorted(self.summary.outcomes.items())]
            lines += [f"- message {mid}: {error.replace('|', '/')}" for mid, error in self.summary.failures[:50]]
        return "\n".join(lines) + "\n"


def send_made(store: Store, settings: Settings) -> MessagesSent:
    """Send the queued messages after a flow that makes them (the deliveries a push made, the receipts
    of a reconciliation), through the relay ``send_messages`` uses: each once, with the others due.
    Nothing is configured to send them: they wait for the daily run. Any error is reported, not
    raised: the flow's own work is committed and stands."""
    mailers = [v for v in registry.invoice_mailers() if getattr(settings, v, None) is not None]
    if settings.smtp is None and not mailers:
        return MessagesSent(skipped="no SMTP server configured (smtp)")
    try:
        return MessagesSent(send_messages(store, settings))
    except Exception as exc:  # the push or reconciliation is done; its messages wait, queued
        return MessagesSent(error=f"{type(exc).__name__}: {exc}")


def messages_markdown(plan: PlanSummary, sent: RelaySummary | None) -> str:
    """The flow's artifact: messages made by kind and state, sent by kind, failures, skipped steps."""
    lines = ["# Customer messages", "", "| made | count |", "|---|---|"]
    lines += [f"| {key} | {count} |" for key, count in sorted(plan.created.items())]
    lines += [f"| caught up: {key} | {count} |" for key, count in sorted(plan.caught_up.items())]
    if sent is not None and sent.stopped:
        lines += ["", f"**Stopped, messages left queued for the next run:** {sent.stopped}"]
    if sent is not None:
        lines += ["", "| sent | count |", "|---|---|"]
        lines += [f"| {key} | {count} |" for key, count in sorted(sent.outcomes.items())]
        lines += [f"- message {mid}: {error}" for mid, error in sent.failures[:20]]
    if plan.skipped:
        lines += ["", f"## Reminder steps skipped ({len(plan.skipped)})", ""]
        lines += [f"- {text}" for text in plan.skipped[:50]]
        if len(plan.skipped) > 50:
            lines.append(f"- ... and {len(plan.skipped) - 50} more (the flow's result lists them all)")
    return "\n".join(lines) + "\n"


@flow(name="send_reminders")
def send_reminders(as_of: date | None = None) -> dict[str, Any]:
    """Daily: make the reminder steps that are due (the other messages are made with their events),
    then send every queued message, each once. Fails (after its artifact) when the SMTP server or its
    settings stopped the sending; the messages stay queued for the next run."""
    settings = Settings()
    template_dir(settings.message_templates_dir)  # a broken template file stops the run before anything is made
    store = open_store(settings.database)
    day = as_of or date.today()
    plan = plan_messages(store, settings, day)
    mailers = settings.quickbooks is not None or settings.stripe is not None
    sent = send_messages(store, settings, today=day) if settings.smtp is not None or mailers else None
    create_markdown_artifact(messages_markdown(plan, sent), key="send-reminders", description="Customer messages")
    if sent is not None and sent.stopped:  # the run fails visibly; its messages wait, queued, for the next one
        raise MessagesStopped(sent.stopped)
    return {"planned": plan.as_dict(), "sent": sent.as_dict() if sent else None}


class MessagesStopped(RuntimeError):
    """A run that stopped sending because the SMTP server or its settings are wrong (its text says which)."""
