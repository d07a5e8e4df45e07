"""The county's text read rule by rule against the rules, as stories at the boundaries.

Each story checks what the rules do on both sides of a figure, and after every refusal
that nothing changed. The Town harness also checks, after every record, that the state
folded back from the outputs (`evolve`) equals what `decide` left.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import BaseModel

from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import Actor, Record, Role
from schemas.topics import RejectedRecord
from services.emergency.domain.state import CaseStatus
from tests.unit.emergency.builders import (
    BUREAU,
    CIVIL,
    QIFENG,
    T0,
    TIANZHUANG,
    TOWN,
    Town,
    cancelled,
    deliberated,
    env,
    expenditure,
    flooded,
    hh,
    hours,
    incident,
    paid,
    reviewed,
    tick,
    types,
    urgent,
)

MINIMUM = 92_400  # P4: the urban monthly minimum configured for 2026 (924 yuan)
EDU_CAP = 6 * MINIMUM  # R3: 5,544 yuan
ILL_CAP = 12 * MINIMUM  # R3: 11,088 yuan
CEILING = 554_400  # the configured ceiling of emergency relief (no band in the text)


def person(n: int) -> str:
    return f"p_{n:032x}"


def unchanged(town: Town, record: Record) -> str:
    """The record is refused as a dead letter and the state is exactly as it was; the
    dead letter's reason is returned."""
    before = town.snapshot()
    out = town(record)
    assert [type(r) for r in out] == [RejectedRecord], types(out)
    assert town.snapshot() == before
    dead = out[0]
    assert isinstance(dead, RejectedRecord)
    return dead.reason


# ================================================================== 1. R3 caps on every path


def test_a_county_approval_above_the_band_goes_to_deliberation_not_to_the_household() -> None:
    town = flooded()
    town(expenditure("edu-1", 400_000, i.ReliefCategory.EDUCATION))  # above 3,000: the county
    assert town.open_case("edu-1").status is CaseStatus.AWAITING_APPROVAL
    # at the cap itself: approved
    town(expenditure("edu-2", 400_000, i.ReliefCategory.EDUCATION, household=8))
    [ok, _] = town(
        reviewed("edu-2", T0 + hours(1), i.ReviewOutcome.CONFIRMED, approved_fen=EDU_CAP)
    )
    assert isinstance(ok, d.ReliefApproved) and ok.amount_fen == EDU_CAP
    # one fen above it (the 50,000 yuan too): not approved, deliberated
    for case, amount in (("edu-1", EDU_CAP + 1),):
        out = town(reviewed(case, T0 + hours(2), i.ReviewOutcome.CONFIRMED, approved_fen=amount))
        assert types(out) == ["DeliberationRequired"]
        assert isinstance(out[0], d.DeliberationRequired) and out[0].cap_fen == EDU_CAP
        assert town.open_case(case).status is CaseStatus.DELIBERATION
    town(expenditure("edu-3", 400_000, i.ReliefCategory.EDUCATION, household=9))
    [deliberate] = town(
        reviewed("edu-3", T0 + hours(3), i.ReviewOutcome.CONFIRMED, approved_fen=5_000_000)
    )
    assert isinstance(deliberate, d.DeliberationRequired)
    assert not [r for r in town.of(d.ReliefApproved) if r.amount_fen > EDU_CAP]
    # only the deliberation (R6) may go above, with its reasons and its decider
    out = town(deliberated("edu-1", T0 + hours(4), approved_fen=EDU_CAP + 1))
    assert isinstance(out[0], d.ReliefApproved) and out[0].rule == "R6"
    assert out[0].decided_by == CIVIL and out[0].reasons


