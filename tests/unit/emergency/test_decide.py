"""The rules told as stories: a flood in Qifeng, families' advances, late payments."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from schemas import decisions as d
from schemas import intake as i
from schemas.postings import Posting
from schemas.topics import RejectedRecord
from services.emergency.domain import decide as decide_module
from services.emergency.domain.book import Book
from services.emergency.domain.decide import RuleBroken, Rules, decide
from services.emergency.domain.state import CaseStatus
from tests.unit.emergency.builders import (
    CIVIL,
    QIFENG,
    RULES,
    SIZE,
    T0,
    TIANZHUANG,
    TOWN,
    Town,
    cancelled,
    deliberated,
    env,
    expenditure,
    flooded,
    hours,
    incident,
    paid,
    paperwork,
    replenished,
    reviewed,
    rules_with_reserve,
    tick,
    types,
    urgent,
)

CAP = 100_000  # P3: 1,000 yuan


# ---------------------------------------------------------------- R5: relief first


def test_an_urgent_request_is_granted_at_once_as_a_hold_on_the_reserve() -> None:
    town = flooded()
    out = town(urgent("case-1", 80_000, at=T0 + hours(1)))
    assert types(out) == ["AdvanceGranted", "Posting"]
    grant = out[0]
    assert isinstance(grant, d.AdvanceGranted)
    assert grant.amount_fen == 80_000
    assert grant.funded_by is d.FundedBy.TOWN_RESERVE
    assert grant.due_at == T0 + hours(25)  # R5: 24 h from the broker's stamp
    assert grant.rule == "R5+P3" and grant.figures["reserve_available_fen"] == SIZE
    assert town.s.reserve.available_fen == SIZE - 80_000
    assert town.s.reserve.held_fen == 80_000
    # the first record of the town opened its reserve in the ledger (R4)
    opening, hold = town.of(Posting)
    assert opening.kind == "reserve_funded" and opening.amount_fen == SIZE
    assert hold.memo == "R5: advance held on the town reserve"
    assert hold.kind == "advance_granted"


def test_the_advance_is_capped_for_a_light_case_and_the_rest_left_to_review() -> None:
    town = flooded()
    [grant, _] = town(urgent("case-1", 250_000))
    assert isinstance(grant, d.AdvanceGranted)
    assert grant.amount_fen == CAP
    assert grant.figures["requested_fen"] == 250_000


def test_payment_before_the_deadline_meets_it_and_settles_the_hold() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, at=T0))
    out = town(paid("case-1", 80_000, at=T0 + hours(3)))
    assert types(out) == ["ReliefPaid", "Posting", "DeadlineMet"]
    # an urgent advance paid: relief first, R5 (a payment under an approval is P2's)
    assert isinstance(out[0], d.ReliefPaid) and out[0].rule == "R5"
    assert [r.case_status for r in out if isinstance(r, d.Decision)] == [d.CaseStatus.PAID] * 2
    assert town.s.reserve.held_fen == 0 and town.s.reserve.paid_fen == 80_000
    assert town.open_case("case-1").status is CaseStatus.PAID
    later = town(tick(T0 + hours(48)))
    assert not [
        r
        for r in later
        if isinstance(r, d.DeadlineBreached | d.DeadlineWarned)
        and r.deadline is d.DeadlineKind.RELIEF_24H
    ]


def test_a_tick_past_the_deadline_breaches_it_once_after_one_warning() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, at=T0))
    assert town(tick(T0 + hours(19))) == []
    [warned] = town(tick(T0 + hours(20)))
    assert isinstance(warned, d.DeadlineWarned) and warned.deadline is d.DeadlineKind.RELIEF_24H
    assert town(tick(T0 + hours(21))) == []
    assert town(tick(T0 + hours(24))) == []  # 24 小时内: 24:00:00 itself is on time
    [breached] = town(tick(T0 + hours(24) + timedelta(minutes=1)))
    assert isinstance(breached, d.DeadlineBreached)
    assert breached.rule == "R5" and breached.due_at == T0 + hours(24)
    assert town(tick(T0 + hours(30))) == []
    # a late payment still settles the money but does not end the deadline again
    out = town(paid("case-1", 80_000, at=T0 + hours(31)))
    assert types(out) == ["ReliefPaid", "Posting"]  # the reader learns the case is paid


def test_a_payment_after_the_due_time_but_before_any_tick_is_a_breach() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, at=T0))
    out = town(paid("case-1", 80_000, at=T0 + hours(26)))
    assert types(out) == ["ReliefPaid", "Posting", "DeadlineBreached"]


def test_cancelling_voids_the_hold_and_the_deadlines() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, at=T0))
    out = town(cancelled("case-1", at=T0 + hours(2)))
    assert types(out) == ["AdvanceVoided", "Posting"]
    assert town.s.reserve.available_fen == SIZE and town.s.reserve.held_fen == 0
    assert town(tick(T0 + hours(200))) == []  # nothing left to breach
    # and the household may ask again (P6 counts grants, not cancelled ones)
    assert types(town(urgent("case-2", 50_000, at=T0 + hours(3)))) == ["AdvanceGranted", "Posting"]


# ---------------------------------------------------------------- R4: the town reserve


def test_a_grant_the_reserve_cannot_cover_is_escalated_to_the_county_fund() -> None:
    town = flooded()
    for n in range(50):  # 50 households x 1,000 yuan empties the 50,000-yuan reserve
        town(urgent(f"case-{n}", CAP, household=100 + n))
    assert town.s.reserve.available_fen == 0
    out = town(urgent("case-50", CAP, household=200))
    assert types(out) == ["AdvanceGranted", "EscalatedToCountyFund", "Posting"]
    grant, escalation, posting = out
    assert isinstance(grant, d.AdvanceGranted) and grant.funded_by is d.FundedBy.COUNTY_FUND
    assert isinstance(escalation, d.EscalatedToCountyFund) and escalation.available_fen == 0
    assert isinstance(posting, Posting) and posting.kind == "escalated_advance"
    # what finance reads in the ledger names the fund that holds it, and the rule
    assert posting.memo == "R4: advance escalated to the county fund"
    assert town.s.reserve.available_fen == 0  # never below zero
    assert town.s.county_held_fen == CAP
    # the county pays it when the town confirms
    assert types(town(paid("case-50", CAP, at=T0 + hours(2)))) == [
        "ReliefPaid",
        "Posting",
        "DeadlineMet",
    ]
    assert town.s.county_held_fen == 0 and town.s.county_paid_fen == CAP


def test_finance_is_alerted_once_when_the_reserve_falls_below_20_percent() -> None:
    town = flooded()
    lows = []
    for n in range(45):
        lows += [
            r for r in town(urgent(f"c{n}", CAP, household=n + 10)) if isinstance(r, d.ReserveLow)
        ]
    [low] = lows
    assert low.threshold_fen == SIZE // 5 and low.available_fen < SIZE // 5
    assert town.s.low_alerted
    # Cancelling advances brings the reserve back above the threshold: the alert clears
    # (and the state rebuilt from the decisions says so too: Town checks it every record).
    for n in range(44, 30, -1):
        town(cancelled(f"c{n}", at=T0 + hours(1)))
    assert not town.s.low_alerted
    lows = [r for r in town(urgent("c-again", CAP, household=99)) if isinstance(r, d.ReserveLow)]
    assert lows == []  # above the threshold: no alert


def test_the_smallest_threshold_still_alerts_and_none_never_does() -> None:
    """R4 + P11 at the edge: a reserve of 5 fen has a 1-fen threshold (20 %), and emptying
    it alerts; a reserve of 4 fen has none (20 % of it rounds to 0), and nothing alerts."""
    for size, threshold in ((5, 1), (4, 0)):
        town = Town(rules=rules_with_reserve(size))
        town(incident("flood-0720"))
        out = town(urgent("case-1", size))
        lows = [r for r in out if isinstance(r, d.ReserveLow)]
        assert town.s.reserve.available_fen == 0
        if threshold:
            [low] = lows
            assert low.threshold_fen == threshold and low.available_fen == 0
        else:
            assert lows == [] and not town.s.low_alerted


def test_replenishment_tops_up_to_the_size_and_never_above() -> None:
    town = flooded()
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    before = town.s
    [refused] = town(replenished(80_001, at=T0 + hours(2)))
    assert isinstance(refused, d.ReplenishmentRefused) and refused.shortfall_fen == 80_000
    assert town.s.reserve == before.reserve  # nothing changed
    out = town(replenished(80_000, at=T0 + hours(3)))
    assert types(out) == ["Posting"]
    assert town.s.reserve.available_fen == SIZE


def test_a_reserve_is_topped_up_in_parts_below_the_shortfall() -> None:
    """P11: finance may refill a reserve in several transfers; each below what is missing
    is booked, and only one that would pass the size is refused."""
    town = flooded()
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    for n, part in enumerate((30_000, 49_999, 1)):
        [booked] = town(replenished(part, at=T0 + hours(2 + n)))
        assert isinstance(booked, Posting) and booked.amount_fen == part
    assert town.s.reserve.available_fen == SIZE and town.s.reserve.replenished_fen == 80_000


# ---------------------------------------------------------------- refusals leave nothing changed


def test_a_second_grant_for_the_same_household_and_cause_is_refused_p6() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, household=1))
    before = town.snapshot()
    [refusal] = town(urgent("case-2", 30_000, household=1, at=T0 + hours(5)))
    assert isinstance(refusal, d.AdvanceRefused) and refusal.reason is d.RefusalReason.DUPLICATE
    assert refusal.rule == "P6" and refusal.case_status is d.CaseStatus.REFUSED
    assert town.snapshot() == before
    mark = town.book().finished_case("case-2")  # the same request again changes nothing
    assert mark is not None and mark.status is d.CaseStatus.REFUSED


def test_requests_for_an_unknown_or_closed_incident_are_refused() -> None:
    town = flooded()
    [refusal] = town(urgent("case-1", inc="no-such-incident"))
    assert isinstance(refusal, d.AdvanceRefused)
    assert refusal.reason is d.RefusalReason.UNKNOWN_INCIDENT
    assert town.s.reserve.available_fen == SIZE and not town.cases()


def test_a_request_of_an_unknown_town_is_a_dead_letter_and_opens_nothing() -> None:
    town = Town(code="370321999")
    [dead] = town(urgent("case-1", town="370321999", inc=None))
    assert isinstance(dead, RejectedRecord) and "unknown town" in dead.reason
    assert town.state is None


def test_any_record_of_a_town_the_county_does_not_know_is_a_dead_letter_at_the_town() -> None:
    """The county's configuration names its towns. A record of another town that reaches
    the processor itself - the bureau's incident, a request written before the claims
    stage - is a dead letter saying so, never a crash, and opens no town."""
    unknown = "370321999"
    town = Town(code=unknown, with_claims=False)
    for record in (incident("flood-0720", town=unknown), urgent("case-1", town=unknown, inc=None)):
        [dead] = town(record)
        assert isinstance(dead, RejectedRecord)
        assert f"unknown town {unknown!r}: not in the county's configuration" in dead.reason
    assert town.store == {}


def test_commands_that_do_not_fit_the_case_are_dead_letters_with_reasons() -> None:
    town = flooded()
    town(urgent("case-1", 80_000))
    before = town.snapshot()
    [dead] = town(paid("case-1", 90_000, at=T0 + hours(1)))
    assert isinstance(dead, RejectedRecord) and "above the 80000 fen granted" in dead.reason
    [dead] = town(paid("case-9", 10_000, at=T0 + hours(1)))
    assert isinstance(dead, RejectedRecord) and "no open case" in dead.reason
    assert town.snapshot() == before


def test_a_redelivered_request_changes_nothing_and_emits_nothing() -> None:
    town = flooded()
    request = urgent("case-1", 80_000)
    town(request)
    before = town.snapshot()
    assert town(request) == []
    assert town.snapshot() == before


def test_another_request_under_a_registered_case_id_is_refused_whatever_its_event_id() -> None:
    """A case id belongs to its first request: only that very request again is a
    redelivery. Any other request under the id is refused and changes nothing, whether
    its event id sorts before or after the first one's, and whether the case is still
    open or has finished (a cancelled case keeps its id for a while)."""
    town = flooded()
    earlier = urgent("case-1", 30_000, household=2)  # built first: the smaller event id
    first = urgent("case-1", 80_000)
    town(first)
    before = town.snapshot()
    for other in (earlier, urgent("case-1", 20_000, household=2)):
        [dead] = town(other)
        assert isinstance(dead, RejectedRecord) and "already registered" in dead.reason
    assert town.snapshot() == before
    town(cancelled("case-1", at=T0 + hours(1)))
    finished = town.snapshot()
    for other in (earlier, urgent("case-1", 20_000, household=2)):
        [dead] = town(other)
        assert isinstance(dead, RejectedRecord) and "already registered" in dead.reason
    assert town(first) == []  # the first request again: already decided
    assert town.snapshot() == finished


def test_a_record_is_decided_only_in_the_book_of_its_own_town() -> None:
    """A worker hands each record to its own town's book: a record of one town decided in
    the book of another is a bug (RuleBroken) that writes nothing there, whichever way the
    two towns' codes sort (Qifeng's sorts before Tianzhuang's)."""
    county = Town()
    county(incident("flood-0720", town=QIFENG))
    county(incident("flood-0720", town=TIANZHUANG))
    for own, other in ((QIFENG, TIANZHUANG), (TIANZHUANG, QIFENG)):
        book = Book(other, county.store.get)
        with pytest.raises(RuleBroken, match=f"town {own} decided in the book of {other}"):
            decide(book, urgent(f"case-{own}", 80_000, town=own, at=T0 + hours(1)), RULES)
        assert book.changes() == []


