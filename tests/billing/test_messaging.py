"""The pure part of customer messages: recipients, the reminder schedule, formats per language."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billbridge.billing.currency import MINOR_UNITS, round_money
from billbridge.billing.messaging import date_text, locale_of, message_id, money_text, recipients, reminder_steps
from billbridge.billing.model import BillingContact

DUE = date(2026, 3, 31)
SCHEDULE = (-3, 0, 7, 14, 30)


def test_recipients_leave_out_opted_out_contacts_and_take_the_first_to_contacts_language() -> None:
    contacts = [
        BillingContact(email="ap@x.example", language="fr", opt_out=["reminder"]),
        BillingContact(email="boss@x.example", role="cc", language="de"),
    ]
    invoice = recipients(contacts, "invoice")
    assert (invoice.to, invoice.cc, invoice.language) == (("ap@x.example",), ("boss@x.example",), "fr")
    reminder = recipients(contacts, "reminder")  # the cc contact alone is promoted: a message needs a To
    assert (reminder.to, reminder.cc, reminder.opted_out) == (("boss@x.example",), (), ("ap@x.example",))
    assert recipients([], "invoice").to == ()


def test_each_step_goes_once_on_its_day() -> None:
    assert reminder_steps(DUE, DUE - timedelta(days=4), SCHEDULE, [], stale_days=5) == []
    [step] = reminder_steps(DUE, DUE - timedelta(days=3), SCHEDULE, [], stale_days=5)
    assert (step.offset, step.action) == (-3, "send")
    assert reminder_steps(DUE, DUE - timedelta(days=2), SCHEDULE, [-3], stale_days=5) == []


def test_a_step_missed_during_downtime_is_sent_late_once_and_older_ones_are_superseded_or_stale() -> None:
    # Down from the 28th to the 9th: -3 is 12 days old (stale), 0 and +7 are fresh; only +7 goes.
    today = DUE + timedelta(days=9)
    steps = {s.offset: s.action for s in reminder_steps(DUE, today, SCHEDULE, [], stale_days=10)}
    assert steps == {-3: "stale", 0: "superseded", 7: "send"}
    assert reminder_steps(DUE, today, SCHEDULE, [-3, 0, 7], stale_days=10) == []


def test_formats_follow_the_language_and_the_currency_minor_units() -> None:
    assert money_text(Decimal("1234.5"), "USD", "en") == "$1,234.50"
    assert money_text(Decimal("1234.5"), "EUR", "de") == "1.234,50 €"
    assert money_text(Decimal("1234.5"), "JPY", "en") == "¥1,235"
    assert money_text(Decimal("1.2345"), "KWD", "en") == "KWD1.235"
    assert money_text(Decimal("7"), "USD", "zz-unknown") == "$7.00"
    assert date_text(date(2026, 12, 6), "de") == "06.12.2026"
    assert date_text(date(2026, 12, 6), "en") == "Dec 6, 2026"


def test_the_message_id_is_fixed_by_the_event() -> None:
    assert message_id("reminder:1:+7", "acme.example") == message_id("reminder:1:+7", "acme.example")
    assert message_id("reminder:1:+7", "acme.example") != message_id("reminder:1:+14", "acme.example")


@given(
    st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=6, allow_nan=False),
    st.sampled_from(sorted(MINOR_UNITS)),
)
def test_money_text_shows_exactly_the_currency_minor_units(amount: Decimal, currency: str) -> None:
    text = money_text(amount, currency, "en")
    digits = MINOR_UNITS[currency]
    number = "".join(ch for ch in text if ch.isdigit() or ch == ".").strip(".")
    fraction = number.rpartition(".")[2] if "." in number else ""
    assert len(fraction) == digits


def _babel_money_text(amount: Decimal, currency: str, language: str) -> str:
    """money_text as Babel writes it with every look-up per amount (the code before the pattern was
    made once per currency and language), the oracle of the test below."""
    locale = locale_of(language)
    digits = MINOR_UNITS[currency]
    pattern = copy.copy(locale.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    text = pattern.apply(round_money(amount, currency), locale, currency=currency, currency_digits=False)
    return text.replace("\xa0", " ").replace("\u202f", " ")


LANGUAGES = ["en", "de", "fr-CH", "de-CH", "ja", "ar", "fa", "he", "hi", "nl", "pt-BR", "sv", "en-IN", "zz-unknown"]


@given(
    st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4, allow_nan=False),
    st.sampled_from(sorted(MINOR_UNITS)),
    st.sampled_from(LANGUAGES),
)
def test_money_text_is_babels_own(amount: Decimal, currency: str, language: str) -> None:
    assert money_text(amount, currency, language) == _babel_money_text(amount, currency, language)


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_amounts_in_a_receipt_are_plain_decimal_text_whatever_their_size(value: Decimal) -> None:
    """A receipt's amounts are ``format(value, "f")`` (never an exponent), however ``str`` would write them."""
    from billbridge.billing.messaging import _plain

    assert _plain(value) == format(value, "f")
    assert "E" not in _plain(value)


def test_a_receipt_says_its_amounts_plainly() -> None:
    from billbridge.billing.messaging import Applied, receipt_details

    applied = [Applied(7, "US-INV-7", Decimal("1E+7"), Decimal("0.00"))]
    details = receipt_details("stripe:ch_1", Decimal("10000000.50"), DUE, applied, Decimal("0.5E-7"))
    assert details == {
        "payment": {
            "ref": "stripe:ch_1",
            "amount": "10000000.50",
            "received_on": "2026-03-31",
            "applied": [{"number": "US-INV-7", "amount": "10000000", "open": "0.00"}],
            "unapplied": "0.00000005",
        }
    }
