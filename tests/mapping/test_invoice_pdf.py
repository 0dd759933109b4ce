"""The invoice PDF, read back: what a customer sees is there, written for their language and the
currency's minor units."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdfium2
import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader

from billbridge.mapping.invoice_pdf import render_pdf
from billbridge.mapping.messages import Attachment, TemplateProblem, check_templates, email, render

SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "out" / "screenshots"

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
ENTITY = {
    "name": "Acme GmbH",
    "address": "Hauptstr. 1, 10115 Berlin; USt-IdNr. DE123456789",
    "payment_instructions": "IBAN DE00 1234 5678 9012, Verwendungszweck: Rechnungsnummer",
}


def document(currency: str = "EUR", paid: str = "0") -> dict[str, Any]:
    return {
        "number": "DE-INV-7",
        "doc_type": "invoice",
        "billing_date": date(2026, 3, 1),
        "due_date": date(2026, 3, 31),
        "currency": currency,
        "invoice_total": Decimal("1234.50"),
        "amount_paid": Decimal(paid),
        "lines": [
            {
                "line_ref": "platform",
                "kind": "recurring",
                "product_ref": "platform",
                "description": "Platform subscription",
                "start_date": date(2026, 3, 1),
                "end_date": date(2026, 3, 31),
                "billed_days": 31,
                "period_days": 31,
                "quantity": Decimal("1"),
                "amount": Decimal("1234.50"),
                "discount_amount": Decimal("0"),
                "billed_amount": Decimal("1234.50"),
                "sign": 1,
            }
        ],
    }


def logo(kind: str = "PNG", size: tuple[int, int] = (400, 160)) -> bytes:
    """A made-up logo: a pure blue box with a white mark, as PNG or JPEG bytes."""
    image = Image.new("RGB", size, (0, 0, 255))
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 3, size[0] // 2, 2 * size[1] // 3), fill="white")
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def blue_box(pdf: bytes) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """Where the page, drawn by PDFium, is the logo's blue; and the page's size in pixels."""
    page = pypdfium2.PdfDocument(pdf)[0].render(scale=2).to_pil().convert("RGB")
    red, green, blue = page.split()
    only_blue = Image.eval(blue, lambda v: 255 if v > 200 else 0)
    no_red = Image.eval(red, lambda v: 255 if v < 60 else 0)
    no_green = Image.eval(green, lambda v: 255 if v < 60 else 0)
    mask = Image.composite(
        only_blue, Image.new("L", page.size), Image.composite(no_red, Image.new("L", page.size), no_green)
    )
    return mask.getbbox(), page.size


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.skipif(not DEJAVU.exists(), reason="needs DejaVu Sans (fonts-dejavu-core) for the euro sign")
def test_a_german_invoice_reads_back_with_its_details_in_german_formats(tmp_path: Path) -> None:
    pdf = render_pdf(
        document(paid="234.50"),
        entity=ENTITY,
        customer={"name": "Globex AG"},
        language="de",
        pay_link="https://invoice.stripe.sandbox/i/in_1",
        font=DEJAVU,
        logo=logo(),
    )
    text = text_of(pdf)
    for expected in (
        "Acme GmbH",
        "USt-IdNr. DE123456789",
        "Rechnung DE-INV-7",
        "Fällig am: 31.03.2026",
        "Rechnung an: Globex AG",
        "Platform subscription",
        "1.234,50 €",
        "Bezahlt",
        "234,50 €",
        "Offener Betrag",
        "1.000,00 €",
        "IBAN DE00 1234 5678 9012",
        "https://invoice.stripe.sandbox/i/in_1",
    ):
        assert expected in text, expected
    (tmp_path / "invoice.pdf").write_bytes(pdf)  # a person may look at it: pytest keeps tmp_path
    # and its first page as an image, drawn by PDFium (Chrome's PDF engine), where the dashboard's
    # screenshots go: the page is drawn (ink on it) and the text sits inside the page, not off its edge
    drawn = pypdfium2.PdfDocument(pdf)[0].render(scale=2).to_pil()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    drawn.save(SCREENSHOTS / "invoice-pdf-de-page-1.png")
    page = drawn.convert("L")
    width, height = page.size
    assert width > 1000 and height > 1000
    ink = page.point(lambda v: 255 if v < 128 else 0)
    assert 0.002 < sum(ink.histogram()[255:]) / (width * height) < 0.2  # text, not a blank or black page
    left, top, right, bottom = ink.getbbox() or (0, 0, 0, 0)
    assert left > 0 and top > 0 and right < width and bottom < height  # inside the margins


@pytest.mark.skipif(not DEJAVU.exists(), reason="needs DejaVu Sans (fonts-dejavu-core)")
def test_documents_made_one_after_another_each_carry_their_own_characters() -> None:
    """Each document embeds the glyphs it uses, whatever the documents before it used."""
    names = ["Ωμέγα Α.Ε.", "Globex AG", "Łódź Sp. z o.o.", "Ωμέγα Α.Ε."]
    made = [
        render_pdf(document(), entity=ENTITY, customer={"name": name}, language="de", font=DEJAVU) for name in names
    ]
    for name, pdf in zip(names, made, strict=True):
        text = text_of(pdf)
        assert f"Rechnung an: {name}" in text and "1.234,50 €" in text
        assert not any(other in text for other in set(names) - {name})
    assert len(made[0]) == len(made[3])  # the same document twice (but its time of making): nothing of the others
    assert len(made[1]) < len(made[0])  # Greek glyphs embedded where used, not in the Latin one


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_the_entity_logo_is_drawn_at_the_top_right_at_its_own_proportions(kind: str) -> None:
    pdf = render_pdf(document(), entity=ENTITY, customer={"name": "Globex"}, language="en", logo=logo(kind))
    box, (width, height) = blue_box(pdf)
    assert box is not None, "no logo on the page"
    left, top, right, bottom = box
    mm = 2 * 72 / 25.4  # pixels a millimetre: PDFium at scale 2 draws a point as 2 pixels
    assert (width, height) == (round(210 * mm), round(297 * mm))  # A4
    # fpdf2's default margins are 1 cm; the 45 x 20 mm box in the margins' top right corner holds a
    # 5:2 logo as 45 x 18 mm, centred in it (1 mm above and below)
    assert abs(right - (width - 10 * mm)) <= 3 and abs(top - 11 * mm) <= 3
    assert abs((right - left) - 45 * mm) <= 4 and abs((bottom - top) - 18 * mm) <= 4
    assert "Acme GmbH" in text_of(pdf)  # the name is still written, left of the logo
    without = render_pdf(document(), entity=ENTITY, customer={"name": "Globex"}, language="en")
    assert blue_box(without)[0] is None


def test_a_tall_logo_keeps_its_proportions_inside_the_box() -> None:
    pdf = render_pdf(document(), entity=ENTITY, customer={"name": "Globex"}, language="en", logo=logo(size=(100, 200)))
    left, top, right, bottom = blue_box(pdf)[0] or (0, 0, 0, 0)
    mm = 2 * 72 / 25.4
    assert abs((bottom - top) - 20 * mm) <= 4 and abs((right - left) - 10 * mm) <= 4  # as tall as the box


def test_bytes_that_are_no_image_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="the logo is not a PNG or JPEG image"):
        render_pdf(document(), entity=ENTITY, customer={"name": "Globex"}, language="en", logo=b"GIF89a not ours")


def test_core_fonts_spell_out_what_latin1_lacks_and_minor_units_follow_the_currency() -> None:
    text = text_of(render_pdf(document("JPY"), entity=ENTITY, customer={"name": "Globex"}, language="en"))
    assert "Invoice DE-INV-7" in text and "Due date: Mar 31, 2026" in text
    assert "¥1,235" in text  # 1234.50 in yen: no minor unit
    kwd = text_of(render_pdf(document("KWD"), entity=ENTITY, customer={"name": "Globex"}, language="en"))
    assert "KWD1,234.500" in kwd
    eur = text_of(render_pdf(document("EUR"), entity=ENTITY, customer={"name": "Globex"}, language="fr"))
    assert "1 234,50 EUR" in eur  # no euro sign in Latin-1: spelled out


CONTEXT = {
    "language": "en",
    "currency": "USD",
    "customer": {"name": "Globex", "customer_ref": "globex"},
    "entity": {"name": "Acme Inc.", "payment_instructions": None},
    "invoice": {
        "number": "US-INV-3",
        "doc_type": "invoice",
        "billing_date": date(2026, 3, 1),
        "due_date": date(2026, 3, 31),
        "total": Decimal("100"),
        "paid": Decimal("40"),
        "open": Decimal("60"),
        "currency": "USD",
    },
    "details": {"offset": 7},
    "payment": None,
    "pay_link": "https://pay.example/x",
    "sent_on": date(2026, 4, 7),
    "days_overdue": 7,
}


def test_a_reminder_shows_what_is_still_open_and_the_pay_link() -> None:
    rendered = render("reminder", CONTEXT)
    assert rendered.subject == "Overdue: invoice US-INV-3"
    assert "7 days overdue" in rendered.text and "Amount open: $60.00 (of $100.00)" in rendered.text
    assert '<a href="https://pay.example/x">Pay online</a>' in rendered.html
    message = email(
        rendered,
        sender="billing@acme.example",
        sender_name="Acme Inc.",
        to=["ap@globex.example"],
        cc=["cfo@globex.example"],
        message_id="<billbridge.1@acme.example>",
        attachments=[Attachment("US-INV-3.pdf", b"%PDF-1.4")],
    )
    assert message["Message-ID"] == "<billbridge.1@acme.example>" and message["Cc"] == "cfo@globex.example"
    assert [p.get_filename() for p in message.iter_attachments()] == ["US-INV-3.pdf"]


def test_a_template_with_an_unknown_variable_is_refused_naming_it_and_its_line() -> None:
    broken = {"reminder.text": "Hello {{ customer.name }},\n{{ invoice.balance_due|money }}\n"}
    with pytest.raises(TemplateProblem, match=r"template reminder.text.*balance_due"):
        render("reminder", CONTEXT, broken)
    with pytest.raises(TemplateProblem, match=r"template reminder.text, line 2"):
        check_templates({"reminder.text": "ok\n{% if %}\n"})
