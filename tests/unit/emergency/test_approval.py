"""Approval of expenditure-type relief and deliberation (approval.py): who holds the money
an approval sets aside (P2, R4), which cases a deliberation may decide (R6), and what
settlement puts back into a town's reserve (P11).

Each story states a rule that mutation testing found nobody checked (docs/mutants.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from schemas import decisions as d
from schemas import intake as i
from schemas.postings import Posting
from services.emergency.domain.state import CaseStatus
from tests.unit.emergency.builders import (
    CONFIG,
    T0,
    TOWN,
    Town,
    deliberated,
    expenditure,
    hours,
    incident,
    paid,
    replenished,
    reviewed,
    rules_with_reserve,
    types,
    urgent,
)
from tests.unit.emergency.test_policy_fidelity import CEILING, unchanged

LIMIT = CONFIG.policy.town_approval_limit_fen  # P2: 3,000 yuan
HARDSHIP = i.ReliefCategory.TEMPORARY_HARDSHIP  # no R3 band: the amount asked is the amount


def _town(size: int | None = None) -> Town:
    town = Town() if size is None else Town(rules=rules_with_reserve(size))
    town(incident("flood-0720"))
    return town


def _hold(out: Sequence[object]) -> Posting:
    [hold] = [r for r in out if isinstance(r, Posting)]
    return hold


# ---------------------------------------------------------------- P2 + R4: who holds it


def test_a_towns_own_approval_is_held_on_its_reserve_and_the_countys_on_the_county_fund() -> None:
    """P2: a town approves relief below 3,000 yuan itself, and pays it from its own
    50,000-yuan reserve (R4) while the reserve covers it; county civil affairs approving
    the same amount holds it on the county fund, leaving the town's reserve alone."""
    town = _town()
    size = town.s.reserve.size_fen
    out = town(expenditure("th-1", LIMIT - 1, HARDSHIP, household=20, actor=TOWN))
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved)
    assert approved.approver_level is d.ApproverLevel.TOWN
    hold = _hold(out)
    assert hold.kind == "advance_granted" and hold.amount_fen == LIMIT - 1
    assert hold.memo == "P2: relief approved by the town, held on its reserve"
    assert town.open_case("th-1").funded_by == d.FundedBy.TOWN_RESERVE.value
    assert town.s.reserve.held_fen == LIMIT - 1 and town.s.county_held_fen == 0
    assert town.s.reserve.available_fen == size - (LIMIT - 1)

    out = town(expenditure("th-2", LIMIT - 1, HARDSHIP, household=21))  # civil affairs
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved)
    assert approved.approver_level is d.ApproverLevel.COUNTY
    hold = _hold(out)
    assert hold.kind == "escalated_advance" and hold.amount_fen == LIMIT - 1
    assert hold.memo == "relief approved, held on the county fund"
    assert town.open_case("th-2").funded_by == d.FundedBy.COUNTY_FUND.value
    assert town.s.reserve.held_fen == LIMIT - 1  # unchanged by the county's approval
    assert town.s.county_held_fen == LIMIT - 1


def test_a_towns_approval_the_reserve_cannot_cover_is_held_on_the_county_fund() -> None:
    """R4 + P2: the town still approves within its authority, but a reserve that cannot
    cover the amount is never overdrawn: the county fund holds it instead."""
    town = _town(size=LIMIT - 2)
    out = town(expenditure("th-1", LIMIT - 1, HARDSHIP, household=20, actor=TOWN))
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved)
    assert approved.approver_level is d.ApproverLevel.TOWN
    hold = _hold(out)
    assert hold.kind == "escalated_advance"
    assert hold.memo == "relief approved, held on the county fund"
    assert town.open_case("th-1").funded_by == d.FundedBy.COUNTY_FUND.value
    assert town.s.reserve.held_fen == 0 and town.s.county_held_fen == LIMIT - 1


# ---------------------------------------------------------------- R6: what a deliberation decides


def test_a_deliberation_decides_only_a_case_sent_to_deliberation() -> None:
    """R6: county civil affairs deliberates (一事一议) a case above the cap; a deliberation
    on a case in any other state - an unpaid or a paid advance, an application awaiting
    the county's approval (P2), an approved one - is refused and changes nothing."""
    town = _town()
    town(urgent("advanced", 80_000, household=1))
    town(urgent("paid", 80_000, household=2))
    town(paid("paid", 80_000, at=T0 + hours(1)))
    town(expenditure("awaiting", LIMIT, HARDSHIP, household=20))
    town(expenditure("approved", LIMIT - 1, HARDSHIP, household=21, actor=TOWN))
    expected = {
        "advanced": CaseStatus.ADVANCED,
        "paid": CaseStatus.PAID,
        "awaiting": CaseStatus.AWAITING_APPROVAL,
        "approved": CaseStatus.APPROVED,
    }
    for n, (case_id, status) in enumerate(expected.items()):
        assert town.open_case(case_id).status is status
        at = T0 + hours(2 + n)
        for decided in (
            deliberated(case_id, at, approved_fen=CEILING + 1),
            deliberated(case_id, at, refused=True),
        ):
            reason = unchanged(town, decided)
            assert f"case is {status.value}: no deliberation is pending" in reason


def test_one_fen_already_paid_makes_the_deliberation_a_top_up_not_a_second_approval() -> None:
    """R6 after R5: a paid advance whose review asked for more than the cap is decided as
    its final amount, the top-up above what was paid - however little was paid, down to
    one fen; it is never approved and held afresh, which would pay the advance twice."""
    town = _town()
    town(urgent("case-1", 1))
    town(paid("case-1", 1, at=T0 + hours(1)))
    town(
        reviewed(
            "case-1",
            T0 + timedelta(days=3),
            i.ReviewOutcome.TOP_UP,
            approved_fen=CEILING + 1,
            top_up_fen=CEILING,
        )
    )
    assert town.open_case("case-1").status is CaseStatus.DELIBERATION
    out = town(deliberated("case-1", T0 + timedelta(days=4), approved_fen=800_000))
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved)
    assert approved.case_status is CaseStatus.REVIEWED and approved.amount_fen == 800_000
    assert approved.figures["top_up_fen"] == 800_000 - 1
    assert town.s.county_paid_fen == 800_000 - 1 and town.s.county_held_fen == 0
    assert town.open_case("case-1").status is CaseStatus.REVIEWED


# ---------------------------------------------------------------- P11: settlement


def test_settlement_of_a_reserve_finance_already_filled_puts_nothing_back() -> None:
    """P11: settlement tops the reserve back up, never above its size (R4). When finance
    has already refilled it, the review settles the case with no replenishment at all -
    no posting of nothing, and no error."""
    town = _town()
    size = town.s.reserve.size_fen
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    town(replenished(80_000, at=T0 + hours(2)))
    assert town.s.reserve.available_fen == size and town.s.reserve.shortfall_fen == 0
    out = town(
        reviewed("case-1", T0 + timedelta(days=3), i.ReviewOutcome.CONFIRMED, approved_fen=80_000)
    )
    assert types(out) == ["ReliefApproved"]
    assert town.s.reserve.available_fen == size and town.s.reserve.replenished_fen == 80_000
    assert town.open_case("case-1").status is CaseStatus.REVIEWED
