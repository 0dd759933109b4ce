"""The partners a deal names, on the documented HubSpot deal: the role comes from the configured
association label, and every refusal names the label's field (pure: no sandbox)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from billbridge.billing.model import Partner
from billbridge.mapping.crm import MappedDeal, MappingError, map_deal
from billbridge.mapping.hubspot import DEFAULT_MAPPING, HubSpotProperties, bundle_to_crm
from billbridge.records import DealBundle
from tests.mapping.test_hubspot_mapping import FIXTURE

RESELLER = "associations.companies[Reseller]"
REFERRAL = "associations.companies[Referral partner]"


def _partner(ref: str, kind: str) -> Partner:
    return Partner(partner_ref=ref, name=ref, kind=kind, entity_ref="us-inc", currency="USD")


def _map(labelled: dict[str, list[str]], known: list[Partner] | None, **names: Any) -> MappedDeal:
    raw = copy.deepcopy(FIXTURE)
    bundle = DealBundle(raw["deal"], raw["lines"], raw["company"], raw["products"], labelled=labelled)
    deal, company, products = bundle_to_crm(bundle, names=HubSpotProperties(**names))
    partners = None if known is None else {p.partner_ref: p for p in known}
    return map_deal(deal, company, products, DEFAULT_MAPPING, partners=partners)


def test_a_deal_without_partner_labels_is_sold_directly() -> None:
    mapped = _map({"Champion": ["77"]}, None)  # another label means nothing here
    assert mapped.contract.reseller_ref is None and mapped.referral is None


def test_reseller_and_referral_partner_on_one_deal() -> None:
    mapped = _map(
        {"Reseller": ["70"], "Referral partner": ["71"]}, [_partner("hs-70", "reseller"), _partner("hs-71", "both")]
    )
    assert mapped.contract.reseller_ref == "hs-70"
    assert mapped.referral is not None and mapped.referral.partner_ref == "hs-71"
    assert (mapped.referral.referral.customer_ref, mapped.referral.referral.contract_ref) == ("hs-9001", "hs-512")
    assert mapped.referral.field == REFERRAL


@pytest.mark.parametrize(
    ("labelled", "known", "field", "says"),
    [
        ({"Reseller": ["70"]}, [], RESELLER, "unknown partner 'hs-70'"),
        ({"Reseller": ["70"]}, None, RESELLER, "unknown partner"),  # nothing to check it against
        ({"Reseller": ["70"]}, [_partner("hs-70", "referral")], RESELLER, "is a referral partner, not a reseller"),
        ({"Referral partner": ["70"]}, [_partner("hs-70", "reseller")], REFERRAL, "not a referral one"),
        (
            {"Reseller": ["70", "72"]},
            [_partner("hs-70", "reseller"), _partner("hs-72", "reseller")],
            RESELLER,
            "names two reseller partners",
        ),
    ],
)
def test_a_partner_that_does_not_fit_refuses_the_deal_naming_the_label(
    labelled: dict[str, list[str]], known: list[Partner] | None, field: str, says: str
) -> None:
    with pytest.raises(MappingError) as refused:
        _map(labelled, known)
    assert refused.value.field == field and says in refused.value.message


def test_the_labels_are_configuration() -> None:
    known = [_partner("hs-70", "both")]
    assert _map({"Reseller": ["70"]}, known, reseller_label=None).contract.reseller_ref is None
    mapped = _map({"Channel": ["70"]}, known, reseller_label="Channel")
    assert mapped.contract.reseller_ref == "hs-70"