def test_a_town_holds_open_cases_up_to_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state stays sized by what is open: a town holds a bounded number of open cases
    (the limit is lowered here to 2), and a request that would open one more than the
    limit is a dead letter that changes nothing; a case that ends makes room."""
    monkeypatch.setattr(decide_module, "MAX_OPEN_CASES_PER_TOWN", 2)
    town = flooded()
    town(urgent("case-1", 80_000, household=1))
    [awaiting] = town(expenditure("ill-1", 500_000, i.ReliefCategory.SERIOUS_ILLNESS))
    assert isinstance(awaiting, d.ApprovalRequired)  # open too, awaiting the county
    assert town.s.counts.open_cases == 2
    assert "already has 2 open cases" in town.refused(urgent("case-2", 80_000, household=2))
    town(cancelled("case-1", at=T0 + hours(1)))
    assert town.s.counts.open_cases == 1
    [grant, _] = town(urgent("case-2", 80_000, household=2, at=T0 + hours(2)))
    assert isinstance(grant, d.AdvanceGranted)
    assert town.s.counts.open_cases == 2


def test_a_towns_time_moves_on_with_its_records_and_never_back() -> None:
    """docs/design.md "one clock for every deadline": a town's time is the latest broker
    stamp it has seen. A record stamped later moves it on; one stamped earlier (a request
    the claims stage held back keeps its own stamp) leaves it, and so does a tick older
    than it, which is judged at the town's time: R5's 24 hours have passed for it too. A
    record at the town's own time that changes nothing writes nothing."""
    town = flooded()
    town(urgent("case-1", 80_000))  # due T0 + 24 h
    later = urgent("case-2", 80_000, household=2, at=T0 + hours(25))
    town(later)
    assert town.s.clock == T0 + hours(25)
    town(urgent("case-3", 80_000, household=3, at=T0 + hours(2)))  # due T0 + 26 h
    assert town.s.clock == T0 + hours(25)
    out = town(tick(T0 + hours(3)))
    breached = [r for r in out if isinstance(r, d.DeadlineBreached)]
    assert [r.correlation_id for r in breached] == ["case-1"]
    assert town.s.clock == T0 + hours(25)
    book = Book(QIFENG, town.store.get)
    assert decide(book, later, RULES).records == []  # delivered again: already decided
    assert book.changes() == []


