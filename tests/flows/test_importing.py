"""Importing contract files: errors name record and field, bad records never stop or half-write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billbridge.flows.importing import SECTIONS, ContractFileError, import_document, import_file
from billbridge.store import quarantine
from billbridge.store.contracts import contract_ids, load_timelines
from billbridge.store.db import Store
from billbridge.store.models import Contract, ContractLine, ContractVersion, LegalEntity
from tests.docs import contract, document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "contracts"


def count(store: Store, model: type) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_example_files_import_cleanly_and_a_second_import_changes_nothing(store: Store) -> None:
    first = [import_file(store, path) for path in sorted(EXAMPLES.glob("*.yaml"))]
    assert all(not s.errors for s in first)
    assert sum(s.counts["contracts.created"] for s in first) == 6
    assert sum(s.counts["contracts.updated"] for s in first) == 1  # 03-amendments.yaml
    again = [import_file(store, path) for path in sorted(EXAMPLES.glob("*.yaml"))]
    assert all(set(s.counts) <= {f"{k}.unchanged" for k in SECTIONS} for s in again)
    assert count(store, ContractVersion) == 7


def test_bad_records_are_quarantined_with_record_and_field_and_the_rest_go_on(store: Store) -> None:
    doc = document(
        contract("C-ok"),
        contract("C-no-start", contract_start_date=None),
        contract("C-bad-currency", currency="XYZ"),
        contract("C-negative", lines=[{"line_ref": "s", "product_ref": "seats", "quantity": "-3"}]),
        contract("C-unknown-product", lines=[{"line_ref": "x", "product_ref": "nope"}]),
        contract("C-unknown-customer", customer="nobody"),
        contract(
            "C-float",
            lines=[{"line_ref": "s", "product_ref": "seats", "pricing": {"model": "per_unit", "unit_price": 0.1}}],
        ),
    )
    summary = import_document(store, doc)
    assert summary.counts["contracts.created"] == 1
    assert summary.counts["contracts.quarantined"] == 6
    found = {(e.key, e.field) for e in summary.errors}
    assert ("C-no-start", "contract_start_date") in found
    assert ("C-bad-currency", "currency") in found
    assert ("C-negative", "lines[0].quantity") in found
    assert ("C-unknown-product", "lines[0].product_ref") in found
    assert ("C-unknown-customer", "customer_ref") in found
    assert ("C-float", "lines[0].pricing.per_unit.unit_price") in found
    messages = {e.key: e.message for e in summary.errors}
    assert "XYZ" in messages["C-bad-currency"] and "nope" in messages["C-unknown-product"]
    assert "not a float" in messages["C-float"]

    with store.read() as session:
        kept = {r["record_key"]: r for r in quarantine.list_open(session)}
    assert set(kept) == {
        "C-no-start",
        "C-bad-currency",
        "C-negative",
        "C-unknown-product",
        "C-unknown-customer",
        "C-float",
    }
    assert kept["C-unknown-product"]["payload"]["lines"] == [
        {"line_ref": "x", "product_ref": "nope"}
    ]  # raw payload kept
    assert count(store, Contract) == 1


def test_a_fixed_record_clears_its_quarantine_entry(store: Store) -> None:
    import_document(store, document(contract("C-1", lines=[{"line_ref": "x", "product_ref": "nope"}])))
    import_document(store, document(contract("C-1", lines=[{"line_ref": "x", "product_ref": "nope"}])))
    with store.read() as session:
        [entry] = quarantine.list_open(session)
    assert entry["seen_count"] == 2
    summary = import_document(store, document(contract("C-1")))
    assert summary.counts["contracts.created"] == 1
    with store.read() as session:
        assert quarantine.list_open(session) == []


def test_a_contract_failing_on_its_second_line_is_not_half_written(store: Store) -> None:
    lines = [
        {"line_ref": "a", "product_ref": "platform"},
        {"line_ref": "b", "product_ref": "seats", "price_ref": "missing"},
    ]
    summary = import_document(store, document(contract("C-half", lines=lines), contract("C-fine")))
    assert [(e.key, e.field) for e in summary.errors] == [("C-half", "lines[1].price_ref")]
    with store.read() as session:
        assert contract_ids(session, refs=["C-half"]) == []
    assert count(store, ContractVersion) == 1 and count(store, ContractLine) == 1


def test_amendment_needs_an_effective_date_and_keeps_history(store: Store) -> None:
    import_document(store, document(contract("C-1")))
    changed = contract("C-1", lines=[{"line_ref": "platform", "product_ref": "platform", "quantity": "2"}])
    refused = import_document(store, document(changed))
    assert [(e.key, e.field) for e in refused.errors] == [("C-1", "effective_date")]
    accepted = import_document(store, document({**changed, "effective_date": "2026-03-01"}))
    assert accepted.counts["contracts.updated"] == 1
    with store.read() as session:
        [timeline] = load_timelines(session, contract_ids(session)).values()
    assert [(v.version_no, str(v.effective_date)) for v in timeline.versions] == [(1, "2026-01-01"), (2, "2026-03-01")]
    # The price book was resolved into the stored version: later price changes do not reprice it.
    assert str(timeline.versions[1].contract.lines[0].pricing.amount) == "1200.00"
    # Re-importing the original file is recognised as the known first version, not a revert.
    assert import_document(store, document(contract("C-1"))).counts["contracts.unchanged"] == 1


def test_price_book_lookup_uses_the_contract_currency(store: Store) -> None:
    import_document(store, document(contract("C-kw", customer="gulf", entity="kw", currency="KWD")))
    with store.read() as session:
        [timeline] = load_timelines(session, contract_ids(session)).values()
    assert str(timeline.versions[0].contract.lines[0].pricing.amount) == "365.125"
    summary = import_document(store, document(contract("C-eur", currency="EUR")))
    assert [(e.key, e.field) for e in summary.errors] == [("C-eur", "lines[0].pricing")]


def test_whole_file_errors_are_clear(tmp_path: Path, store: Store) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"contracts": [')
    with pytest.raises(ContractFileError, match=r"broken.json: not valid JSON \(line 1"):
        import_file(store, broken)
    with pytest.raises(ContractFileError, match="cannot read"):
        import_file(store, tmp_path / "missing.yaml")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"contracts": [], "invoices": []}))
    assert [(e.field, e.message.split(" (")[0]) for e in import_file(store, odd).errors] == [
        ("invoices", "unknown section")
    ]


def test_one_batch_mixing_new_amended_unchanged_and_refused_contracts(store: Store) -> None:
    """The batch save writes new contracts and amendments together and refuses others one by one."""
    import_document(store, document(contract("C-known"), contract("C-same"), contract("C-drift")))
    amended = {
        **contract("C-known", lines=[{"line_ref": "platform", "product_ref": "platform", "quantity": "3"}]),
        "effective_date": "2026-04-01",
    }
    summary = import_document(
        store,
        document(
            contract("C-new-1"),
            amended,
            contract("C-same"),
            contract("C-stranger", customer="nobody"),
            contract("C-new-2"),
            contract("C-drift", lines=[{"line_ref": "x", "product_ref": "seats"}]),  # changed, no effective_date
        ),
    )
    counts = summary.counts
    assert (counts["contracts.created"], counts["contracts.updated"], counts["contracts.unchanged"]) == (2, 1, 1)
    assert sorted((e.key, e.field) for e in summary.errors) == [
        ("C-drift", "effective_date"),
        ("C-stranger", "customer_ref"),
    ]
    with store.read() as session:
        timelines = {t.contract_ref: t for t in load_timelines(session, contract_ids(session)).values()}
    assert sorted(timelines) == ["C-drift", "C-known", "C-new-1", "C-new-2", "C-same"]
    assert [v.version_no for v in timelines["C-known"].versions] == [1, 2]
    assert timelines["C-known"].versions[1].contract.lines[0].quantity == 3
    assert [len(v.contract.lines) for v in timelines["C-new-2"].versions] == [1]
    assert [len(t.versions) for t in (timelines["C-drift"], timelines["C-same"])] == [1, 1]
    assert count(store, ContractLine) == 6  # C-known twice, C-same, C-drift, C-new-1, C-new-2: one line each


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16  # the signature is what the import checks; drawing is the PDF's test


def entity_with_logo(logo: str, ref: str = "us") -> dict[str, object]:
    [entity] = [e for e in document()["entities"] if e["entity_ref"] == ref]
    return {**entity, "messaging": {"logo": logo}}


def test_a_logo_is_read_from_the_contract_files_folder_and_stored_absolute(tmp_path: Path, store: Store) -> None:
    (tmp_path / "brand").mkdir()
    (tmp_path / "brand" / "acme.png").write_bytes(PNG)
    file = tmp_path / "entities.json"
    file.write_text(json.dumps({"entities": [entity_with_logo("brand/acme.png")]}))
    summary = import_file(store, file)
    assert not summary.errors and summary.counts["entities.created"] == 1
    with store.read() as session:
        stored = session.scalar(select(LegalEntity.messaging).where(LegalEntity.entity_ref == "us"))
    assert stored["logo"] == str(tmp_path / "brand" / "acme.png")


def test_a_missing_or_wrong_logo_refuses_its_entity_naming_the_field_and_the_rest_go_on(
    tmp_path: Path, store: Store
) -> None:
    (tmp_path / "logo.jpg").write_bytes(b"GIF89a: a GIF named .jpg")
    file = tmp_path / "entities.yaml"
    doc = {**document(), "entities": [entity_with_logo("gone.png"), entity_with_logo("logo.jpg", "kw")]}
    file.write_text(json.dumps(doc))
    summary = import_file(store, file)
    errors = {(e.record, e.field): e.message for e in summary.errors}
    assert errors[("entities[0] (us)", "messaging.logo")].startswith(f"cannot read {tmp_path / 'gone.png'}: ")
    assert errors[("entities[1] (kw)", "messaging.logo")] == f"{tmp_path / 'logo.jpg'} is not a PNG or JPEG image"
    assert summary.counts["products.created"] == len(document()["products"])  # the rest went on
    with store.read() as session:
        held = {e["record_key"]: e for e in quarantine.list_open(session) if e["record_type"] == "entities"}
    assert set(held) == {"us", "kw"} and held["us"]["field"] == "messaging.logo"


def test_a_logo_that_is_no_image_file_name_is_refused_by_the_schema(store: Store) -> None:
    summary = import_document(store, {"entities": [entity_with_logo("logo.gif")]})
    [error] = summary.errors
    assert error.field == "messaging.logo" and "expected a PNG or JPEG file" in error.message


def test_a_file_that_is_not_utf8_is_named_with_its_first_bad_byte(tmp_path: Path, store: Store) -> None:
    for name in ("latin1.yaml", "latin1.json"):
        latin1 = tmp_path / name
        latin1.write_bytes('customers: [{customer_ref: mu, name: "Müller"}]\n'.encode("latin-1"))
        with pytest.raises(ContractFileError, match=rf"^{latin1}: not UTF-8 \(byte 0xfc at 39\)$"):
            import_file(store, latin1)
