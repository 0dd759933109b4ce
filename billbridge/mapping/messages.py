"""Customer messages as e-mails: Jinja2 templates (plain text and HTML) per kind, money and dates
written for the reader's language and the currency's minor units, the invoice PDF attached. A
partner's fee statement (``partner_statement``) is one of them, to the partner.

Pure: the caller hands in the message's context (plain data read from the store) and, where an
entity has its own, the template sources; the result is an ``email.message.EmailMessage``.
Templates use StrictUndefined: a template naming an unknown variable fails with its name and line
instead of sending a blank.
"""

from __future__ import annotations

import binascii
import random
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email import policy, quoprimime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    nodes,
    select_autoescape,
)

from billbridge.billing.messaging import date_text, money_text

SUBJECT, TEXT, HTML = "subject", "text", "html"

DEFAULT_TEMPLATES: dict[str, str] = {
    "invoice.subject": "{{ doc_label }} {{ invoice.number }} from {{ entity.name }}",
    "invoice.text": """Hello {{ customer.name }},

please find attached {{ doc_label|lower }} {{ invoice.number }} of {{ invoice.billing_date|day }}
for {{ invoice.total|money }}{% if invoice.doc_type == "invoice" %}, due on {{ invoice.due_date|day }}{% endif %}.
{% if pay_link %}
Pay online: {{ pay_link }}
{% endif %}{% if entity.payment_instructions %}
{{ entity.payment_instructions }}
{% endif %}
{{ entity.name }}
""",
    "reminder.subject": "{% if days_overdue < 0 %}Upcoming payment{% elif days_overdue == 0 %}Payment due today"
    "{% else %}Overdue{% endif %}: invoice {{ invoice.number }}",
    "reminder.text": """Hello {{ customer.name }},

{% if days_overdue < 0 -%}
a friendly reminder that invoice {{ invoice.number }} is due on {{ invoice.due_date|day }}.
{%- elif days_overdue == 0 -%}
invoice {{ invoice.number }} is due today, {{ invoice.due_date|day }}.
{%- else -%}
invoice {{ invoice.number }} was due on {{ invoice.due_date|day }} and is {{ days_overdue }} \
day{% if days_overdue != 1 %}s{% endif %} overdue.
{%- endif %}
Amount open: {{ invoice.open|money }} (of {{ invoice.total|money }}).
{% if pay_link %}
Pay online: {{ pay_link }}
{% endif %}{% if entity.payment_instructions %}
{{ entity.payment_instructions }}
{% endif %}
If you have paid already, thank you, and please ignore this message.

{{ entity.name }}
""",
    "receipt.subject": "Payment received, thank you ({{ payment.amount|money }})",
    "receipt.text": """Hello {{ customer.name }},

we received your payment of {{ payment.amount|money }} on {{ payment.received_on|day }}.
{% for item in payment.applied %}
- invoice {{ item.number }}: {{ item.amount|money }} applied, {{ item.open|money }} still open
{%- endfor %}
{% if payment.unapplied %}
{{ payment.unapplied|money }} is kept as a credit on your account.
{% endif %}
Thank you,
{{ entity.name }}
""",
    "dunning.subject": "{% if details.final %}Final notice{% else %}Payment failed{% endif %}: invoice {{ invoice.number }}",
    "dunning.text": """Hello {{ customer.name }},

we could not charge your card for invoice {{ invoice.number }} ({{ invoice.open|money }}): {{ details.reason_text }}.
{% if details.final -%}
We will not try again. Please pay the invoice by {{ invoice.due_date|day }} or as soon as possible.
{%- else -%}
We will try again in a few days.
{%- endif %}
{% if pay_link %}
Update your card or pay online: {{ pay_link }}
{% endif %}
{{ entity.name }}
""",
    "statement.subject": "Statement of account as of {{ statement.as_of|day }} from {{ entity.name }}",
    "statement.text": """Hello {{ customer.name }},

here is your statement of account with {{ entity.name }} as of {{ statement.as_of|day }}.
{% for section in statement.sections %}{% set cur = section.currency %}
{% if statement.sections|length > 1 %}In {{ cur }}:
{% endif %}Open invoices:
{%- for item in section.invoices %}
- {{ item.number }} of {{ item.billing_date|day }}, due {{ item.due_date|day }}: {{ item.open|money(cur) }} open
{%- if item.open != item.total %} of {{ item.total|money(cur) }}{% endif %}
{%- if item.days_overdue %} ({{ item.days_overdue }} days overdue){% endif %}
{%- else %}
- none
{%- endfor %}
{% if section.credits %}
Credits:
{%- for item in section.credits %}
- {% if item.kind == "payment" %}payment {{ item.number }} of {{ item.billing_date|day }}, not applied yet
{%- else %}credit note {{ item.number }} of {{ item.billing_date|day }}{% endif %}: {{ item.open|money(cur) }}
{%- endfor %}
{% endif %}
Payments received in the last {{ statement.payment_days }} days:
{%- for payment in section.payments %}
- {{ payment.received_on|day }}: {{ payment.amount|money(cur) }}
{%- if payment.applied_to %} for {{ payment.applied_to|join(", ") }}{% endif %}
{%- else %}
- none
{%- endfor %}

Aging (days past due):
{%- for bucket in section.aging %}
  {{ "%-8s"|format(bucket.bucket) }} {{ bucket.amount|money(cur) }}
{%- endfor %}
Balance: {{ section.balance|money(cur) }}
{% endfor %}{% if pay_link %}
Pay online: {{ pay_link }}
{% endif %}{% if entity.payment_instructions %}
{{ entity.payment_instructions }}
{% endif %}
If anything here looks wrong, please reply to this message.

{{ entity.name }}
""",
    "partner_statement.subject": "Referral fee statement {{ statement.months }} from {{ entity.name }}",
    "partner_statement.text": """Hello {{ partner.name }},

here is your referral fee statement with {{ entity.name }} for {{ statement.months }}.
{%- if statement.first_period != statement.period %}
It covers every month no earlier statement covered.{% endif %}

Fees accrued: {{ statement.fees|money }}
Reversals (refunds, credit notes): {{ statement.reversals|money }}
Total: {{ statement.total|money }}
{% if statement.total > 0 %}
We entered it as bill {{ statement.bill.number }} of {{ statement.bill.bill_date|day }}, to be paid on your
terms of {{ statement.payment_terms_days }} days, by {{ statement.bill.due_date|day }}.
{% elif statement.total < 0 %}
The reversals exceed the fees: {{ (-statement.total)|money }} is kept as a credit against your next
statements (vendor credit {{ statement.bill.number }}).
{% else %}
Nothing is owed for these months: the reversals cancel the fees.
{% endif %}
Per referred customer (fees on what they paid or were invoiced):
{%- for line in statement.lines %}
- {{ line.customer_ref }}: {{ line.fees|money }} on {{ line.base|money }}
{%- endfor %}

The attached CSV file holds these lines. If anything here looks wrong,
please reply to this message.

{{ entity.name }}
""",
}
DEFAULT_HTML = """<!doctype html>
<html lang="{{ language }}"><body style="font-family: sans-serif">
<pre style="font-family: inherit; white-space: pre-wrap">{{ text }}</pre>
{% if pay_link %}<p><a href="{{ pay_link }}">{{ pay_label }}</a></p>{% endif %}
</body></html>
"""

