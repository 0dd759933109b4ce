"""billbridge: quote-to-cash integration hub (CRM -> contracts -> invoices -> ERP and payments)."""

from __future__ import annotations

__version__ = "0.1.0"