def test_the_same_records_always_give_the_same_bytes() -> None:
    records = [incident("flood-0720"), urgent("case-1", 80_000), tick(T0 + hours(30))]
    a, b = Town(), Town()
    a.run(records)
    b.run(records)
    assert [o.value for o in a.outputs] == [o.value for o in b.outputs]


# ---------------------------------------------------------------- P1: paperwork


def test_paperwork_in_five_days_is_met_and_late_paperwork_breached() -> None:
    town = flooded()
    town(urgent("case-1", 80_000, household=1))
    town(urgent("case-2", 80_000, household=2))
    [met] = town(paperwork("case-1", at=T0 + timedelta(days=4)))
    assert isinstance(met, d.DeadlineMet) and met.deadline is d.DeadlineKind.PAPERWORK_5D
    assert met.rule == "P1"
    ended = town(tick(T0 + timedelta(days=6)))
    paperwork_breaches = [
        r
        for r in ended
        if isinstance(r, d.DeadlineBreached) and r.deadline is d.DeadlineKind.PAPERWORK_5D
    ]
    assert [r.correlation_id for r in paperwork_breaches] == ["case-2"]


# ---------------------------------------------------------------- R3, R6, P2: expenditure-type


def test_illness_relief_within_the_band_is_approved_by_the_town_or_the_county() -> None:
    town = flooded()
    minimum = 92_400  # P4: 924 yuan a month in force in 2026
    [approved, posting] = town(
        expenditure("ill-1", 3 * minimum + 100, i.ReliefCategory.SERIOUS_ILLNESS, actor=TOWN)
    )
    assert isinstance(approved, d.ReliefApproved)
    [relief_paid, _] = town(paid("ill-1", 3 * minimum + 100, at=T0 + hours(1)))
    # paid under the approval (P2), with no 24-hour deadline to meet
    assert isinstance(relief_paid, d.ReliefPaid) and relief_paid.rule == "P2"
    # section 八: the town registered it, and 2,773 yuan < 3,000 is its to approve (P2)
    assert approved.approver_level is d.ApproverLevel.TOWN and approved.decided_by == TOWN
    assert isinstance(posting, Posting)
    [required] = town(expenditure("ill-2", 500_000, i.ReliefCategory.SERIOUS_ILLNESS, household=8))
    assert isinstance(required, d.ApprovalRequired) and required.rule == "R3+P2"
    assert required.approver_level is d.ApproverLevel.COUNTY
    assert town.open_case("ill-2").status is CaseStatus.AWAITING_APPROVAL
    [approved, _] = town(
        reviewed("ill-2", T0 + hours(4), i.ReviewOutcome.CONFIRMED, approved_fen=500_000)
    )
    assert isinstance(approved, d.ReliefApproved)
    assert approved.approver_level is d.ApproverLevel.COUNTY and approved.decided_by == CIVIL