DECLINE_TEXT: dict[str, str] = {
    "insufficient_funds": "the card has insufficient funds",
    "expired_card": "the card has expired",
    "card_declined": "the card was declined by its bank",
    "generic_decline": "the card was declined by its bank",
    "incorrect_cvc": "the card's security code was wrong",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "do_not_honor": "the card was declined by its bank",
    "processing_error": "the card could not be processed",
}


def partner_statement_values(kept: Mapping[str, Any]) -> dict[str, Any]:
    """A partner statement as a message keeps it (money as text) with its money as Decimal, so a
    template compares it (``statement.total > 0``) and formats it (``|money``)."""
    money = ("fees", "reversals", "total")
    return {
        **kept,
        **{name: Decimal(kept[name]) for name in money},
        "lines": [{**x, "base": Decimal(x["base"]), "fees": Decimal(x["fees"])} for x in kept["lines"]],
    }


def decline_text(code: str | None) -> str:
    """A card decline in plain words (Stripe's decline codes)."""
    return DECLINE_TEXT.get(code or "", "the card was declined")


class TemplateProblem(ValueError):
    """A template that does not render: names the template, the line and what is wrong."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


KINDS: tuple[str, ...] = ("invoice", "reminder", "receipt", "dunning", "statement", "partner_statement")
VARIABLES = frozenset(
    {
        "language",
        "currency",
        "customer",
        "partner",
        "entity",
        "invoice",
        "details",
        "payment",
        "pay_link",
        "doc_label",
        "statement",
        "sent_on",
        "days_overdue",
    }
)
"""What a subject or text template may name (a value a message does not have, such as ``invoice`` of a
statement, or ``customer`` of a partner's statement, is None). ``sent_on`` is the day the message goes out (a reminder step sent late after
downtime: the day of the run, not the step's) and ``days_overdue`` is ``sent_on`` less the invoice's
due date (negative before it): the default reminders are worded from these, not from the step."""
HTML_VARIABLES = VARIABLES | {"text", "pay_label"}
_JINJA_NAMES = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "caller", "self"})


def environment(
    language: str, currency: str, templates: Mapping[str, str] | None = None, loader: BaseLoader | None = None
) -> Environment:
    """The templates of one language and currency: ``loader``'s first (an installation's template
    files), then ``templates``, then the English defaults."""
    defaults = DictLoader({**DEFAULT_TEMPLATES, "html": DEFAULT_HTML, **(templates or {})})
    env = Environment(
        loader=ChoiceLoader([loader, defaults]) if loader is not None else defaults,
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=(), default_for_string=False, default=False),
        keep_trailing_newline=True,
    )
    env.filters["money"] = lambda amount, cur=None: money_text(Decimal(str(amount)), cur or currency, language)
    env.filters["day"] = lambda day: date_text(day if isinstance(day, date) else date.fromisoformat(str(day)), language)
    return env


def check_templates(templates: Mapping[str, str]) -> None:
    """Refuse a broken template at start, naming it and its line."""
    for name, source in templates.items():
        check_source(name, source)


def check_source(name: str, source: str, filename: str | None = None) -> None:
    """Refuse a template that would fail, naming its file (or name) and line: a syntax error, an
    unknown filter, or a variable no message has (a misspelt one would fail every message)."""
    env = environment("en", "USD")
    where = filename or f"template {name}"
    try:
        tree = env.parse(source, name, filename)
        env.compile(tree, name, filename)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{where}, line {exc.lineno}: {exc.message}") from None
    known = HTML_VARIABLES if name.endswith("html") else VARIABLES
    declared = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    declared |= {m.name for m in tree.find_all(nodes.Macro)}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in known | declared | _JINJA_NAMES:
            raise TemplateProblem(
                f"{where}, line {node.lineno}: unknown variable {node.name!r} "
                f"(a message has: {', '.join(sorted(known))})"
            )


@lru_cache(maxsize=256)
def _default_environment(language: str, currency: str) -> Environment:
    """The default templates' environment per language and currency, compiled once (templates are
    compiled on first use and kept by the environment)."""
    return environment(language, currency)


def render(
    kind: str, context: Mapping[str, Any], templates: Mapping[str, str] | None = None, env: Environment | None = None
) -> Rendered:
    """The subject, text and HTML of a message of ``kind``; raises TemplateProblem naming the template
    (its file, when it is one) and line. ``env``: an environment of this language and currency with
    the installation's template files (see :func:`environment`)."""
    language, currency = str(context["language"]), str(context["currency"])
    if env is None:
        env = (
            _default_environment(language, currency)
            if templates is None
            else environment(language, currency, templates)
        )
    values = {**context, "doc_label": "Credit note" if _doc_type(context) == "credit_note" else "Invoice"}
    out = {part: _render(env, (f"{kind}.{part}",), values) for part in (SUBJECT, TEXT)}
    html = _render(
        _html_environment(env),
        (f"{kind}.html", "html"),
        {**values, "text": out[TEXT], "pay_label": "Pay online" if kind != "dunning" else "Update your card"},
    )
    return Rendered(" ".join(out[SUBJECT].split()), out[TEXT], html)


