"""Customer messages, the pure part: who receives a message, which reminder steps are due, the
deterministic Message-ID, and money and dates written for the reader's language.

A message is made once per triggering event, named by its ``event_key`` (``invoice:42``,
``reminder:42:+7``, ``receipt:17``, ``dunning:42:2``); the store keeps that key unique.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import NumberPattern, get_currency_symbol

from billbridge.billing.currency import minor_unit, round_money
from billbridge.billing.model import LANGUAGE_PATTERN, BillingContact, MessageKind

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Recipients:
    """The addresses of one message, and the language it is written in (its first ``to`` contact's)."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    language: str
    opted_out: tuple[str, ...] = ()  # contacts left out because they do not want this kind

    def as_dict(self) -> dict[str, list[str]]:
        return {"to": list(self.to), "cc": list(self.cc)}


def recipients(contacts: Sequence[BillingContact], kind: MessageKind) -> Recipients:
    """Who gets a message of ``kind``. A cc contact alone is promoted to ``to`` (a message needs one);
    no contacts at all (or all opted out): no ``to``, and the caller keeps the message waiting."""
    wanted = [c for c in contacts if kind not in c.opt_out]
    opted = tuple(c.email for c in contacts if kind in c.opt_out)
    to = [c for c in wanted if c.role == "to"] or wanted[:1]
    cc = [c for c in wanted if c not in to]
    language = to[0].language if to else (contacts[0].language if contacts else DEFAULT_LANGUAGE)
    return Recipients(_unique(c.email for c in to), _unique(c.email for c in cc), language, opted)


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.lower(), address)
    return tuple(seen.values())


def message_id(event_key: str, domain: str) -> str:
    """The RFC 5322 Message-ID of a message: fixed by its event, so every attempt carries the same one
    and a mailbox (or a person checking one) can tell a repeat."""
    digest = hashlib.sha256(event_key.encode()).hexdigest()[:24]
    return f"<billbridge.{digest}@{domain}>"


class Applied(NamedTuple):
    """What a payment applied to one invoice, and what is open on it after that."""

    invoice_id: int
    number: str
    amount: Decimal
    open: Decimal


def receipt_details(
    payment_ref: str, amount: Decimal, received_on: date, applied: Sequence[Applied], unapplied: Decimal
) -> dict[str, object]:
    """What a receipt says, as the message keeps it (money as plain decimal text, JSON-safe): the
    payment, the invoices it paid with the amount applied to each and what each still has open,
    and what is left unapplied (None when nothing is)."""
    return {
        "payment": {
            "ref": payment_ref,
            "amount": _plain(amount),
            "received_on": received_on.isoformat(),
            "applied": [{"number": a.number, "amount": _plain(a.amount), "open": _plain(a.open)} for a in applied],
            "unapplied": _plain(unapplied) if unapplied > 0 else None,
        }
    }


def decline_code(error: str) -> str | None:
    """Stripe's decline code in a declined charge's recorded error (``declined (expired_card): ...``)."""
    if error.startswith("declined (") and ")" in error:
        return error[len("declined (") : error.index(")")]
    return None


def _plain(value: Decimal) -> str:
    """The amount as plain decimal text (never an exponent): ``format(value, "f")``, which ``str``
    gives too, faster, unless it would use an exponent (beyond a million or below a millionth)."""
    text = str(value)
    return text if "E" not in text else format(value, "f")


@dataclass(frozen=True)
class ReminderStep:
    offset: int  # days relative to the due date
    day: date  # the day it falls due
    action: str  # "send", or why not: "stale", "superseded"


def reminder_steps(
    due: date, today: date, offsets: Sequence[int], done: Iterable[int], *, stale_days: int
) -> list[ReminderStep]:
    """The reminder steps of one open invoice that are due by ``today`` and were not handled yet
    (``done``: the offsets that already have a message). A step missed while billbridge was down
    is sent late, once; of several missed steps only the newest is sent and the older ones are
    recorded as superseded (one reminder, not a burst); a step more than ``stale_days`` old is
    recorded as stale and not sent."""
    handled = set(done)
    due_now = [o for o in sorted(set(offsets)) if o not in handled and due + timedelta(days=o) <= today]
    fresh = [o for o in due_now if (today - (due + timedelta(days=o))).days <= stale_days]
    newest = max(fresh) if fresh else None
    newer_done = max(handled) if handled else None
    steps = []
    for offset in due_now:
        day = due + timedelta(days=offset)
        if offset not in fresh:
            action = "stale"
        elif offset != newest or (newer_done is not None and newer_done > offset):
            action = "superseded"
        else:
            action = "send"
        steps.append(ReminderStep(offset, day, action))
    return steps


def step_name(offset: int) -> str:
    """A reminder step as its event key and the CLI write it: -3, +0, +7."""
    return f"{offset:+d}"


@lru_cache(maxsize=512)
def known_language(language: str) -> bool:
    """Whether ``language`` is a language tag (``de``, ``fr-CH``) that Babel knows, so messages can be
    written and formatted in it; a CRM's free text (``Deutsch!``, ``xx``) is not."""
    if not re.match(LANGUAGE_PATTERN, language):
        return False
    try:
        Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return False
    return True


@lru_cache(maxsize=512)
def locale_of(language: str) -> Locale:
    """The Babel locale of a contact's language (``fr-CH``, ``de``); English when Babel does not know it."""
    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LANGUAGE)


@lru_cache(maxsize=512)
def _money_pattern(currency: str, language: str) -> tuple[NumberPattern, str | None]:
    """The language's currency pattern with the currency's ISO 4217 minor unit (not CLDR's idea of
    the currency), made once per currency and language (a message formats a few amounts): its
    symbol (``¤``) and code (``¤¤``) are written into it here, as Babel would write them into each
    amount after looking them up again; then the currency for ``apply`` is None. A pattern naming the
    currency (``¤¤¤``, whose name depends on the amount) keeps Babel's way and its currency."""
    locale = locale_of(language)
    digits = minor_unit(currency)
    pattern = copy.copy(locale.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    if any("¤¤¤" in affix for affix in (*pattern.prefix, *pattern.suffix)):
        return pattern, currency
    symbol, code = get_currency_symbol(currency, locale), currency.upper()
    pattern.prefix = tuple(affix.replace("¤¤", code).replace("¤", symbol) for affix in pattern.prefix)
    pattern.suffix = tuple(affix.replace("¤¤", code).replace("¤", symbol) for affix in pattern.suffix)
    return pattern, None


def money_text(amount: Decimal, currency: str, language: str) -> str:
    """An amount as the reader writes it, in the currency's minor units: 1.234,50 € / ¥1,235 / 1,234.500 KWD."""
    pattern, named = _money_pattern(currency, language)
    text = pattern.apply(round_money(amount, currency), locale_of(language), currency=named, currency_digits=False)
    return text.replace("\xa0", " ").replace("\u202f", " ")


def date_text(day: date, language: str) -> str:
    """A date as the reader writes it (medium form): Dec 6, 2026 / 06.12.2026 / 2026/12/06."""
    return format_date(day, format="medium", locale=locale_of(language))
