"""The e-mail's bytes built without ``EmailMessage`` (``email_bytes``) are the bytes the stdlib writes
for the same message (``email(...).as_bytes(policy=SMTP)``, same boundary and Date), header for
header and part for part, and read back to the same text: plain ASCII, German 8bit, long lines
(quoted-printable), CJK (base64), headers that need encoded words or folding, names with specials."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billbridge.mapping.messages import Attachment, Rendered, email, email_bytes

BOUNDARY = "===============1234567890123456789=="
WHEN = datetime(2026, 1, 28, 9, 30, 5, tzinfo=UTC)
REMINDER = """Hello Customer 1,

a friendly reminder that invoice US-INV-000001 is due on Jan 31, 2026.
Amount open: $99.00 (of $99.00).

If you have paid already, thank you, and please ignore this message.

Acme Inc.
"""


def stdlib(rendered: Rendered, **parties: object) -> bytes:
    """What the stdlib writes for the message, with the test's boundary and Date."""
    message: EmailMessage = email(rendered, **parties)  # type: ignore[arg-type]
    message.set_boundary(BOUNDARY)
    message.replace_header("Date", format_datetime(WHEN))
    return message.as_bytes(policy=policy.SMTP)


def both(rendered: Rendered, **overrides: object) -> tuple[bytes, bytes]:
    parties: dict[str, object] = {
        "sender": "billing@acme.example",
        "sender_name": "Acme Inc.",
        "to": ["ap@c1.example"],
        "cc": [],
        "message_id": "<reminder.42.-3@acme.example>",
        **overrides,
    }
    ours = email_bytes(rendered, boundary=BOUNDARY, when=WHEN, **parties)  # type: ignore[arg-type]
    return ours, stdlib(rendered, **parties)


CASES: dict[str, tuple[Rendered, dict[str, Any]]] = {
    "ascii reminder": (Rendered("Upcoming payment: invoice US-INV-000001", REMINDER, f"<pre>{REMINDER}</pre>\n"), {}),
    "cc": (Rendered("Overdue: invoice 7", "Hi\n", "<p>Hi</p>\n"), {"cc": ["cfo@c1.example", "ar@c1.example"]}),
    "german 8bit": (
        Rendered("Zahlungserinnerung: Rechnung DE-1", "Grüße, offen: 1.234,50 €\n", "<p>Grüße</p>\n"),
        {"sender_name": "Acme GmbH"},
    ),
    "long ascii lines: quoted-printable": (Rendered("Long", "word " * 40 + "\n" + "x" * 200 + "\n", "<p>ok</p>\n"), {}),
    "over ten long lines": (Rendered("Many", ("a" * 90 + "\n") * 14, ("é" * 50 + "\n") * 12), {}),
    "cjk: base64": (Rendered("請求書のお知らせ", "請求書 " * 30 + "\n", "<p>" + "請求書" * 40 + "</p>\n"), {}),
    "non-ascii subject and name": (
        Rendered("Rappel : facture échue", "x\n", "<p>x</p>\n"),
        {"sender_name": "Zoë SàRL"},
    ),
    "long subject folded": (Rendered("Overdue: " + "very " * 30 + "late", "x\n", "x\n"), {}),
    "specials in the name": (Rendered("S", "x\n", "x\n"), {"sender_name": 'Acme, "Best" (Inc.)'}),
    "apostrophe and ampersand": (Rendered("S", "x\n", "x\n"), {"sender_name": "O'Brien & Co"}),
    "many recipients": (Rendered("S", "x\n", "x\n"), {"to": [f"ap{i}@customer{i}.example" for i in range(8)]}),
    "empty text": (Rendered("S", "", ""), {}),
    "no last line end, CR and CRLF": (Rendered("S", "a\r\nb\rc", "<p>\r\n</p>"), {}),
    "dots and From": (Rendered("S", ".one\n..two\nFrom here\n.\n", "x\n"), {}),
    "encoded-word look-alike": (Rendered("=?utf-8?q?not_one?=", "x\n", "x\n"), {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_bytes_are_the_stdlibs(name: str) -> None:
    rendered, overrides = CASES[name]
    ours, theirs = both(rendered, **overrides)
    assert ours == theirs


def test_a_plain_reminder_is_written_as_expected() -> None:
    ours, _ = both(Rendered("Payment due today: invoice 7", "Hello,\n", "<p>Hello,</p>\n"))
    assert ours == (
        b"Subject: Payment due today: invoice 7\r\n"
        b'From: "Acme Inc." <billing@acme.example>\r\n'
        b"To: ap@c1.example\r\n"
        b"Message-ID: <reminder.42.-3@acme.example>\r\n"
        b"Date: Wed, 28 Jan 2026 09:30:05 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative;\r\n boundary="===============1234567890123456789=="\r\n'
        b"\r\n"
        b"--===============1234567890123456789==\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"\r\n"
        b"Hello,\r\n"
        b"\r\n"
        b"--===============1234567890123456789==\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"MIME-Version: 1.0\r\n"
        b"\r\n"
        b"<p>Hello,</p>\r\n"
        b"\r\n"
        b"--===============1234567890123456789==--\r\n"
    )


def test_a_boundary_found_in_a_body_is_replaced_and_the_message_reads_back() -> None:
    text = f"quoting --{BOUNDARY}\n"
    ours = email_bytes(
        Rendered("S", text, "<p>x</p>\n"),
        sender="billing@acme.example",
        sender_name="Acme",
        to=["ap@c1.example"],
        cc=[],
        message_id="<m.1@acme.example>",
        boundary=BOUNDARY,
    )
    parsed = message_from_bytes(ours, policy=policy.default)
    assert parsed.get_boundary() != BOUNDARY
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == text


def test_attachments_go_the_stdlibs_way() -> None:
    rendered = Rendered("Invoice 7", "attached\n", "<p>attached</p>\n")
    pdf = Attachment("7.pdf", b"%PDF-1.4 not really")
    ours, theirs = both(rendered, attachments=[pdf])  # the inner boundary is random on both sides
    parsed = message_from_bytes(ours, policy=policy.default)
    expected = message_from_bytes(theirs, policy=policy.default)
    assert [p.get_content_type() for p in parsed.walk()] == [p.get_content_type() for p in expected.walk()]
    assert parsed["Message-ID"] == "<reminder.42.-3@acme.example>"
    [attached] = list(parsed.iter_attachments())
    assert attached.get_filename() == "7.pdf" and attached.get_content() == pdf.content


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=120),
    text=st.lists(st.sampled_from(["a", " ", "é", "€", "請", "\n", "\r", ".", "=", "-", "x" * 30]), max_size=80).map(
        "".join
    ),
    name=st.text(st.sampled_from(["A", " ", ".", ",", '"', "ö", "(", "'"]), max_size=12),
)
def test_any_text_subject_and_name_give_the_stdlibs_bytes(subject: str, text: str, name: str) -> None:
    ours, theirs = both(Rendered(" ".join(subject.split()), text, f"<pre>{text}</pre>\n"), sender_name=name)
    assert ours == theirs