def test_below_the_floor_is_raised_to_it_and_above_the_cap_goes_to_deliberation() -> None:
    town = flooded()
    minimum = 92_400
    [approved, _] = town(expenditure("edu-1", 100_000, i.ReliefCategory.EDUCATION))
    assert isinstance(approved, d.ReliefApproved) and approved.amount_fen == 3 * minimum
    [required] = town(
        expenditure("edu-2", 6 * minimum + 1, i.ReliefCategory.EDUCATION, household=9)
    )
    assert isinstance(required, d.DeliberationRequired)
    assert required.cap_fen == 6 * minimum and required.rule == "R3+R6"
    [rejected] = town(deliberated("edu-2", T0 + hours(2), refused=True))
    assert isinstance(rejected, d.ReliefRejected) and rejected.rule == "P9"
    [required] = town(
        expenditure("ill-3", 12 * minimum + 1, i.ReliefCategory.SERIOUS_ILLNESS, household=10)
    )
    out = town(deliberated("ill-3", T0 + hours(3), approved_fen=1_500_000))
    assert types(out) == ["ReliefApproved", "Posting"]
    assert isinstance(out[0], d.ReliefApproved) and out[0].rule == "R6"


# ---------------------------------------------------------------- review, P8, P11


def test_review_confirms_and_settlement_replenishes_the_reserve() -> None:
    town = flooded()
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(2)))
    out = town(
        reviewed("case-1", T0 + timedelta(days=3), i.ReviewOutcome.CONFIRMED, approved_fen=80_000)
    )
    assert types(out) == ["ReliefApproved", "Posting"]
    assert town.s.reserve.available_fen == SIZE and town.s.reserve.replenished_fen == 80_000