_SELECTED: WeakKeyDictionary[Environment, dict[tuple[str, ...], Template]] = WeakKeyDictionary()


def _selected(env: Environment, names: tuple[str, ...]) -> Template:
    """``env.select_template(names)``, remembered per environment: Jinja keeps the templates it
    found, but looks again, with an exception, for each name it did not (``reminder.html`` before
    the shared ``html``), once per message."""
    chosen = _SELECTED.get(env)
    if chosen is None:
        chosen = _SELECTED[env] = {}
    found = chosen.get(names)
    if found is None:
        found = chosen[names] = env.select_template(names)
    return found


def _render(env: Environment, names: tuple[str, ...], values: Mapping[str, Any]) -> str:
    template = None
    try:
        template = _selected(env, names)
        return template.render(values)
    except TemplateError as exc:
        filename = template.filename if template is not None else None
        where = filename if filename and not filename.startswith("<") else f"template {names[0]}"
        line = getattr(exc, "lineno", None) or _line_of(exc, template)
        raise TemplateProblem(f"{where}{f', line {line}' if line else ''}: {exc}") from None


def _line_of(exc: BaseException, template: Template | None) -> int | None:
    """The template line a rendering error happened on: Jinja rewrites the traceback so the template's
    frames carry its file name and line."""
    if template is None:
        return None
    filename = template.filename or "<template>"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_HTML: dict[int, Environment] = {}


