"""The casebook's fold: where a case stands and its deadlines, as the decisions state
them — never derived again from a rule."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decisions import (
    ApproverLevel,
    CaseStatus,
    DeadlineKind,
    Decision,
    RecoveryClaimed,
    ReliefApproved,
    TransitionalInstalmentPaid,
)
from schemas.envelope import derived_id
from services.casebook.domain.fold import (
    CaseKey,
    CaseRow,
    DeadlineKey,
    DeadlineRow,
    DeadlineState,
    fold,
)
from tests.unit.casebook.decisions import (
    PROCESSOR,
    QIFENG,
    T0,
    TIANZHUANG,
    command_id,
    ended,
    escalated,
    granted,
    paid,
    refused,
    reserve_low,
    voided,
    warned,
)

R5, P1 = DeadlineKind.RELIEF_24H, DeadlineKind.PAPERWORK_5D


class Book:
    """The rows as a store would keep them: fold one batch after another."""

    def __init__(self) -> None:
        self.cases: dict[CaseKey, CaseRow] = {}
        self.deadlines: dict[DeadlineKey, DeadlineRow] = {}

    def apply(self, decisions: Sequence[Decision]) -> None:
        keys = {(d.town, d.correlation_id) for d in decisions}
        folded = fold(
            {k: v for k, v in self.cases.items() if k in keys},
            {k: v for k, v in self.deadlines.items() if k[:2] in keys},
            decisions,
        )
        self.cases.update(folded.cases)
        self.deadlines.update(folded.deadlines)

    def state(self, case: str, kind: DeadlineKind, town: str = QIFENG) -> DeadlineState:
        return self.deadlines[(town, case, kind.value)].state


def test_a_grant_opens_both_deadlines_due_as_it_states_them() -> None:
    book = Book()
    grant = granted("case-1", 80_000)
    book.apply([grant])
    row = book.cases[(QIFENG, "case-1")]
    assert (row.status, row.granted_fen, row.funded_by, row.paid_fen) == (
        "advanced",
        80_000,
        "town_reserve",
        0,
    )
    # what the request registered, as the first decision carries it
    assert (row.category, row.urgency, row.requested_fen, row.incident_id) == (
        "emergency",
        "urgent",
        80_001,
        "flood-0720",
    )
    relief = book.deadlines[(QIFENG, "case-1", "relief_24h")]
    paperwork = book.deadlines[(QIFENG, "case-1", "paperwork_5d")]
    # the grant's own figures (23 h and 4 days 1 h here), not 24 h and 5 days again
    assert relief.due_at == grant.due_at == T0 + timedelta(hours=23)
    assert paperwork.due_at == grant.paperwork_due_at == T0 + timedelta(days=4, hours=1)
    assert relief.state is paperwork.state is DeadlineState.OPEN


def test_a_grant_without_paperwork_due_opens_only_the_24_hours() -> None:
    book = Book()
    book.apply([granted("old", paperwork=False)])
    assert [k[2] for k in book.deadlines] == ["relief_24h"]


def test_payment_in_time_meets_the_24_hours_and_the_case_is_paid() -> None:
    book = Book()
    grant = granted("case-1", 80_000)
    pay = command_id()
    book.apply([grant])
    book.apply(
        [
            paid("case-1", 60_000, T0 + timedelta(hours=2), cause=pay),
            ended("case-1", R5, grant.due_at, T0 + timedelta(hours=2), cause=pay),
        ]
    )
    row = book.cases[(QIFENG, "case-1")]
    assert (row.status, row.paid_fen, row.decisions) == ("paid", 60_000, 3)
    assert book.state("case-1", R5) is DeadlineState.MET
    assert book.state("case-1", P1) is DeadlineState.OPEN  # the paperwork is still due


def test_warned_then_breached_and_a_second_end_does_not_change_the_first() -> None:
    book = Book()
    grant = granted("case-1")
    book.apply([grant, warned("case-1", R5, grant.due_at, T0 + timedelta(hours=20))])
    assert book.state("case-1", R5) is DeadlineState.WARNED
    unpaid = CaseStatus.ADVANCED
    breach = ended("case-1", R5, grant.due_at, T0 + timedelta(hours=23), met=False, status=unpaid)
    book.apply([breach])
    assert book.state("case-1", R5) is DeadlineState.BREACHED
    assert book.cases[(QIFENG, "case-1")].status == "advanced"  # still unpaid, as it says
    before = dict(book.deadlines)
    book.apply([ended("case-1", R5, grant.due_at, T0 + timedelta(hours=30), status=unpaid)])
    assert book.deadlines == before  # a deadline ends once: the first end stands


def test_a_cancelled_advance_voids_what_is_open_but_keeps_what_ended() -> None:
    book = Book()
    grant = granted("case-1")
    book.apply([grant, ended("case-1", P1, grant.paperwork_due_at or T0, T0 + timedelta(hours=1))])
    book.apply([voided("case-1", 80_000, T0 + timedelta(hours=3))])
    assert book.state("case-1", R5) is DeadlineState.VOID
    assert book.state("case-1", P1) is DeadlineState.MET
    assert book.cases[(QIFENG, "case-1")].status == "cancelled"


def test_escalated_advance_is_funded_by_the_county() -> None:
    book = Book()
    cause = command_id()
    book.apply(
        [
            granted("case-big", 90_000, county=True, cause=cause),
            escalated("case-big", 90_000, T0, cause),
        ]
    )
    row = book.cases[(QIFENG, "case-big")]
    assert (row.status, row.funded_by) == ("escalated", "county_fund")


def test_a_town_decision_names_no_case_status_and_makes_no_case() -> None:
    book = Book()
    cause = command_id()
    book.apply([reserve_low("reserve:370321101", T0, cause)])
    assert book.cases == {} and book.deadlines == {}
    # under an existing case it counts as a decision but leaves the status as it was
    book.apply([granted("case-1", cause=cause), reserve_low("case-1", T0, cause)])
    row = book.cases[(QIFENG, "case-1")]
    assert (row.status, row.decisions, row.last_type) == ("advanced", 2, "ReserveLow")


def test_a_refusal_is_a_case_that_ended_at_once() -> None:
    book = Book()
    book.apply([refused("case-dup", T0)])
    row = book.cases[(QIFENG, "case-dup")]
    assert (row.status, row.granted_fen) == ("refused", 0)
    assert book.deadlines == {}


def test_the_same_case_id_in_two_towns_is_two_cases() -> None:
    book = Book()
    book.apply(
        [
            granted("case-1", 80_000, town=QIFENG),
            granted("case-1", 30_000, town=TIANZHUANG),
            paid("case-1", 30_000, T0 + timedelta(hours=1), town=TIANZHUANG),
        ]
    )
    assert book.cases[(QIFENG, "case-1")].status == "advanced"
    assert book.cases[(TIANZHUANG, "case-1")].status == "paid"
    assert book.cases[(QIFENG, "case-1")].paid_fen == 0


def _story() -> list[Decision]:
    out: list[Decision] = []
    for n in range(6):
        case = f"case-{n}"
        grant = granted(case, 10_000 * (n + 1), at=T0 + timedelta(minutes=n))
        out.append(grant)
        if n % 3 == 0:
            out.append(paid(case, 10_000, T0 + timedelta(hours=1)))
            out.append(ended(case, R5, grant.due_at, T0 + timedelta(hours=1)))
        elif n % 3 == 1:
            out.append(voided(case, 10_000, T0 + timedelta(hours=2)))
        else:
            out.append(ended(case, R5, grant.due_at, T0 + timedelta(hours=24), met=False))
    return out


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=18), max_size=6))
def test_batches_cut_anywhere_fold_to_the_same_rows(cuts: list[int]) -> None:
    story = _story()
    whole = Book()
    whole.apply(story)
    pieces = Book()
    bounds = sorted({0, len(story), *(c for c in cuts if c < len(story))})
    for start, end in itertools.pairwise(bounds):
        pieces.apply(story[start:end])
    assert pieces.cases == whole.cases and pieces.deadlines == whole.deadlines


# ---------------------------------------------------------------- amounts and ends as stated


def _decision_env(case: str, at: datetime, kind: str) -> dict[str, Any]:
    return {
        "event_id": derived_id(command_id(), kind),
        "occurred_at": at,
        "recorded_at": at,
        "town": QIFENG,
        "actor": PROCESSOR,
        "correlation_id": case,
        "causation_id": command_id(),
    }


def _approved(case: str, amount_fen: int, at: datetime) -> ReliefApproved:
    return ReliefApproved(
        **_decision_env(case, at, "approved"),
        rule="P2",
        amount_fen=amount_fen,
        approver_level=ApproverLevel.COUNTY,
        case_status=CaseStatus.APPROVED,
    )


def _instalment(case: str, n: int, amount_fen: int, at: datetime) -> TransitionalInstalmentPaid:
    return TransitionalInstalmentPaid(
        **_decision_env(case, at, f"instalment-{n}"),
        rule="P5",
        instalment_no=n,
        amount_fen=amount_fen,
        case_status=CaseStatus.TRANSITIONAL,
    )


def _recovery(case: str, amount_fen: int, fine_fen: int, at: datetime) -> RecoveryClaimed:
    return RecoveryClaimed(
        **_decision_env(case, at, "recovery"),
        rule="P8",
        amount_fen=amount_fen,
        fine_fen=fine_fen,
        case_status=CaseStatus.REVIEWED,
    )


def test_p7_the_first_approval_dates_the_case_on_the_list_a_later_one_moves_its_amount() -> None:
    book = Book()
    first = T0 + timedelta(days=11, hours=17)  # 2026-07-31 17:00 UTC: 1 August in CST
    book.apply([_approved("exp-1", 500_000, first)])
    row = book.cases[(QIFENG, "exp-1")]
    assert (row.approved_at, row.approved_period, row.approver_level) == (
        first,
        "2026-08",
        "county",
    )
    assert (row.granted_fen, row.approved_fen, row.status) == (500_000, 500_000, "approved")
    book.apply([_approved("exp-1", 700_000, first + timedelta(days=40))])  # topped up
    row = book.cases[(QIFENG, "exp-1")]
    assert (row.approved_at, row.approved_period) == (first, "2026-08")
    assert (row.granted_fen, row.approved_fen, row.decisions) == (700_000, 700_000, 2)


def test_p5_each_transitional_instalment_paid_adds_to_what_was_paid() -> None:
    book = Book()
    book.apply([_approved("tr-1", 270_000, T0)])
    book.apply([_instalment("tr-1", 1, 90_000, T0 + timedelta(days=1))])
    assert book.cases[(QIFENG, "tr-1")].paid_fen == 90_000
    book.apply(
        [
            _instalment("tr-1", 2, 90_000, T0 + timedelta(days=31)),
            _instalment("tr-1", 3, 45_000, T0 + timedelta(days=61)),
        ]
    )
    row = book.cases[(QIFENG, "tr-1")]
    assert (row.paid_fen, row.status) == (225_000, "transitional")
    assert type(row.paid_fen) is int


def test_p8_a_recovery_claims_back_the_amount_and_its_fine_and_claims_add_up() -> None:
    book = Book()
    book.apply([granted("case-1", 80_000)])
    assert book.cases[(QIFENG, "case-1")].recovery_fen == 0  # nothing claimed back yet
    book.apply([_recovery("case-1", 80_000, 160_000, T0 + timedelta(days=30))])  # fraud: 2 x
    assert book.cases[(QIFENG, "case-1")].recovery_fen == 240_000
    book.apply([_recovery("case-1", 20_000, 0, T0 + timedelta(days=31))])  # ineligible: no fine
    row = book.cases[(QIFENG, "case-1")]
    assert (row.recovery_fen, row.status) == (260_000, "reviewed")
    assert type(row.recovery_fen) is int


def test_a_warning_moves_only_an_open_deadline_and_a_second_one_writes_nothing() -> None:
    grant = granted("case-1")
    warning = warned("case-1", R5, grant.due_at, T0 + timedelta(hours=20))
    once = fold({}, {}, [grant, warning])
    assert once.deadlines[(QIFENG, "case-1", R5.value)].state is DeadlineState.WARNED
    again = fold(once.cases, once.deadlines, [warned("case-1", R5, grant.due_at, T0)])
    assert again.deadlines == {}  # warned already: not written again
    for end in (
        ended("case-1", R5, grant.due_at, T0 + timedelta(hours=2)),
        ended("case-1", R5, grant.due_at, T0 + timedelta(hours=23), met=False),
        voided("case-1", 80_000, T0 + timedelta(hours=2)),
    ):
        closed = fold({}, {}, [grant, end])
        late = fold(closed.cases, closed.deadlines, [warning])
        assert late.deadlines == {}, end.type  # an ended deadline is never warned


def test_a_warning_of_a_deadline_whose_grant_was_never_read_writes_no_deadline() -> None:
    # a topic that starts later: the grant is not in the casebook
    folded = fold(
        {}, {}, [warned("case-1", R5, T0 + timedelta(hours=23), T0 + timedelta(hours=20))]
    )
    assert folded.deadlines == {}
    assert folded.cases[(QIFENG, "case-1")].status == "advanced"


def test_an_end_of_a_deadline_whose_grant_was_never_read_is_written_as_it_states_it() -> None:
    due = T0 + timedelta(hours=23)
    end = ended("case-1", R5, due, T0 + timedelta(hours=25), met=False)
    folded = fold({}, {}, [end])
    row = folded.deadlines[(QIFENG, "case-1", R5.value)]
    assert (row.state, row.due_at, row.opened_by, row.closed_by) == (
        DeadlineState.BREACHED,
        due,
        str(end.event_id),
        str(end.event_id),
    )
    # and it ends once: a later end of it changes nothing
    later = fold(
        folded.cases, folded.deadlines, [ended("case-1", R5, due, T0 + timedelta(hours=26))]
    )
    assert later.deadlines == {}


def test_a_case_row_is_keyed_by_its_town_and_case_id() -> None:
    folded = fold(
        {},
        {},
        [granted("case-1", town=QIFENG), granted("case-1", town=TIANZHUANG)],
    )
    assert {k: row.key for k, row in folded.cases.items()} == {
        (QIFENG, "case-1"): (QIFENG, "case-1"),
        (TIANZHUANG, "case-1"): (TIANZHUANG, "case-1"),
    }
    assert all(k == row.key for k, row in folded.deadlines.items())