def test_fraud_is_recovered_with_a_fine_p8() -> None:
    town = flooded()
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(2)))
    out = town(
        reviewed(
            "case-1",
            T0 + timedelta(days=3),
            i.ReviewOutcome.FRAUD,
            approved_fen=0,
            fine_multiple=2,
            reasons="虚报灾情",
        )
    )
    claim = out[0]
    assert isinstance(claim, d.RecoveryClaimed)
    assert (claim.amount_fen, claim.fine_fen) == (80_000, 160_000)
    assert town.balances()["recovery_receivable:370321101"] == 240_000


def test_an_unpaid_advance_cannot_be_reviewed_yet() -> None:
    town = flooded()
    town(urgent("case-1", 80_000))
    [dead] = town(reviewed("case-1", T0 + hours(1), i.ReviewOutcome.CONFIRMED, approved_fen=80_000))
    assert isinstance(dead, RejectedRecord)


# ---------------------------------------------------------------- P5, R7


def test_transitional_relief_falls_due_monthly_is_paid_by_the_town_and_can_be_extended() -> None:
    town = flooded()
    # 1 person x 20 yuan x 30 days x 3 months = 1,800 yuan: within the town's authority
    out = town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    assert types(out) == ["ReliefApproved", "InstalmentDue", "Posting"]
    approved, due = out[0], out[1]
    assert isinstance(approved, d.ReliefApproved) and approved.decided_by == TOWN
    assert approved.approver_level is d.ApproverLevel.TOWN
    assert isinstance(due, d.InstalmentDue) and due.instalment_no == 1
    per_month = due.amount_fen
    assert per_month == town.open_case("tr-1").instalment_fen == 60_000
    # held on the county fund, not paid: nothing is booked as paid until the town pays
    assert town.s.county_held_fen == per_month and not town.of(d.TransitionalInstalmentPaid)
    out = town(paid("tr-1", per_month, at=T0 + hours(5)))
    assert types(out) == ["TransitionalInstalmentPaid", "Posting"]
    assert isinstance(out[0], d.TransitionalInstalmentPaid) and out[0].decided_by == TOWN
    assert town.s.county_held_fen == 0 and town.s.county_paid_fen == per_month
    [dead] = town(paid("tr-1", per_month, at=T0 + hours(6)))  # nothing more is due yet
    assert isinstance(dead, RejectedRecord)
    town(tick(T0 + timedelta(days=61)))
    assert len(town.of(d.InstalmentDue)) == 3
    for n in (2, 3):
        town(paid("tr-1", per_month, at=T0 + timedelta(days=61, hours=n)))
    town(tick(T0 + timedelta(days=200)))
    assert len(town.of(d.InstalmentDue)) == 3  # 3 months, then it stops
    ext = i.TransitionalReliefExtended(
        **env(QIFENG, "tr-1", T0 + timedelta(days=201), CIVIL),
        extended_to_months=6,
        reason="住房尚未修复",
    )
    [extended, *_] = town(ext)
    assert isinstance(extended, d.ReliefApproved) and extended.decided_by == CIVIL
    town(tick(T0 + timedelta(days=400)))
    assert len(town.of(d.InstalmentDue)) == 6
    assert town.s.county_held_fen == 3 * per_month  # due, and held until the town pays