def test_a_county_approval_below_the_r3_floor_is_refused_with_the_floor_named() -> None:
    town = flooded()
    town(expenditure("ill-1", 500_000, i.ReliefCategory.SERIOUS_ILLNESS))
    rec = reviewed("ill-1", T0 + hours(1), i.ReviewOutcome.CONFIRMED, approved_fen=3 * MINIMUM - 1)
    assert f"{3 * MINIMUM} fen" in unchanged(town, rec)
    [ok, _] = town(
        reviewed("ill-1", T0 + hours(2), i.ReviewOutcome.CONFIRMED, approved_fen=3 * MINIMUM)
    )
    assert isinstance(ok, d.ReliefApproved)


def test_a_top_up_after_an_advance_stays_within_the_cap_or_goes_to_deliberation() -> None:
    town = flooded()
    # the case: a 100,000-yuan top-up after a 1,000-yuan advance
    town(urgent("case-1", 100_000))
    town(paid("case-1", 100_000, at=T0 + hours(2)))
    out = town(
        reviewed(
            "case-1",
            T0 + timedelta(days=3),
            i.ReviewOutcome.TOP_UP,
            approved_fen=10_100_000,
            top_up_fen=10_000_000,
        )
    )
    assert types(out) == ["DeliberationRequired"]
    assert isinstance(out[0], d.DeliberationRequired)
    assert (out[0].requested_fen, out[0].cap_fen) == (10_100_000, CEILING)
    assert town.s.county_paid_fen == 0  # nothing moved
    # the deliberation decides the final amount; the top-up is what lies above the advance
    out = town(deliberated("case-1", T0 + timedelta(days=5), approved_fen=800_000))
    assert types(out) == ["ReliefApproved", "Posting", "Posting"]  # top-up, settlement
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved) and approved.rule == "R6"
    assert approved.figures["top_up_fen"] == 700_000 and approved.decided_by == CIVIL
    assert town.s.county_paid_fen == 700_000
    assert town.open_case("case-1").status is CaseStatus.REVIEWED  # (its paperwork is due)
    # at the ceiling itself a top-up needs no deliberation
    town(urgent("case-2", 100_000, household=2))
    town(paid("case-2", 100_000, at=T0 + hours(2)))
    out = town(
        reviewed(
            "case-2",
            T0 + timedelta(days=3),
            i.ReviewOutcome.TOP_UP,
            approved_fen=CEILING,
            top_up_fen=CEILING - 100_000,
        )
    )
    assert types(out)[:2] == ["ReliefApproved", "Posting"]


def test_a_refused_top_up_deliberation_leaves_the_advance_reviewed_as_paid() -> None:
    town = flooded()
    town(urgent("case-1", 100_000))
    town(paid("case-1", 100_000, at=T0 + hours(2)))
    town(
        reviewed(
            "case-1",
            T0 + timedelta(days=3),
            i.ReviewOutcome.TOP_UP,
            approved_fen=CEILING + 100_001,
            top_up_fen=CEILING + 1,
        )
    )
    out = town(deliberated("case-1", T0 + timedelta(days=4), refused=True))
    approved = out[0]
    assert isinstance(approved, d.ReliefApproved) and approved.amount_fen == 100_000
    assert approved.figures["top_up_refused"] == 1 and approved.reasons
    assert town.s.county_paid_fen == 0


def test_temporary_hardship_above_its_configured_ceiling_is_deliberated() -> None:
    town = flooded()
    hardship = i.ReliefCategory.TEMPORARY_HARDSHIP
    [approval] = town(expenditure("th-1", CEILING, hardship, actor=TOWN))
    assert isinstance(approval, d.ApprovalRequired)  # at the ceiling: approval, no deliberation
    [deliberation] = town(expenditure("th-2", CEILING + 1, hardship, household=8, actor=TOWN))
    assert isinstance(deliberation, d.DeliberationRequired)
    assert deliberation.figures["ceiling_fen"] == CEILING


