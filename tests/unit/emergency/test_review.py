"""County review (rule 4, R3, R6, P2, P5, P8, P9): what a review may decide, and what it
leaves behind. Each test states a rule that a surviving mutant of `domain/review.py`
showed nobody checked."""

from __future__ import annotations

from schemas import decisions as d
from schemas import intake as i
from tests.unit.emergency.builders import (
    T0,
    expenditure,
    flooded,
    hours,
    paid,
    reviewed,
    types,
    urgent,
)

PER_MONTH = 60_000  # one person: 20 yuan x 30 days (P5)


def test_a_paid_advance_is_reviewed_once() -> None:
    """Rule 4: a paid advance is reviewed once. While its paperwork deadline (P1) is
    still open the reviewed case stays in the state, and a second review of it is
    refused: no second top-up, no second recovery."""
    town = flooded()
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    town(reviewed("case-1", T0 + hours(2), i.ReviewOutcome.CONFIRMED, approved_fen=80_000))
    assert town.open_case("case-1").status is d.CaseStatus.REVIEWED  # paperwork still due
    again = reviewed(
        "case-1", T0 + hours(3), i.ReviewOutcome.TOP_UP, approved_fen=90_000, top_up_fen=10_000
    )
    assert "only a paid advance is reviewed" in town.refused(again)


def test_an_application_awaiting_approval_is_confirmed_or_found_ineligible_only() -> None:
    """P2: county civil affairs approves or rejects an application above a town's
    authority; a top-up of something not yet granted is refused. The rejection gives the
    household the reviewer's own words (P9)."""
    town = flooded()
    town(expenditure("ill-1", 500_000, i.ReliefCategory.SERIOUS_ILLNESS))
    top_up = reviewed(
        "ill-1", T0 + hours(1), i.ReviewOutcome.TOP_UP, approved_fen=500_000, top_up_fen=1
    )
    assert "confirmed or found ineligible" in town.refused(top_up)
    out = town(
        reviewed(
            "ill-1", T0 + hours(2), i.ReviewOutcome.INELIGIBLE, approved_fen=0, reasons="收入超标"
        )
    )
    [rejected] = [r for r in out if isinstance(r, d.ReliefRejected)]
    assert rejected.reasons == "收入超标"


def test_a_transitional_schedule_is_approved_whole() -> None:
    """P5 + P2: the county approves a schedule as the rules computed it, neither more
    nor less."""
    town = flooded()
    # 3 persons: 3 x 60,000 x 3 months = 540,000 fen, above the town's 300,000 (P2)
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING, persons=3))
    whole = 3 * 3 * PER_MONTH
    for other in (whole - 1, whole + 1):
        record = reviewed("tr-1", T0 + hours(1), i.ReviewOutcome.CONFIRMED, approved_fen=other)
        assert "approved whole" in town.refused(record)
    out = town(reviewed("tr-1", T0 + hours(2), i.ReviewOutcome.CONFIRMED, approved_fen=whole))
    assert isinstance(out[0], d.ReliefApproved) and out[0].amount_fen == whole


def test_a_schedule_stopped_before_any_payment_is_rejected_then_its_hold_released() -> None:
    """P8 + P9: a schedule found ineligible before the town paid anything is rejected
    (nothing to recover), and the instalment held for it goes back to the county fund,
    in that order; the rejection is never lost among the releases."""
    town = flooded()
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    assert town.s.county_held_fen == PER_MONTH
    out = town(
        reviewed(
            "tr-1", T0 + hours(2), i.ReviewOutcome.INELIGIBLE, approved_fen=0, reasons="不符合条件"
        )
    )
    assert types(out) == ["ReliefRejected", "Posting"]
    assert isinstance(out[0], d.ReliefRejected) and out[0].reasons == "不符合条件"
    assert town.s.county_held_fen == 0


def test_stopping_one_schedule_releases_its_own_hold_only() -> None:
    """P8: stopping a schedule gives back what is held for *its* unpaid instalments; the
    county fund's other holds stay held."""
    town = flooded()
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    town(urgent("tr-2", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING, household=2))
    assert town.s.county_held_fen == 2 * PER_MONTH
    town(
        reviewed(
            "tr-1", T0 + hours(2), i.ReviewOutcome.INELIGIBLE, approved_fen=0, reasons="不符合条件"
        )
    )
    assert town.s.county_held_fen == PER_MONTH  # tr-2's instalment, still held
