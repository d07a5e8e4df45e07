"""The casebook's fold: where a case stands and its deadlines, as the decisions state
them — never derived again from a rule."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decisions import CaseStatus, DeadlineKind, Decision
from services.casebook.domain.fold import (
    CaseKey,
    CaseRow,
    DeadlineKey,
    DeadlineRow,
    DeadlineState,
    fold,
)
from tests.unit.casebook.decisions import (
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
