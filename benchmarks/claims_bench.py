"""The county's claims stage, pure: how many requests a second one stage checks and marks.

Run on purpose, never as a test:

    .venv/bin/python benchmarks/claims_bench.py --requests 200000

Requests for households of the county's nine towns (one in ten with two members, one in
twenty the same household again in another town), each checked against the marks the
ones before it left, in a dict standing for the stage's table; releases of one request
in fifty. Prints the rate by tenth (does it stay flat as the marks grow?) and the
largest stored value.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.claims import ClaimReleased
from schemas.envelope import Actor, Role
from schemas.intake import ClaimVerdict, ReliefCategory, ReliefRequested, Urgency
from schemas.policy import load_config
from services.emergency.domain import claims, duplicates

TOWN = Actor(role=Role.TOWN, org="镇人民政府")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    county = load_config().county
    towns = county.codes()
    t0 = datetime(2026, 7, 20, tzinfo=UTC)
    store: dict[str, Any] = {}
    records = []
    for n in range(args.requests):
        household = n - 1 if n % 20 == 19 else n  # the same household again, another town
        members = (f"p_{n:032x}", f"p_{n + 10**9:032x}") if n % 10 == 0 else ()
        records.append(
            ReliefRequested(
                event_id=uuid.uuid4(),
                occurred_at=t0,
                recorded_at=t0 + timedelta(seconds=n),
                town=towns[n % len(towns)],
                actor=TOWN,
                correlation_id=f"c-{n}",
                urgency=Urgency.URGENT,
                category=ReliefCategory.EMERGENCY,
                household_ref=f"h_{household:032x}",
                incident_id="flood-0720",
                requested_fen=80_000,
                reason="房屋进水",
                member_refs=members,
            )
        )
    tenth = max(1, args.requests // 10)
    rates: list[float] = []
    duplicates_found = 0
    started = time.perf_counter()
    mark = started
    for n, record in enumerate(records):
        book = claims.ClaimsBook(store.get)
        claim = claims.check(book, record, county)
        if claim.verdict is ClaimVerdict.DUPLICATE:
            duplicates_found += 1
        elif n % 50 == 0:
            claims.release(
                book,
                ClaimReleased(
                    event_id=uuid.uuid4(),
                    town=record.town,
                    case_id=record.case_id,
                    request_id=str(record.event_id),
                    cause_key=duplicates.cause_of("emergency", "flood-0720"),
                    persons=duplicates.persons_of_request(record),
                    released_at=record.recorded_at or t0,
                    reason="refused",
                ),
                record.recorded_at or t0,
            )
        claims.forwarded(record, claim)
        for key, value in book.changes():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        if (n + 1) % tenth == 0:
            now = time.perf_counter()
            rates.append(tenth / (now - mark))
            mark = now
    elapsed = time.perf_counter() - started
    largest = max(len(json.dumps(v)) for v in store.values())
    print(f"{args.requests:,} claims in {elapsed:.1f} s: {args.requests / elapsed:,.0f}/s")
    print("by tenth: " + " ".join(f"{r:,.0f}" for r in rates))
    print(f"duplicates found: {duplicates_found:,}; stored values: {len(store):,}; "
          f"largest {largest} bytes")  # fmt: skip


if __name__ == "__main__":
    main()
