"""Time (docs/design.md "time is an event"): a clock tick judges what fell due by its broker time.

A tick walks the wheel (book.py) from the first minute not yet judged to the tick's
minute: every reference there is looked at once — a case's deadlines (R5, P1) and
instalments (P5), or a mark whose retention ran out. Minutes wholly passed are dropped;
the tick's own minute is looked at again by the next tick, since more may fall due in it.
The cost of a tick follows what falls due, never the number of open cases.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from schemas.intake import ClockTick
from services.emergency.domain import duplicates
from services.emergency.domain.book import MAX_WHEEL_WALK_MINUTES, Book, minute_of
from services.emergency.domain.common import (
    deadline_decision,
    schedule_case,
    store_case,
)
from services.emergency.domain.deadlines import Deadline
from services.emergency.domain.state import (
    APPLIED_RETENTION,
    CASE_MARK_RETENTION,
    INCIDENT_RETENTION,
    CaseStatus,
)
from services.emergency.domain.transitional import pay_instalments


def on_tick(book: Book, tick: ClockTick) -> list[BaseModel]:
    state = book.s
    now = tick.recorded_at or tick.occurred_at
    if state.clock is not None and now < state.clock:
        now = state.clock  # the partition's time never goes back
    current = minute_of(now)
    first = state.wheel_minute if state.wheel_minute is not None else current
    last = min(current, first + MAX_WHEEL_WALK_MINUTES)
    book.update(clock=now, wheel_minute=last)
    out: list[BaseModel] = []
    for minute in range(first, last + 1):
        for ref in book.due_at_minute(minute):
            out.extend(_look_at(book, ref, tick, now))
        if minute < current:
            book.drop_minute(minute)
    return out


def _look_at(book: Book, ref: str, tick: ClockTick, now: datetime) -> list[BaseModel]:
    kind, _, key = ref.partition(":")
    if kind == "c":
        return _judge_case(book, key, tick, now)
    if kind == "e":
        applied = book.applied(key)
        if applied is not None and now >= applied.applied_at + APPLIED_RETENTION:
            book.drop_applied(key)
    elif kind == "d":
        finished = book.finished_case(key)
        if finished is not None and now >= finished.finished_at + CASE_MARK_RETENTION:
            book.forget_finished_case(key)
            duplicates.forget_finished(book, key, finished)  # long past the P6 window
    elif kind == "i":
        incident = book.incident(key)
        if (
            incident is not None
            and incident.closed_at is not None
            and now >= incident.closed_at + INCIDENT_RETENTION
        ):
            book.drop_incident(key)
    return []


def _judge_case(book: Book, case_id: str, tick: ClockTick, now: datetime) -> list[BaseModel]:
    case = book.case(case_id)
    if case is None:
        return []  # finished meanwhile: nothing left to judge
    out: list[BaseModel] = []
    updates: dict[str, Any] = {}
    for field in ("relief_deadline", "paperwork_deadline"):
        deadline: Deadline | None = getattr(case, field)
        if deadline is None:
            continue
        outcome = deadline.on_tick(now)
        if outcome is None:
            continue
        # (a clock that was away through the warning time goes straight to the breach)
        out.append(deadline_decision(case, deadline, outcome, tick))
        updates[field] = deadline.model_copy(update={"state": outcome})
    if updates:
        case = case.model_copy(update=updates)
    if case.status is CaseStatus.TRANSITIONAL:
        return out + pay_instalments(book, case, tick, now)  # (schedules what comes next)
    schedule_case(book, case)
    if updates or case.finished(now):
        store_case(book, case, now)
    return out
