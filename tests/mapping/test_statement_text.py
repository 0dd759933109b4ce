"""A statement of account as its built-in template writes it: a worked example in two currencies
(sections sorted), a partial payment, a credit note, German numbers and dates, and the HTML part
escaping what a customer's name may hold."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from billbridge.billing.statements import OpenItem, RecentPayment, statement
from billbridge.mapping.messages import render

D = Decimal
EXPECTED = """Hello Globex <AP>,

here is your statement of account with Acme as of 30.04.2026.

In EUR:
Open invoices:
- EU-INV-3 of 01.04.2026, due 01.05.2026: 99,90 € open

Payments received in the last 30 days:
- none

Aging (days past due):
  current  99,90 €
  1-30     0,00 €
  31-60    0,00 €
  61-90    0,00 €
  90+      0,00 €
Balance: 99,90 €

In USD:
Open invoices:
- US-INV-7 of 01.02.2026, due 03.03.2026: 700,00 $ open of 1.200,00 $ (58 days overdue)

Credits:
- credit note US-CN-2 of 02.04.2026: -150,00 $

Payments received in the last 30 days:
- 10.04.2026: 500,00 $ for US-INV-7

Aging (days past due):
  current  0,00 $
  1-30     0,00 $
  31-60    550,00 $
  61-90    0,00 $
  90+      0,00 $
Balance: 550,00 $

If anything here looks wrong, please reply to this message.

Acme
"""


def context() -> dict[str, Any]:
    # US-INV-7: 1,200.00 billed Feb 1, due Mar 3, 500.00 paid Apr 10: 700.00 open, 58 days late (31-60);
    # US-CN-2: a 150.00 credit, taken off the oldest bucket: 31-60 = 550.00 = the USD balance.
    items = [
        OpenItem("invoice", "US-INV-7", "USD", date(2026, 2, 1), date(2026, 3, 3), D("1200.00"), D("700.00")),
        OpenItem("credit_note", "US-CN-2", "USD", date(2026, 4, 2), date(2026, 4, 2), D("-150.00"), D("-150.00")),
        OpenItem("invoice", "EU-INV-3", "EUR", date(2026, 4, 1), date(2026, 5, 1), D("99.90"), D("99.90")),
    ]
    payments = [RecentPayment("qb:9", "USD", date(2026, 4, 10), D("500.00"), ("US-INV-7",))]
    made = statement(items, payments, date(2026, 4, 30), payment_days=30)
    return {
        "language": "de",
        "currency": "USD",
        "customer": {"customer_ref": "globex", "name": "Globex <AP>"},
        "entity": {"entity_ref": "us", "name": "Acme", "payment_instructions": None},
        "invoice": None,
        "details": {},
        "payment": None,
        "pay_link": None,
        "statement": made.as_details(),
    }


def test_the_statement_text_in_german() -> None:
    rendered = render("statement", context())
    assert rendered.subject == "Statement of account as of 30.04.2026 from Acme"
    assert rendered.text == EXPECTED
    assert "Hello Globex &lt;AP&gt;," in rendered.html and "<AP>" not in rendered.html