def _html_environment(env: Environment) -> Environment:
    """The autoescaping twin of ``env`` (same templates and filters), made once per environment."""
    found = _HTML.get(id(env))
    if found is None or found.loader is not env.loader:
        found = _HTML[id(env)] = Environment(loader=env.loader, undefined=StrictUndefined, autoescape=True)
        found.filters.update(env.filters)
        if len(_HTML) > 512:
            _HTML.clear()
    return found


def _doc_type(context: Mapping[str, Any]) -> str | None:
    invoice = context.get("invoice")
    return invoice.get("doc_type") if isinstance(invoice, Mapping) else None


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, remembering the class it makes per header name: the stdlib makes
    a new class (``type(...)``) for every header set, a third of the cost of building a message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = super().__getitem__(name)
        return found


POLICY = policy.default.clone(header_factory=_HeaderClasses())
"""``email.policy.default`` with the header classes made once."""


def email(
    rendered: Rendered,
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    cc: Sequence[str],
    message_id: str,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """The e-mail as sent: text with an HTML alternative, attachments, the fixed Message-ID."""
    message = EmailMessage(policy=POLICY)
    message["Subject"] = rendered.subject
    message["From"] = formataddr((sender_name, sender))
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Message-ID"] = message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for item in attachments:
        message.add_attachment(item.content, maintype=item.maintype, subtype=item.subtype, filename=item.filename)
    return message


SMTP_POLICY = POLICY.clone(linesep="\r\n")
"""What goes on the wire: ``POLICY`` with CRLF line ends (as ``policy.SMTP``)."""
MAX_LINE: int = POLICY.max_line_length or 78
_PLAIN_HEADER = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # printable ASCII words, single spaces
_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def email_bytes(
    rendered: Rendered,
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    cc: Sequence[str],
    message_id: str,
    attachments: Sequence[Attachment] = (),
    boundary: str | None = None,
    when: datetime | None = None,
) -> bytes:
    """The e-mail of :func:`email` as the bytes sent (CRLF line ends, ``policy.SMTP``), made without
    ``EmailMessage``: the stdlib parses every header it is given and refolds it on the way out, most
    of the CPU of sending a message. The bytes are the ones ``email(...).as_bytes(policy=SMTP)``
    gives (``tests/mapping/test_email_bytes.py`` compares them): a header of printable ASCII that
    fits on its line is written as is, any other (non-ASCII, too long, an encoded word) is folded by
    the stdlib's own header classes; each body is 7bit or 8bit when its lines fit, else quoted-printable
    or base64 by the stdlib's rule. A message with attachments is built by :func:`email`.
    ``boundary`` and ``when`` (the Date) are for tests: by default a random boundary, as the stdlib's."""
    if attachments:
        built = email(
            rendered,
            sender=sender,
            sender_name=sender_name,
            to=to,
            cc=cc,
            message_id=message_id,
            attachments=attachments,
        )
        if boundary is not None:
            built.set_boundary(boundary)
        if when is not None:
            built.replace_header("Date", format_datetime(when))
        return built.as_bytes(policy=policy.SMTP)
    text_cte, text = _body(rendered.text)
    html_cte, html = _body(rendered.html)
    while boundary is None or boundary in text or boundary in html:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="  # the stdlib's form
    headers = [
        _header("Subject", rendered.subject),
        _header("From", formataddr((sender_name, sender))),
        _header("To", ", ".join(to)),
    ]
    if cc:
        headers.append(_header("Cc", ", ".join(cc)))
    headers.append(_header("Message-ID", message_id))
    headers.append(_header("Date", format_datetime(when or datetime.now(UTC))))
    out = "".join(headers) + (
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {text_cte}\r\n"
        "\r\n"
        f"{text}\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {html_cte}\r\n"
        "MIME-Version: 1.0\r\n"
        "\r\n"
        f"{html}\r\n"
        f"--{boundary}--\r\n"
    )
    return out.encode("utf-8")


def _header(name: str, value: str) -> str:
    """One header line (CRLF-ended) as the stdlib writes it: as is when it is plain ASCII and fits."""
    if len(name) + 2 + len(value) <= MAX_LINE and "=?" not in value and _PLAIN_HEADER.fullmatch(value):
        return f"{name}: {value}\r\n"
    return SMTP_POLICY.fold(name, SMTP_POLICY.header_factory(name, value))


def _body(content: str) -> tuple[str, str]:
    """A text part's transfer encoding and its body with CRLF line ends, chosen as the stdlib's
    ``set_content`` chooses (``email.contentmanager``): 7bit or 8bit when every line fits in
    78 bytes, else quoted-printable or base64, whichever is shorter on the first ten lines."""
    lines = content.encode("utf-8").splitlines()
    normal = b"\n".join(lines) + b"\n"
    if max((len(line) for line in lines), default=0) <= MAX_LINE:
        return ("7bit" if normal.isascii() else "8bit"), (b"\r\n".join(lines) + b"\r\n").decode("utf-8")
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)
    if len(sniff_qp) <= len(binascii.b2a_base64(sniff)):
        encoded = sniff_qp if len(lines) <= 10 else quoprimime.body_encode(normal.decode("latin-1"), MAX_LINE)
        return "quoted-printable", _crlf(encoded)
    step = MAX_LINE // 4 * 3
    encoded = "".join(binascii.b2a_base64(normal[i : i + step]).decode("ascii") for i in range(0, len(normal), step))
    return "base64", _crlf(encoded)


def _crlf(payload: str) -> str:
    """A payload's lines as the generator writes them: each line end CRLF, a last partial line as is."""
    return _LINE_ENDS.sub("\r\n", payload)
