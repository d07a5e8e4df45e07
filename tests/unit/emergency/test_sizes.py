"""Every stored value has an upper size, far below Kafka's 1 MB record limit.

Each model is filled to the limits its fields allow and measured as the worker stores it
(JSON); then a flood brings 5,000 cases to one town and the largest stored value must
not grow with them (state is sized by what is open, never by history).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.decisions import DeadlineWarned
from schemas.envelope import MAX_ID_TEXT
from services.emergency.adapters.faust_app import JOURNAL_PAGE_BYTES, journal_pages
from services.emergency.domain.book import MAX_REF, WHEEL_PAGE, Book, Page, WheelHead, minute_of
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.reserve import Reserve
from services.emergency.domain.state import (
    MAX_CAUSE_KEY,
    MAX_VALUE_BYTES,
    AppliedMark,
    Case,
    CaseMark,
    CaseStatus,
    Counts,
    GrantMark,
    IncidentMark,
    TownState,
)
from tests.unit.emergency.builders import T0, Town, incident, tick, urgent

KAFKA_RECORD_LIMIT = 1_000_000
BIG = 10**15  # money and counters far above any real figure
AT = datetime(2026, 7, 20, 23, 59, 59, 999_999, tzinfo=UTC)


def size(value: Any) -> int:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return len(json.dumps(value, ensure_ascii=False).encode())


def deadline() -> Deadline:
    return Deadline(kind="paperwork_5d", due_at=AT, warn_at=AT, state=DeadlineState.BREACHED)


def test_the_largest_case_fits() -> None:
    case = Case(
        case_id="x" * MAX_ID_TEXT,
        request_id="0" * 36,
        town="9" * 12,
        household_ref="h" * MAX_ID_TEXT,
        category="c" * 32,
        urgency="u" * 32,
        cause_key="k" * MAX_CAUSE_KEY,
        requested_fen=BIG,
        granted_fen=BIG,
        paid_fen=BIG,
        funded_by="f" * 32,
        status=CaseStatus.AWAITING_APPROVAL,
        received_at=AT,
        relief_deadline=deadline(),
        paperwork_deadline=deadline(),
        instalments_total=BIG,
        instalments_paid=BIG,
        next_instalment_at=AT,
        instalment_fen=BIG,
        schedule_ended_at=AT,
    )
    assert size(case) <= MAX_VALUE_BYTES // 8


def test_the_largest_town_and_marks_fit() -> None:
    town = TownState(
        town="9" * 12,
        reserve=Reserve(size_fen=BIG, available_fen=BIG),
        opened=True,
        county_held_fen=BIG,
        county_paid_fen=BIG,
        clock=AT,
        low_alerted=True,
        counts=Counts(**dict.fromkeys(Counts.model_fields, BIG)),
        open_incidents=BIG,
        wheel_minute=BIG,
    )
    assert size(town) <= MAX_VALUE_BYTES // 8
    for mark in (
        CaseMark(request_id="0" * 36, status=CaseStatus.AWAITING_APPROVAL, finished_at=AT),
        GrantMark(case_id="x" * MAX_ID_TEXT, granted_at=AT),
        IncidentMark(status="closed", closed_at=AT),
        AppliedMark(applied_at=AT),
        WheelHead(pages=100_000),
    ):
        assert size(mark) <= 512, type(mark).__name__


def test_a_full_wheel_page_fits() -> None:
    # pages already stored hold up to 100 references: a smaller page would refuse them
    # on reading (a crash loop after an upgrade), a larger one could outgrow the limit
    assert WHEEL_PAGE == 100
    longest_ref = "g:" + "k" * MAX_CAUSE_KEY
    page = Page(refs=tuple(f"{longest_ref}{n:04d}"[-len(longest_ref) :] for n in range(WHEEL_PAGE)))
    assert size(page) <= MAX_VALUE_BYTES


def test_a_minute_with_more_than_a_page_of_deadlines_keeps_them_all() -> None:
    """A flood registers hundreds of cases in one minute, so the warnings of their 24 hours
    (R5) fall in one minute of the wheel: it keeps them WHEEL_PAGE to a stored page, and
    the tick that reaches the minute judges every one of them."""
    town = Town(check_rebuild=False)
    town(incident("flood-0720"))
    cases = 2 * WHEEL_PAGE + 50
    for n in range(cases):
        town(urgent(f"case-{n:03d}", 10_000, at=T0, household=n + 1))
    first = min(int(k.split("/")[2]) for k in town.store if k.count("/") == 2 and k[0] == "w")
    assert town.store[f"w/370321101/{first}"] == {"pages": 3}
    pages = [town.store[f"w/370321101/{first}/{n}"]["refs"] for n in range(3)]
    assert [len(refs) for refs in pages] == [WHEEL_PAGE, WHEEL_PAGE, 50]
    out = town(tick(datetime.fromtimestamp((first + 1) * 60, UTC)))
    assert len({r.correlation_id for r in out if isinstance(r, DeadlineWarned)}) == cases


def test_the_wheels_minutes_are_counted_from_1970_as_they_are_stored() -> None:
    # the keys w/<town>/<minute> live in the changelog across versions
    assert minute_of(datetime(1970, 1, 1, 0, 1, 59, tzinfo=UTC)) == 1
    assert minute_of(T0) == 29_741_760
    with pytest.raises(ValidationError):
        WheelHead(pages=0)  # a minute on the wheel has a page


def test_a_reference_of_the_longest_key_is_scheduled_and_a_longer_one_is_a_bug() -> None:
    nothing: dict[str, Any] = {}
    book = Book("370321101", nothing.get)
    longest = "g:" + "k" * (MAX_REF - 2)
    book.schedule(T0, longest)
    with pytest.raises(ValueError, match=r"wheel reference 'g:k{78}' or page 1 out of bounds"):
        book.schedule(T0, longest + "k")


def test_journal_pages_stay_under_their_limit() -> None:
    big_value = json.dumps({"refs": ["x" * 100] * 150})  # about MAX_VALUE_BYTES
    images: list[tuple[str, str | None]] = [(f"w/370321101/{n}/0", big_value) for n in range(200)]
    pages = journal_pages(images)
    assert len(pages) > 1
    assert all(size(page) <= JOURNAL_PAGE_BYTES for page in pages)
    assert JOURNAL_PAGE_BYTES < KAFKA_RECORD_LIMIT
    assert [entry for page in pages for entry in page] == images


def test_five_thousand_cases_in_one_town_leave_every_value_small() -> None:
    town = Town(check_rebuild=False)  # (the rebuild is checked in the stories)
    town(incident("flood-0720"))
    largest: dict[int, int] = {}
    for n in range(5_000):
        at = T0 + timedelta(seconds=n)
        town(urgent(f"case-{n:05d}", 10_000, at=at, household=n + 1))
        if n + 1 in (1_000, 5_000):
            largest[n + 1] = max(size(v) for v in town.store.values())
    assert largest[5_000] <= MAX_VALUE_BYTES
    assert largest[5_000] == largest[1_000]  # does not grow with the number of cases
    assert town.s.counts.urgent_unpaid == 5_000
    # A day later one tick judges all 5,000 deadlines, and the values are still small.
    breached = town(tick(T0 + timedelta(days=1, hours=2)))
    assert len(breached) >= 5_000
    assert town.s.counts.urgent_overdue == 5_000
    assert max(size(v) for v in town.store.values()) <= MAX_VALUE_BYTES
