"""The ledger role (issue 20): which vendor keeps the books (revenue journal entries, partner fee
Bills, mirrored payments) is the ``ledger`` setting, checked against the registry, not a name in the
flows. A second ledger is a registry entry plus the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from billbridge.flows.partner_fees import bills_ledger
from billbridge.flows.revenue import ledger_of
from billbridge.settings import RevenueAccountsSettings, Settings
from billbridge.vendors import registry
from billbridge.vendors.registry import VENDORS, JournalTarget, TokenVault, Vendor


def _never_built(_settings: Settings, _tokens: TokenVault) -> JournalTarget:
    raise AssertionError("choosing the ledger builds no connector")


XERO = Vendor("xero", journals=_never_built, bills=True, title="Xero")
ACCOUNTS = RevenueAccountsSettings(deferred_revenue="20", contract_asset="21", revenue="1")


@pytest.fixture(autouse=True)
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("BILLBRIDGE_LEDGER", raising=False)


def test_the_ledger_is_quickbooks_unless_set() -> None:
    settings = Settings(revenue_accounts=ACCOUNTS)
    assert settings.ledger == "quickbooks"
    assert registry.ledger(settings) == "quickbooks"
    assert ledger_of(settings) == "quickbooks"
    assert ledger_of(Settings()) is None  # no revenue_accounts: no journal entries
    assert bills_ledger(settings) == "quickbooks"


def test_a_second_ledger_is_a_registry_entry_plus_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(VENDORS, "xero", XERO)
    settings = Settings(revenue_accounts=ACCOUNTS, ledger="xero")
    assert registry.ledger(settings) == "xero"
    assert ledger_of(settings) == "xero"  # closes queue journal entries for Xero, posting builds Xero's


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(VENDORS, "xero", XERO)
    monkeypatch.setenv("BILLBRIDGE_LEDGER", "xero")
    assert ledger_of(Settings(revenue_accounts=ACCOUNTS)) == "xero"


def test_a_vendor_that_keeps_no_books_is_refused_naming_the_setting() -> None:
    settings = Settings(revenue_accounts=ACCOUNTS, ledger="stripe")
    with pytest.raises(ValueError, match=r"ledger: 'stripe' is not a ledger \(expected quickbooks\)"):
        registry.ledger(settings)
    with pytest.raises(ValueError, match="ledger: 'stripe' is not a ledger"):
        ledger_of(settings)
    with pytest.raises(ValueError, match="ledger: 'nowhere' is not a ledger"):
        registry.ledger(Settings(ledger="nowhere"))


def test_a_ledger_without_journals_is_refused_when_revenue_posts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(VENDORS, "payables", Vendor("payables", bills=True))
    settings = Settings(revenue_accounts=ACCOUNTS, ledger="payables")
    with pytest.raises(ValueError, match="ledger: 'payables' takes no journal entries"):
        ledger_of(settings)
    assert ledger_of(Settings(ledger="payables")) is None  # nothing to post


def test_bills_go_to_quickbooks_only_so_far_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partner fee Bills are written by QuickBooks' code path alone: another ledger is refused before
    any Bill is claimed, never sent to QuickBooks behind the setting's back."""
    monkeypatch.setitem(VENDORS, "xero", XERO)
    with pytest.raises(ValueError, match="ledger: partner fee bills are written to quickbooks only so far, not 'xero'"):
        bills_ledger(Settings(ledger="xero"))
    monkeypatch.setitem(VENDORS, "journals_only", Vendor("journals_only", journals=_never_built))
    with pytest.raises(ValueError, match="ledger: 'journals_only' takes no partner fee bills"):
        bills_ledger(Settings(ledger="journals_only"))