def _extended(case: str, months: int, at: datetime) -> i.TransitionalReliefExtended:
    return i.TransitionalReliefExtended(
        **env(QIFENG, case, at, CIVIL), extended_to_months=months, reason="住房尚未修复"
    )


def test_an_extension_goes_up_to_the_limit_and_resumes_a_month_after_the_last_instalment() -> None:
    """P5: county civil affairs may extend a schedule to more months than it has, up to
    the county's limit (here set to 5); a schedule that had ended resumes a month after
    its last instalment, and every instalment missed meanwhile falls due at once, each
    with its own due time. Only transitional living relief is extended."""
    policy = RULES.policy.model_copy(update={"transitional_max_months": 5})
    town = Town(rules=Rules(policy=policy, county=RULES.county))
    town(incident("flood-0720"))
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    town(tick(T0 + timedelta(days=61)))  # instalments 1-3: T0, +30 d, +60 d
    assert [r.due_at for r in town.of(d.InstalmentDue)] == [
        T0 + timedelta(days=n) for n in (0, 30, 60)
    ]
    late = T0 + timedelta(days=150)
    assert "above the current 3" in town.refused(_extended("tr-1", 3, late))
    assert "above the current 3" in town.refused(_extended("tr-1", 2, late))
    assert "at most 5" in town.refused(_extended("tr-1", 6, late))
    out = town(_extended("tr-1", 4, late))
    assert isinstance(out[0], d.ReliefApproved) and out[0].amount_fen == 4 * 60_000
    # the 4th a month after the 3rd (T0 + 90 d): past, so due at once
    assert [(r.instalment_no, r.due_at) for r in out if isinstance(r, d.InstalmentDue)] == [
        (4, T0 + timedelta(days=90))
    ]
    out = town(_extended("tr-1", 5, late + hours(1)))  # the limit itself
    assert [(r.instalment_no, r.due_at) for r in out if isinstance(r, d.InstalmentDue)] == [
        (5, T0 + timedelta(days=120))
    ]
    town(urgent("case-1", 80_000, household=2))
    assert "only transitional" in town.refused(_extended("case-1", 5, late))


