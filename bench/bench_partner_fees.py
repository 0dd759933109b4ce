#!/usr/bin/env python
"""Benchmark of the referral fee math: 1,000 partners (one 20% agreement each, 5 referred customers)
over 100,000 payments spread over 12 months, against a floor.

    python bench/bench_partner_fees.py                      # 1,000 partners, 100,000 payments
    python bench/bench_partner_fees.py --partners 100 --payments 10000

Timed: ``billing.partner_fees.accrue`` for every agreement over its customers' payments (what the
``partner_fees`` flow computes between its reads and writes), then again with everything booked (a
rerun: nothing to add). Floor (same run): a bare loop over the same payments adding ``amount * 20 /
100`` rounded half-up to cents per payment. Target: <= 3x the floor; the rerun adds nothing.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from common import code_version, log, timer

from billbridge.billing.model import ReferralAgreement
from billbridge.billing.partner_fees import Booked, FeeEvent, accrue


def generate(partners: int, payments: int, seed: int = 17) -> tuple[list[ReferralAgreement], dict[str, list[FeeEvent]]]:
    rng = random.Random(seed)
    agreements, events = [], defaultdict(list)
    for p in range(partners):
        customers = [f"c{p}-{n}" for n in range(5)]
        referrals = [{"customer_ref": c, "referred_on": "2026-01-01"} for c in customers]
        agreements.append(
            ReferralAgreement.model_validate(
                {
                    "agreement_ref": f"a{p}",
                    "partner_ref": f"p{p}",
                    "currency": "USD",
                    "percent": "20",
                    "referrals": referrals,
                }
            )
        )
    for n in range(payments):
        p = rng.randrange(partners)
        amount = Decimal(rng.randrange(-5_000, 500_000)).scaleb(-2)  # some refunds
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(365))
        events[f"a{p}"].append(FeeEvent(f"e{n}", f"c{p}-{rng.randrange(5)}", "C", day, "collected", "USD", amount))
    return agreements, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=100_000)
    args = parser.parse_args()
    agreements, events = generate(args.partners, args.payments)
    log(f"{args.partners} agreements, {args.payments} payments")
    cent = Decimal("0.01")
    with timer(freeze=True) as floor:
        bare = Decimal(0)
        for agreement in agreements:
            for event in events[agreement.agreement_ref]:
                bare += (event.amount * 20 / 100).quantize(cent, rounding=ROUND_HALF_UP)
    with timer() as run:
        accrued = {a.agreement_ref: accrue(a, events[a.agreement_ref]).accruals for a in agreements}
    with timer() as rerun:
        again = sum(
            len(accrue(a, events[a.agreement_ref], Booked.of(accrued[a.agreement_ref])).accruals) for a in agreements
        )
    total = sum(x.fee for found in accrued.values() for x in found)
    result = {
        "code": code_version(),
        "partners": args.partners,
        "payments": args.payments,
        "accruals": sum(len(x) for x in accrued.values()),
        "fees": str(total),
        "floor_fees": str(bare),
        "accrue_s": round(run[0], 3),
        "floor_s": round(floor[0], 3),
        "ratio": round(run[0] / floor[0], 2),
        "rerun_s": round(rerun[0], 3),
        "rerun_added": again,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