def test_a_transitional_extension_stays_within_p5s_months() -> None:
    town = flooded()
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))

    def extended(months: int, actor: Actor = CIVIL) -> i.TransitionalReliefExtended:
        return i.TransitionalReliefExtended(
            **env(QIFENG, "tr-1", T0 + hours(1), actor), extended_to_months=months, reason="x"
        )

    unchanged(town, extended(6, TOWN))  # the county extends, not the town
    with pytest.raises(ValueError):
        extended(7)  # beyond any P5 figure: refused at the door
    out = town(extended(6))
    assert isinstance(out[0], d.ReliefApproved) and out[0].amount_fen == 6 * 60_000


# ================================================================== 2. P6, read with R1


def test_the_three_layers_of_r1_for_one_flood_are_not_duplicates() -> None:
    town = flooded()
    [grant, _] = town(urgent("em-1", 80_000))
    assert isinstance(grant, d.AdvanceGranted)
    out = town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    assert isinstance(out[0], d.ReliefApproved)
    out = town(
        expenditure(
            "th-1",
            100_000,
            i.ReliefCategory.TEMPORARY_HARDSHIP,
            household=1,
            actor=TOWN,
            incident_id="flood-0720",
        )
    )
    assert isinstance(out[0], d.ReliefApproved)
    assert not town.of(d.AdvanceRefused)
    # the same layer again for the same flood is a duplicate, its first grant named
    [dup] = town(urgent("em-2", 80_000, at=T0 + hours(1)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    assert dup.figures["previous_case_id"] == "em-1" and "em-1" in dup.reasons


def test_leaving_out_the_incident_id_is_still_a_duplicate_both_ways() -> None:
    town = flooded()
    town(urgent("em-1", 80_000))
    [dup] = town(urgent("em-2", 80_000, inc=None, at=T0 + hours(1)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    other = flooded()
    other(urgent("em-1", 80_000, inc=None))
    [dup] = other(urgent("em-2", 80_000, at=T0 + hours(1)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    # a grant that named no incident blocks every incident of its layer...
    other(incident("fire-0801", at=T0 + hours(2)))
    [dup] = other(urgent("em-3", 80_000, inc="fire-0801", at=T0 + hours(3)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    # ... while one that named its flood leaves another incident a new cause
    town(incident("fire-0801", at=T0 + hours(2)))
    [grant, _] = town(urgent("em-3", 80_000, inc="fire-0801", at=T0 + hours(3)))
    assert isinstance(grant, d.AdvanceGranted)


def test_a_request_awaiting_approval_or_deliberation_already_blocks_a_second() -> None:
    town = flooded()
    [awaiting] = town(expenditure("ill-1", 500_000, i.ReliefCategory.SERIOUS_ILLNESS))
    assert isinstance(awaiting, d.ApprovalRequired)
    [dup] = town(expenditure("ill-2", 400_000, i.ReliefCategory.SERIOUS_ILLNESS))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    [delib] = town(expenditure("edu-1", EDU_CAP + 1, i.ReliefCategory.EDUCATION, household=8))
    assert isinstance(delib, d.DeliberationRequired)
    [dup] = town(expenditure("edu-2", 300_000, i.ReliefCategory.EDUCATION, household=8))
    assert isinstance(dup, d.AdvanceRefused) and dup.figures["previous_case_id"] == "edu-1"
    # refused in deliberation: the household may ask again
    town(deliberated("edu-1", T0 + hours(1), refused=True))
    [approved, _] = town(
        expenditure("edu-3", 200_000, i.ReliefCategory.EDUCATION, household=8, at=T0 + hours(2))
    )
    assert isinstance(approved, d.ReliefApproved)


def test_another_member_of_the_same_household_is_the_same_household() -> None:
    town = flooded()
    head, spouse = person(1), person(2)
    town(urgent("em-1", 80_000, household=1, member_refs=(head, spouse)))
    # the spouse asks as the head of the "household", naming the first head as a member
    [dup] = town(urgent("em-2", 80_000, household=2, member_refs=(spouse,), at=T0 + hours(1)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    [grant, _] = town(urgent("em-3", 80_000, household=3, member_refs=(person(3),)))
    assert isinstance(grant, d.AdvanceGranted)  # no one in common


def test_a_cancelled_advance_blocks_nothing() -> None:
    town = flooded()
    town(urgent("em-1", 80_000))
    town(cancelled("em-1", T0 + hours(1)))
    [grant, _] = town(urgent("em-2", 80_000, at=T0 + hours(2)))
    assert isinstance(grant, d.AdvanceGranted)


def second_grant(case: str, at: datetime, reason: str) -> i.ReliefRequested:
    """County civil affairs asks again for household 1 and the flood, giving its reason
    for a second grant (P6)."""
    return i.ReliefRequested(
        **env(QIFENG, case, at, CIVIL),
        urgency=i.Urgency.URGENT,
        category=i.ReliefCategory.EMERGENCY,
        household_ref=hh(1),
        incident_id="flood-0720",
        requested_fen=80_000,
        reason="二次受灾",
        second_grant_reason=reason,
    )


def test_civil_affairs_may_grant_a_second_time_with_its_reason_recorded() -> None:
    town = flooded()
    town(urgent("em-1", 80_000))
    reason = "房屋二次倒塌，家中无其他收入来源"
    # a town may not: refused as a dead letter, nothing changes
    unchanged(town, urgent("em-2", 80_000, at=T0 + hours(1), second_grant_reason=reason))
    second = second_grant("em-3", T0 + hours(2), reason)
    out = town(second)
    assert types(out) == ["SecondGrantAllowed", "AdvanceGranted", "Posting"]
    allowed = out[0]
    assert isinstance(allowed, d.SecondGrantAllowed) and allowed.previous_case_id == "em-1"
    assert allowed.reasons == reason and allowed.decided_by == CIVIL
    # a reason with no earlier grant is a mistake, said so
    unchanged(town, second.model_copy(update={"correlation_id": "em-4", "household_ref": hh(9)}))


@pytest.mark.parametrize(("first", "second"), [("em-a", "em-b"), ("em-b", "em-a")])
def test_a_case_released_leaves_a_later_grants_marks_in_place(first: str, second: str) -> None:
    """P6: civil affairs granted a second time, so the household's marks name the second
    case; the first one cancelled then releases only what is still its own. Whichever
    way the two case ids sort, a third request is a duplicate of the second grant."""
    town = flooded()
    town(urgent(first, 80_000))
    again = second_grant(second, T0 + hours(1), "房屋二次倒塌，家中无其他收入来源")
    assert types(town(again)) == ["SecondGrantAllowed", "AdvanceGranted", "Posting"]
    town(cancelled(first, T0 + hours(2)))
    [refusal] = town(urgent("em-c", 80_000, at=T0 + hours(3)))
    assert isinstance(refusal, d.AdvanceRefused) and refusal.reason is d.RefusalReason.DUPLICATE
    assert refusal.figures["previous_case_id"] == second


def test_a_vagrants_relief_is_urgent_never_an_expenditure_case_r7() -> None:
    town = flooded()
    reason = unchanged(
        town,
        i.ReliefRequested(
            **env(QIFENG, "v-1", T0 + hours(1), CIVIL),
            urgency=i.Urgency.EXPENDITURE,
            category=i.ReliefCategory.SERIOUS_ILLNESS,
            household_ref=hh(5),
            requested_fen=80_000,
            reason="流浪人员就医",
            vagrant=True,
        ),
    )
    assert "vagrant's relief is urgent" in reason


# ================================================================== 3. who decided


def test_commands_beyond_their_authors_role_change_nothing() -> None:
    town = flooded()
    town(urgent("em-1", 80_000))
    town(paid("em-1", 80_000, at=T0 + hours(1)))
    as_town = i.CaseReviewed(
        **env(QIFENG, "em-1", T0 + hours(2), TOWN),
        outcome=i.ReviewOutcome.CONFIRMED,
        approved_fen=80_000,
    )
    assert "civil_affairs" in unchanged(town, as_town)
    unchanged(
        town,
        i.PaymentConfirmed(
            **env(QIFENG, "em-1", T0 + hours(2), CIVIL), amount_fen=1, bank_reference="B"
        ),
    )
    unchanged(town, urgent("em-9", 80_000, household=9).model_copy(update={"actor": BUREAU}))


def test_every_approval_names_the_person_who_gave_it_and_rules_name_none() -> None:
    town = flooded()
    [grant, _] = town(urgent("em-1", 80_000))
    assert isinstance(grant, d.AdvanceGranted) and grant.decided_by is None  # R5 decided
    [ok, _] = town(expenditure("ill-1", 3 * MINIMUM, i.ReliefCategory.SERIOUS_ILLNESS))
    assert isinstance(ok, d.ReliefApproved)
    assert ok.approver_level is d.ApproverLevel.COUNTY and ok.decided_by == CIVIL
    for approval in town.of(d.ReliefApproved):
        assert approval.decided_by is not None and approval.decided_by.role is not Role.SYSTEM


# ================================================================== 4. vagrants (R7)


def test_a_vagrant_without_an_id_is_registered_on_an_identity_statement() -> None:
    town = flooded()
    record = urgent(
        "v-1",
        30_000,
        inc=None,
        vagrant=True,
        identified_by=i.IdentifiedBy.STATEMENT,
    )
    [grant, _] = town(record)
    assert isinstance(grant, d.AdvanceGranted) and grant.amount_fen == 30_000
    # origin unknown: placed here, no referral yet
    assert not town.of(d.ReferredToOriginCounty)
    with pytest.raises(ValueError, match="vagrant"):
        urgent("x", 1, identified_by=i.IdentifiedBy.STATEMENT)


# ================================================================== 5. emergency period (R2)


def _declared(at: timedelta, until: timedelta | None = None) -> i.EmergencyPeriodDeclared:
    return i.EmergencyPeriodDeclared(
        **env(QIFENG, "flood-0720", T0 + at, BUREAU),
        incident_id="flood-0720",
        until=T0 + until if until is not None else None,
        reason="启动IV级应急响应",
    )


def test_an_emergency_period_raises_the_advance_cap_and_extends_the_paperwork() -> None:
    town = flooded()
    [before, _] = town(urgent("em-0", 500_000, household=10, at=T0 + hours(1)))
    assert isinstance(before, d.AdvanceGranted) and before.amount_fen == 100_000
    town(_declared(hours(2), until=hours(50)))
    [during, _] = town(urgent("em-1", 500_000, at=T0 + hours(3)))
    assert isinstance(during, d.AdvanceGranted) and during.amount_fen == 300_000
    assert during.rule == "R5+R2" and during.paperwork_due_at == T0 + hours(3) + timedelta(days=10)
    # the decision's figures name the period whose measures it applied, and only then
    assert during.figures["emergency_period"] == "flood-0720"
    assert "emergency_period" not in before.figures
    # at its end it no longer applies (the end is exclusive)
    [after, _] = town(urgent("em-2", 500_000, household=2, at=T0 + hours(50)))
    assert isinstance(after, d.AdvanceGranted) and after.amount_fen == 100_000
    assert "emergency_period" not in after.figures
    # declared by anyone but the bureau: nothing changes
    unchanged(town, _declared(hours(51)).model_copy(update={"actor": TOWN}))


def test_an_ended_emergency_period_and_a_closed_incident_keep_the_later_layers() -> None:
    town = flooded()
    town(_declared(hours(1)))
    town(
        i.EmergencyPeriodEnded(
            **env(QIFENG, "flood-0720", T0 + hours(2), BUREAU), incident_id="flood-0720"
        )
    )
    [grant, _] = town(urgent("em-1", 500_000, at=T0 + hours(3)))
    assert isinstance(grant, d.AdvanceGranted) and grant.amount_fen == 100_000
    town(
        i.IncidentClosed(
            **env(QIFENG, "flood-0720", T0 + hours(4), BUREAU), incident_id="flood-0720"
        )
    )
    [closed] = town(urgent("em-2", 80_000, household=2, at=T0 + hours(5)))
    assert isinstance(closed, d.AdvanceRefused) and closed.reason is d.RefusalReason.INCIDENT_CLOSED
    assert "transitional" in closed.reasons
    out = town(
        urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING, at=T0 + hours(6))
    )
    assert isinstance(out[0], d.ReliefApproved)


def test_an_emergency_period_over_by_the_time_it_is_declared_is_refused_r2() -> None:
    """R2: a period runs up to its end, which it excludes; declared with its end at the
    very moment the record is stamped, or before it, it is already over: refused, and
    nothing changes. One ending a moment after that is declared, and runs."""
    town = flooded()
    assert "is over" in unchanged(town, _declared(hours(2), until=hours(2)))
    assert "is over" in unchanged(town, _declared(hours(2), until=hours(1)))
    assert town(_declared(hours(2), until=hours(2) + timedelta(microseconds=1))) == []
    mark = town.book().incident("flood-0720")
    assert mark is not None and mark.in_emergency(T0 + hours(2))


def test_a_closed_incident_ends_its_emergency_relief_only_whatever_the_cause_r1() -> None:
    """R1: closing an incident ends its emergency relief, not the other relief that names
    it: the later layers and R3's causes are decided on their merits, whichever way their
    names sort against "emergency" (education sorts before it, the others after)."""
    town = flooded()
    town(
        i.IncidentClosed(
            **env(QIFENG, "flood-0720", T0 + hours(1), BUREAU), incident_id="flood-0720"
        )
    )
    [closed] = town(urgent("em-1", 80_000, at=T0 + hours(2)))
    assert isinstance(closed, d.AdvanceRefused) and closed.reason is d.RefusalReason.INCIDENT_CLOSED
    later, flood = T0 + hours(3), "flood-0720"
    education, illness = i.ReliefCategory.EDUCATION, i.ReliefCategory.SERIOUS_ILLNESS
    hardship = i.ReliefCategory.TEMPORARY_HARDSHIP
    requests = [
        expenditure("edu-1", 3 * MINIMUM, education, at=later, household=2, incident_id=flood),
        expenditure("ill-1", 3 * MINIMUM, illness, at=later, household=3, incident_id=flood),
        expenditure(
            "th-1", 100_000, hardship, at=later, household=4, actor=TOWN, incident_id=flood
        ),
        urgent(
            "tr-1", 10_000, at=later, household=5, category=i.ReliefCategory.TRANSITIONAL_LIVING
        ),
    ]
    assert {r.category for r in requests} == set(i.ReliefCategory) - {i.ReliefCategory.EMERGENCY}
    for request in requests:
        out = town(request)
        assert isinstance(out[0], d.ReliefApproved), (request.category, types(out))
    assert town.of(d.AdvanceRefused) == [closed]


# ================================================================== 6. fraud (P8)


def _fraud(town: Town, **fine: int) -> list[BaseModel]:
    town(urgent("em-1", 80_000))
    town(paid("em-1", 80_000, at=T0 + hours(1)))
    return town(
        reviewed(
            "em-1",
            T0 + timedelta(days=3),
            i.ReviewOutcome.FRAUD,
            approved_fen=0,
            reasons="虚报灾情",
            **fine,
        )
    )


@pytest.mark.parametrize(
    ("fine", "outcome"),
    [
        ({}, 0),  # 可以: the reviewer may decide no fine
        ({"fine_fen": 80_000}, 80_000),  # 1 x: the least
        ({"fine_fen": 240_000}, 240_000),  # 3 x: the most
        ({"fine_fen": 79_999}, None),  # below the configured band
        ({"fine_fen": 240_001}, None),  # above it
        ({"fine_multiple": 1}, 80_000),  # the least multiple
        ({"fine_multiple": 3}, 240_000),
        ({"fine_multiple": 4}, None),  # the configured band is 1-3 x
    ],
)
def test_a_fraud_fine_is_decided_by_a_person_within_the_configured_band(
    fine: dict[str, int], outcome: int | None
) -> None:
    town = flooded()
    out = _fraud(town, **fine)
    if outcome is None:
        assert [type(r) for r in out] == [RejectedRecord]
        assert town.open_case("em-1").status is CaseStatus.PAID
        return
    claim = out[0]
    assert isinstance(claim, d.RecoveryClaimed) and claim.fine_fen == outcome
    assert claim.decided_by == CIVIL


def test_a_transitional_schedule_found_fraudulent_is_stopped() -> None:
    town = flooded()
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    town(paid("tr-1", 60_000, at=T0 + hours(1)))
    town(tick(T0 + timedelta(days=31)))  # the second instalment falls due, held
    assert town.s.county_held_fen == 60_000
    out = town(
        reviewed(
            "tr-1",
            T0 + timedelta(days=32),
            i.ReviewOutcome.FRAUD,
            approved_fen=0,
            reasons="冒名领取",
            fine_fen=60_000,
        )
    )
    assert types(out) == ["RecoveryClaimed", "Posting", "Posting"]
    assert town.s.county_held_fen == 0 and town.case("tr-1") is None
    town(tick(T0 + timedelta(days=200)))
    assert len(town.of(d.InstalmentDue)) == 2  # nothing falls due after the stop


# ================================================================== 7. boundaries and labels


def test_payment_at_exactly_24_hours_is_on_time_and_a_moment_later_is_not() -> None:
    town = flooded()
    town(urgent("em-1", 80_000))
    town(urgent("em-2", 80_000, household=2))
    out = town(paid("em-1", 80_000, at=T0 + hours(24)))
    assert isinstance(out[-1], d.DeadlineMet)
    out = town(paid("em-2", 80_000, at=T0 + hours(24) + timedelta(microseconds=1)))
    assert isinstance(out[-1], d.DeadlineBreached)


def test_refusals_carry_their_reasons_in_words() -> None:
    town = flooded()
    [unknown] = town(urgent("em-1", 80_000, inc="no-such-flood"))
    assert isinstance(unknown, d.AdvanceRefused) and "no-such-flood" in unknown.reasons
    town(urgent("em-2", 80_000))
    [dup] = town(urgent("em-3", 80_000, at=T0 + hours(1)))
    assert isinstance(dup, d.AdvanceRefused) and "2026-07-20" in dup.reasons


def test_a_cash_payment_records_why_cash_was_needed() -> None:
    payment = i.PaymentConfirmed(
        **env(QIFENG, "em-1", T0, TOWN),
        amount_fen=1,
        method=i.PaymentMethod.CASH,
        cash_reason="受助人无银行账户，灾后银行网点停业",
    )
    assert payment.cash_reason
    with pytest.raises(ValueError, match="cash"):
        i.PaymentConfirmed(**env(QIFENG, "em-1", T0, TOWN), amount_fen=1, bank_reference="B",
                           cash_reason="x")  # fmt: skip


# ================================================================== P6 across towns


def test_the_same_household_in_another_town_is_refused_with_the_first_grant_named() -> None:
    county = Town()
    county(incident("flood-0720", town=QIFENG))
    county(incident("flood-0720", town=TIANZHUANG))
    [grant, _] = county(urgent("em-q", 80_000, town=QIFENG))
    assert isinstance(grant, d.AdvanceGranted)
    [second, *_] = county(urgent("em-t", 80_000, town=TIANZHUANG, at=T0 + hours(1)))
    assert isinstance(second, d.AdvanceRefused) and second.figures["previous_case_id"] == "em-q"
