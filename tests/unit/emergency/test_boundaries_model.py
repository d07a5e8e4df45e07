"""The policy's edges, one fen or one second either side, each checked twice: against the
figure the policy states and against the reference model (model.py).

available / available + 1 fen (R4), the advance cap (P3), the R3 cap, the town's approval
limit (P2), exactly the 24-hour due time (R5), and an escalated advance paid in part.
"""

from __future__ import annotations

from datetime import timedelta

from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import Record
from tests.unit.emergency.builders import (
    CONFIG,
    T0,
    TOWN,
    Town,
    expenditure,
    hours,
    incident,
    paid,
    reviewed,
    rules_with_reserve,
    tick,
    urgent,
)
from tests.unit.emergency.model import COUNTY, Model, Outcome
from tests.unit.emergency.test_stateful import outcomes

CAP = CONFIG.policy.advance_cap_fen  # P3: 1,000 yuan
LIMIT = CONFIG.policy.town_approval_limit_fen  # P2: 3,000 yuan
R3_CAP = 12 * CONFIG.policy.urban_minimum_monthly[-1].amount_fen  # serious illness


def _town(size: int) -> tuple[Town, Model]:
    town, model = Town(rules=rules_with_reserve(size)), Model(CONFIG.policy, size)
    town(incident("flood-0720"))
    return town, model


def _same(town: Town, model_says: list[Outcome], record: Record) -> list[Outcome]:
    got = outcomes(town(record))
    assert got == sorted(model_says, key=repr)
    return got


def test_an_advance_of_exactly_the_available_reserve_is_held_on_it() -> None:
    town, model = _town(CAP + 99_999)
    _same(town, model.urgent("c1", 99_999, T0), urgent("c1", 99_999, household=1))
    assert town.s.reserve.available_fen == CAP  # R4: exactly one advance cap left
    got = _same(town, model.urgent("c2", CAP, T0), urgent("c2", CAP, household=2))
    assert ("advance", "c2", CAP, "town_reserve") in got
    assert town.s.reserve.available_fen == 0
    assert town.s.county_held_fen == 0


def test_one_fen_above_the_available_reserve_is_escalated_to_the_county_fund() -> None:
    town, model = _town(CAP + 99_999)
    _same(town, model.urgent("c1", 100_000, T0), urgent("c1", 100_000, household=1))
    assert town.s.reserve.available_fen == 99_999
    got = _same(town, model.urgent("c2", 100_000, T0), urgent("c2", 100_000, household=2))
    assert ("advance", "c2", 100_000, COUNTY) in got and ("escalated", "c2") in got
    assert town.s.reserve.available_fen == 99_999  # R4: the reserve is not touched
    assert town.s.county_held_fen == 100_000


def test_an_urgent_request_above_the_advance_cap_gets_the_cap_now() -> None:
    town, model = _town(5_000_000)
    got = _same(town, model.urgent("c1", CAP + 1, T0), urgent("c1", CAP + 1))
    assert ("advance", "c1", CAP, "town_reserve") in got


def test_an_escalated_advance_paid_in_part_releases_the_rest_of_the_county_hold() -> None:
    town, model = _town(50_000)
    _same(town, model.urgent("c1", 80_000, T0), urgent("c1", 80_000))
    assert town.s.county_held_fen == 80_000
    at = T0 + hours(2)
    got = _same(town, model.pay("c1", 30_000, at), paid("c1", 30_000, at))
    assert ("paid", "c1", 30_000, COUNTY) in got
    assert town.s.county_held_fen == 0  # the 50,000 fen unpaid go back to the county fund
    assert town.s.reserve.available_fen == 50_000  # and the town's reserve was never touched
    balances = town.balances()
    assert balances.get("county_held:county", 0) == 0
    assert balances["relief_paid:370321101"] == 30_000


def test_a_request_at_exactly_the_r3_cap_is_within_it_and_one_fen_above_is_deliberated() -> None:
    town, model = _town(5_000_000)
    ill = i.ReliefCategory.SERIOUS_ILLNESS
    got = _same(
        town, model.expenditure("x1", ill.value, R3_CAP, False), expenditure("x1", R3_CAP, ill)
    )
    assert got == [("approval_required", "x1", R3_CAP)]
    got = _same(
        town,
        model.expenditure("x2", ill.value, R3_CAP + 1, False),
        expenditure("x2", R3_CAP + 1, ill, household=8),
    )
    assert got == [("deliberation", "x2", R3_CAP + 1)]  # R6: only a deliberation decides


def test_the_county_approves_exactly_the_cap_but_not_one_fen_above() -> None:
    town, model = _town(5_000_000)
    ill = i.ReliefCategory.SERIOUS_ILLNESS
    for n, cid in enumerate(("x1", "x2")):
        _same(town, model.expenditure(cid, ill.value, 500_000, False),
              expenditure(cid, 500_000, ill, household=10 + n))  # fmt: skip
    ok = reviewed("x1", T0, i.ReviewOutcome.CONFIRMED, approved_fen=R3_CAP)
    assert ("approved", "x1", R3_CAP, "county") in _same(
        town, model.review("x1", T0, "confirmed", R3_CAP), ok
    )
    above = reviewed("x2", T0, i.ReviewOutcome.CONFIRMED, approved_fen=R3_CAP + 1)
    assert _same(town, model.review("x2", T0, "confirmed", R3_CAP + 1), above) == [
        ("deliberation", "x2", R3_CAP + 1)
    ]


def test_a_town_approves_one_fen_below_its_limit_and_the_county_at_the_limit() -> None:
    town, model = _town(5_000_000)
    hardship = i.ReliefCategory.TEMPORARY_HARDSHIP
    below = expenditure("x1", LIMIT - 1, hardship, household=20, actor=TOWN)
    got = _same(town, model.expenditure("x1", hardship.value, LIMIT - 1, True), below)
    assert ("approved", "x1", LIMIT - 1, "town") in got  # P2: below 3,000 yuan
    at = expenditure("x2", LIMIT, hardship, household=21, actor=TOWN)
    got = _same(town, model.expenditure("x2", hardship.value, LIMIT, True), at)
    assert got == [("approval_required", "x2", LIMIT)]


def test_a_payment_at_exactly_the_due_time_meets_the_deadline_and_one_second_later_not() -> None:
    town, model = _town(5_000_000)
    for n, cid in enumerate(("c1", "c2")):
        _same(town, model.urgent(cid, 50_000, T0), urgent(cid, 50_000, household=n + 1))
    due = T0 + hours(CONFIG.policy.relief_deadline_h)
    got = _same(town, model.pay("c1", 50_000, due), paid("c1", 50_000, due))
    assert ("met", "c1") in got  # R5: 24 小时内 counts 24:00:00 itself
    late = due + timedelta(seconds=1)
    got = _same(town, model.pay("c2", 50_000, late), paid("c2", 50_000, late))
    assert ("breached", "c2") in got


def test_a_tick_at_exactly_the_due_time_breaches_nothing_and_one_second_later_it_does() -> None:
    town, model = _town(5_000_000)
    _same(town, model.urgent("c1", 50_000, T0), urgent("c1", 50_000))
    due = T0 + hours(CONFIG.policy.relief_deadline_h)
    assert _same(town, model.tick(due), tick(due)) == []
    late = due + timedelta(seconds=1)
    assert _same(town, model.tick(late), tick(late)) == [("breached", "c1")]
    assert [r.deadline for r in town.of(d.DeadlineBreached)] == [d.DeadlineKind.RELIEF_24H]