def test_an_ended_schedule_extended_before_its_next_month_waits_for_it() -> None:
    """P5: extended ten days after its last instalment, a schedule resumes a month after
    that instalment, not at once; the state rebuilt from the decisions says the same."""
    policy = RULES.policy.model_copy(update={"transitional_max_months": 5})
    town = Town(rules=Rules(policy=policy, county=RULES.county))
    town(incident("flood-0720"))
    town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING))
    town(tick(T0 + timedelta(days=61)))  # instalments 1-3: T0, +30 d, +60 d; then ended
    out = town(_extended("tr-1", 4, T0 + timedelta(days=70)))
    assert isinstance(out[0], d.ReliefApproved) and not town.of(d.InstalmentDue)[3:]
    assert town.open_case("tr-1").next_instalment_at == T0 + timedelta(days=90)
    town(tick(T0 + timedelta(days=89)))
    assert len(town.of(d.InstalmentDue)) == 3
    town(tick(T0 + timedelta(days=90)))
    assert [r.due_at for r in town.of(d.InstalmentDue)][3:] == [T0 + timedelta(days=90)]


def test_a_schedule_of_exactly_the_town_limit_is_the_countys_to_approve() -> None:
    """P2: towns approve *below* the limit. 2 persons x 20 yuan x 30 days x 3 months is
    3,600 yuan: with the limit set there it goes to the county; one fen higher, the town
    approves it itself."""
    for limit, approver in ((360_000, None), (360_001, d.ApproverLevel.TOWN)):
        policy = RULES.policy.model_copy(update={"town_approval_limit_fen": limit})
        town = Town(rules=Rules(policy=policy, county=RULES.county))
        town(incident("flood-0720"))
        out = town(urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING, persons=2))
        if approver is None:
            [required] = out
            assert isinstance(required, d.ApprovalRequired) and required.amount_fen == limit
        else:
            assert isinstance(out[0], d.ReliefApproved) and out[0].approver_level is approver


def test_a_larger_transitional_schedule_registered_by_a_town_is_approved_by_the_county() -> None:
    town = flooded()
    # 3 persons: 5,400 yuan over 3 months, above the town's 3,000 (P2)
    [required] = town(
        urgent("tr-1", 10_000, category=i.ReliefCategory.TRANSITIONAL_LIVING, persons=3)
    )
    assert isinstance(required, d.ApprovalRequired) and required.amount_fen == 540_000
    out = town(reviewed("tr-1", T0 + hours(3), i.ReviewOutcome.CONFIRMED, approved_fen=540_000))
    assert types(out) == ["ReliefApproved", "InstalmentDue", "Posting"]
    assert isinstance(out[0], d.ReliefApproved) and out[0].decided_by == CIVIL


def test_a_vagrant_gets_interim_relief_here_then_is_referred_to_the_county_of_origin_r7() -> None:
    town = flooded()
    out = town(urgent("v-1", 80_000, inc=None, vagrant=True, origin_county="河北省某县"))
    assert types(out) == ["AdvanceGranted", "Posting", "ReferredToOriginCounty"]
    grant, _, referral = out
    assert isinstance(grant, d.AdvanceGranted) and grant.rule == "R5+R7"
    assert grant.amount_fen == 50_000  # food, lodging, a ticket home: the R7 interim cap
    assert isinstance(referral, d.ReferredToOriginCounty) and referral.rule == "R7"
    assert town.s.reserve.available_fen == SIZE - 50_000
    assert town.open_case("v-1").status is CaseStatus.ADVANCED  # paid and closed here
