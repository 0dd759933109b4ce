"""An invoice or credit note as a PDF (fpdf2): the entity's details, the customer, the lines with
their periods, subtotal, discounts, total, what is paid and open, the due date, how to pay and the
pay link. Money and dates are written for the reader's language and the currency's minor units.

Pure: the caller hands in the document (as the store reads it), the entity's logo as image bytes
(PNG or JPEG, drawn at the top right) and, for text outside Latin-1 (Japanese, the euro sign in core
fonts), a Unicode TrueType font file; the result is the PDF's bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from billbridge.billing.invoice_view import present
from billbridge.billing.messaging import date_text, money_text

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice",
        "credit_note": "Credit note",
        "date": "Date",
        "due": "Due date",
        "bill_to": "Bill to",
        "description": "Description",
        "period": "Period",
        "quantity": "Qty",
        "amount": "Amount",
        "subtotal": "Subtotal",
        "discount": "Discounts",
        "tax": "Tax",
        "total": "Total",
        "paid": "Paid",
        "open": "Amount due",
        "how_to_pay": "How to pay",
        "pay_online": "Pay online",
    },
    "de": {
        "invoice": "Rechnung",
        "credit_note": "Gutschrift",
        "date": "Datum",
        "due": "Fällig am",
        "bill_to": "Rechnung an",
        "description": "Beschreibung",
        "period": "Zeitraum",
        "quantity": "Menge",
        "amount": "Betrag",
        "subtotal": "Zwischensumme",
        "discount": "Rabatte",
        "tax": "Steuer",
        "total": "Gesamt",
        "paid": "Bezahlt",
        "open": "Offener Betrag",
        "how_to_pay": "Zahlung",
        "pay_online": "Online bezahlen",
    },
}


LOGO_BOX = (45.0, 20.0)  # mm: the most a logo takes, width and height


def labels(language: str) -> dict[str, str]:
    """The document's words in the reader's language (English where we have no translation)."""
    return LABELS.get(language.split("-")[0].split("_")[0].lower(), LABELS["en"])


def render_pdf(
    document: Mapping[str, Any],
    *,
    entity: Mapping[str, Any],
    customer: Mapping[str, Any],
    language: str,
    pay_link: str | None = None,
    font: Path | None = None,
    logo: bytes | None = None,
) -> bytes:
    """The PDF of one stored document (header with ``lines``, as ``store.invoices`` reads it).
    ValueError when ``logo`` is not an image fpdf2 can draw."""
    words = labels(language)
    currency = str(document["currency"])
    shown = present({k: v for k, v in document.items() if k != "lines"}, document["lines"])

    def money(value: Any) -> str:
        return money_text(Decimal(str(value)), currency, language)

    pdf = FPDF(format="A4")
    pdf.set_title(f"{words[document['doc_type']]} {document['number']}")
    pdf.set_author(str(entity["name"]))
    pdf.set_creator("billbridge")
    family = "Helvetica"
    if font is not None:
        pdf.add_font("body", "", str(font))
        family = "body"
    clean = _text if font is None else (lambda value: str(value))
    pdf.add_page()
    beside = 0.0  # the header's text keeps clear of the logo's box
    if logo is not None:
        box = LOGO_BOX
        try:  # drawn at its own proportions, centred in the box at the margins' top right corner
            pdf.image(
                io.BytesIO(logo),
                x=pdf.w - pdf.r_margin - box[0],
                y=pdf.t_margin,
                w=box[0],
                h=box[1],
                keep_aspect_ratio=True,
            )
        except Exception as exc:  # Pillow's and fpdf2's own errors for a file that is no image
            raise ValueError(f"the logo is not a PNG or JPEG image that can be drawn: {exc}") from exc
        beside = box[0] + 5
    header = pdf.w - pdf.l_margin - pdf.r_margin - beside
    pdf.set_font(family, size=16)
    pdf.cell(header, 9, _fit(pdf, clean(entity["name"]), header), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(family, size=9)
    if entity.get("address"):
        pdf.multi_cell(header, 5, clean(entity["address"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if logo is not None:
        pdf.set_y(max(pdf.get_y(), pdf.t_margin + LOGO_BOX[1]))
    pdf.ln(4)
    pdf.set_font(family, size=14)
    pdf.cell(0, 8, clean(f"{words[document['doc_type']]} {document['number']}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(family, size=10)
    pdf.cell(
        0,
        6,
        clean(f"{words['date']}: {date_text(document['billing_date'], language)}"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    if document["doc_type"] == "invoice":
        pdf.cell(
            0,
            6,
            clean(f"{words['due']}: {date_text(document['due_date'], language)}"),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    pdf.cell(0, 6, clean(f"{words['bill_to']}: {customer['name']}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    widths = (80, 50, 20, 40)
    pdf.set_font(family, size=9)
    for width, head in zip(widths, ("description", "period", "quantity", "amount"), strict=True):
        pdf.cell(width, 7, clean(words[head]), border="B", align="R" if head in ("quantity", "amount") else "L")
    pdf.ln()
    for line in shown["lines"]:
        period = f"{date_text(line['start_date'], language)} - {date_text(line['end_date'], language)}"
        cells = (line["description"], period, line["quantity"], money(line["billed_amount"]))
        for width, value, align in zip(widths, cells, ("L", "L", "R", "R"), strict=True):
            pdf.cell(width, 6, _fit(pdf, clean(value), width), align=align)
        pdf.ln()
    pdf.ln(2)
    totals = [("subtotal", shown["subtotal"])]
    if Decimal(shown["discount_total"]) != 0:
        totals.append(("discount", f"-{shown['discount_total']}"))
    for tax in document.get("taxes") or ():  # taxes, when a document carries them
        totals.append(("tax", tax["amount"]))
    totals.append(("total", shown["invoice_total"]))
    paid = Decimal(str(document.get("amount_paid") or 0))
    if document["doc_type"] == "invoice":
        if paid:
            totals.append(("paid", str(paid)))
        totals.append(("open", str(Decimal(str(document["invoice_total"])) - paid)))
    for key, value in totals:
        pdf.cell(sum(widths[:3]), 6, clean(words[key]), align="R")
        pdf.cell(widths[3], 6, clean(money(value)), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if entity.get("payment_instructions") or pay_link:
        pdf.ln(6)
        pdf.set_font(family, size=11)
        pdf.cell(0, 7, clean(words["how_to_pay"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(family, size=9)
        if entity.get("payment_instructions"):
            pdf.multi_cell(0, 5, clean(entity["payment_instructions"]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if pay_link:
            pdf.cell(
                0, 6, clean(f"{words['pay_online']}: {pay_link}"), link=pay_link, new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
    return bytes(pdf.output())


def _text(value: Any) -> str:
    """Text for the core fonts (Latin-1): the euro sign and other characters outside it spelled out."""
    text = str(value).replace("€", "EUR").replace("\u202f", " ").replace("\xa0", " ")
    return text.encode("latin-1", errors="replace").decode("latin-1")


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """Shorten a cell's text to its column (an ellipsis marks the cut)."""
    if pdf.get_string_width(text) <= width - 2:
        return text
    while text and pdf.get_string_width(text + "...") > width - 2:
        text = text[:-1]
    return text + "..."
