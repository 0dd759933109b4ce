"""The SMTP sender's own DATA (smtplib's, with work done while the server answers): lines starting
with a dot arrive as written (dot-stuffing), the work runs once between the message and the answer,
a refused DATA is reported with the server's answer, and envelope addresses are quoted as smtplib
quotes them."""

from __future__ import annotations

import smtplib
import string
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.connectors.smtp import _PLAIN_ADDRESS, SmtpFailed, SmtpSender, quoted
from billbridge.mapping.messages import Rendered, email
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.settings import SmtpSettings


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


TEXT = "Hello,\n.a line starting with a dot\n..two dots\n.\nthe end\n"


@pytest.mark.slow  # starts an SMTP server
def test_dotted_lines_arrive_as_written_and_meanwhile_runs_before_the_answer(smtp: SmtpSandbox) -> None:
    message = email(
        Rendered("Dots", TEXT, "<p>dots</p>"),
        sender="billing@acme.example",
        sender_name="Acme",
        to=["ap@globex.example"],
        cc=[],
        message_id="<dots.1@acme.example>",
    )
    seen: list[int] = []
    with SmtpSender(SmtpSettings(**smtp.settings())) as sender:
        sent = sender.send(
            message,
            "billing@acme.example",
            ["ap@globex.example"],
            lambda: True,
            lambda: seen.append(len(smtp.mailbox.items())),
        )
    assert sent is not None and sent.answer == "2.0.0 OK queued"
    assert len(seen) == 1  # once, after the message was handed over
    [received] = smtp.mailbox.items()
    body = received.message.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == TEXT


@pytest.mark.slow
def test_a_refused_data_is_reported_with_the_answer(smtp: SmtpSandbox) -> None:
    smtp.faults.tempfail_data = 1
    message = email(
        Rendered("Later", "text\n", "<p>text</p>"),
        sender="billing@acme.example",
        sender_name="Acme",
        to=["ap@globex.example"],
        cc=[],
        message_id="<later.1@acme.example>",
    )
    with SmtpSender(SmtpSettings(**smtp.settings())) as sender, pytest.raises(SmtpFailed, match="DATA: .*451 4.3.0"):
        sender.send(message, "billing@acme.example", ["ap@globex.example"], lambda: True)
    assert smtp.mailbox.items() == []


@pytest.mark.parametrize(
    "address",
    [
        "ap@globex.example",
        "first.last+billing@sub.globex.example",
        "o'brien@x-y.example",
        "a!#$%&'*+/=?^_`{|}~-@x.example",
        "Ann <ann@x.example>",
        '"a b"@x.example',
        "a..b@x.example",
        "not an address",
        "",
        "üser@x.example",
    ],
)
def test_envelope_addresses_are_quoted_as_smtplib_quotes_them(address: str) -> None:
    assert quoted(address) == smtplib.quoteaddr(address)


_ATOM = st.text(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_LABEL = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(st.lists(_ATOM, min_size=1, max_size=3), st.lists(_LABEL, min_size=1, max_size=3))
def test_any_plain_address_is_quoted_as_smtplib_quotes_it(local: list[str], domain: list[str]) -> None:
    address = f"{'.'.join(local)}@{'.'.join(domain)}"
    assert _PLAIN_ADDRESS.fullmatch(address)
    assert quoted(address) == smtplib.quoteaddr(address)
