"""Ticks (docs/design.md "time is an event"): the partition's time never goes back, and
the marks the state keeps for a while leave it when their retention ends, not before —
the state stays sized by what is open (the processor issue), and nothing is forgotten
early: an applied payment is not applied twice within 7 days, a case id is not reused
within 400 days, a closed incident is known for 400 days."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta

import pytest

from schemas import decisions as d
from schemas import intake as i
from services.emergency.domain import decide as decide_module
from services.emergency.domain.book import MAX_WHEEL_WALK_MINUTES, Book
from services.emergency.domain.decide import decide
from services.emergency.domain.state import (
    APPLIED_RETENTION,
    CASE_MARK_RETENTION,
    DUPLICATE_WINDOW,
    INCIDENT_RETENTION,
)
from tests.unit.emergency.builders import (
    BUREAU,
    QIFENG,
    RULES,
    T0,
    Town,
    cancelled,
    env,
    flooded,
    hours,
    incident,
    paid,
    tick,
    urgent,
)

MINUTE = timedelta(minutes=1)


def walk_to(town: Town, until: datetime) -> None:
    """Ticks a day apart up to `until` (a tick walks at most a month of the wheel)."""
    at = town.s.clock or T0
    while at < until:
        at = min(at + timedelta(days=1), until)
        town(tick(at))


def test_a_tick_older_than_the_partitions_time_does_not_move_it_back() -> None:
    town = Town()
    town(incident("flood-0720"))
    town(tick(T0 + hours(2)))
    town(tick(T0 + hours(1)))  # a late tick
    assert town.s.clock == T0 + hours(2)
    town(tick(T0 + hours(3)))
    assert town.s.clock == T0 + hours(3)


def test_an_applied_payments_mark_stays_its_retention_and_then_leaves() -> None:
    """Kept until the moment its retention ends, also within the minute it falls due,
    and dropped at that very moment."""
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000))
    payment = paid("case-1", 80_000, at=T0 + hours(1) + timedelta(seconds=30))
    town(payment)
    key = str(payment.event_id)
    due = T0 + hours(1) + timedelta(seconds=30) + APPLIED_RETENTION
    walk_to(town, due - timedelta(seconds=10))  # the mark's minute, before its time
    assert town.book().applied(key) is not None
    walk_to(town, due)
    assert town.book().applied(key) is None


def test_a_finished_cases_mark_stays_its_retention_and_then_leaves() -> None:
    """Also within the minute it falls due: the wheel holds minutes, the mark its time."""
    town = flooded()
    town(urgent("case-1", 80_000))
    finished_at = T0 + hours(1) + timedelta(seconds=30)
    town(cancelled("case-1", at=finished_at))
    due = finished_at + CASE_MARK_RETENTION
    walk_to(town, due - MINUTE)
    assert town.book().finished_case("case-1") is not None
    walk_to(town, due - timedelta(seconds=10))  # the mark's minute, before its time
    assert town.book().finished_case("case-1") is not None
    walk_to(town, due)  # and dropped at that very moment
    assert town.book().finished_case("case-1") is None


def test_a_closed_incident_is_known_its_retention_and_an_open_one_always() -> None:
    town = flooded()
    town(incident("fire-0801"))
    closed_at = T0 + hours(1) + timedelta(seconds=30)
    town(i.IncidentClosed(**env(QIFENG, "flood-0720", closed_at, BUREAU), incident_id="flood-0720"))
    due = closed_at + INCIDENT_RETENTION
    walk_to(town, due - timedelta(seconds=10))  # its minute, before its time
    assert town.book().incident("flood-0720") is not None
    walk_to(town, due)
    assert town.book().incident("flood-0720") is None
    assert town.book().incident("fire-0801") is not None  # still open: never dropped


def test_an_incident_closed_again_stays_closed_from_the_first_time() -> None:
    """A second close (another event id) changes nothing: the incident's retention runs
    from its first close and the town's count of open incidents moves once; the rebuilt
    state folds the second close to nothing as well."""
    town = flooded()
    town(incident("fire-0801"))
    first = T0 + hours(1)
    close = i.IncidentClosed(**env(QIFENG, "flood-0720", first, BUREAU), incident_id="flood-0720")
    town(close)
    again = close.model_copy(update={"event_id": uuid.uuid4(), "recorded_at": first + hours(5)})
    assert town(again) == []
    mark = town.book().incident("flood-0720")
    assert mark is not None and mark.closed_at == first
    assert town.s.open_incidents == 1


def test_a_state_rebuilt_from_decisions_drops_a_closed_incident_on_its_own_wheel() -> None:
    """A worker rebuilt from the decisions alone has the wheel `evolve` made, not the
    live one: its ticks drop the closed incident at the same moment."""
    town = flooded()
    closed_at = T0 + hours(1) + timedelta(seconds=30)
    town(i.IncidentClosed(**env(QIFENG, "flood-0720", closed_at, BUREAU), incident_id="flood-0720"))
    rebuilt = Town(store=copy.deepcopy(town.rebuilt), check_rebuild=False)
    due = closed_at + INCIDENT_RETENTION
    walk_to(rebuilt, due - timedelta(seconds=10))
    assert rebuilt.book().incident("flood-0720") is not None
    walk_to(rebuilt, due)
    assert rebuilt.book().incident("flood-0720") is None


def test_the_partitions_time_is_the_brokers_stamp_of_the_tick() -> None:
    """A tick is judged by its broker stamp (recorded_at), not the clock service's host
    time (occurred_at), which may be wrong."""
    town = Town()
    town(incident("flood-0720"))
    late_host = tick(T0 + hours(1)).model_copy(update={"recorded_at": T0 + hours(2)})
    town(late_host)
    assert town.s.clock == T0 + hours(2)


def test_minutes_wholly_passed_leave_the_wheel() -> None:
    """The wheel keeps only minutes still to come (and the tick's own): what fell due in
    a passed minute was judged, and its page goes."""
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000))  # its deadlines on the wheel
    town(tick(T0 + hours(30)))  # warned, breached
    pages = [k for k in town.store if k.startswith(f"w/{QIFENG}/")]
    current = int((T0 + hours(30)).timestamp() // 60)
    assert all(int(k.split("/")[2]) >= current for k in pages), pages


def test_a_relief_deadline_met_does_not_hide_the_paperwork_deadline() -> None:
    """R5 then P1: a case paid in time has nothing more to judge on its 24 hours, and its
    paperwork is still judged: warned, then breached when 5 days pass without it."""
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    [breached] = town(tick(T0 + timedelta(days=6)))
    assert isinstance(breached, d.DeadlineBreached)
    assert breached.deadline is d.DeadlineKind.PAPERWORK_5D


def test_a_deadline_the_wheel_has_passed_already_is_judged_at_the_next_tick() -> None:
    """R5 for a request that reached its town late (the claims stage held it; it keeps the
    stamp intake gave it): its warning time is already behind the wheel, so it goes into
    the minute the next tick looks at, and its 24 hours are judged there - past due, a
    breach (the warning's time went by unseen) - never skipped."""
    town = Town()
    town(incident("flood-0720"))
    town(tick(T0 + hours(25)))  # the wheel has walked past T0 + 22 h
    town(urgent("case-late", 80_000, at=T0 + hours(2)))  # warned at T0 + 22 h, due T0 + 26 h
    out = town(tick(T0 + hours(27)))
    [breached] = out
    assert isinstance(breached, d.DeadlineBreached) and breached.correlation_id == "case-late"


def test_a_clock_away_for_weeks_catches_up_a_month_of_the_wheel_a_tick() -> None:
    """A tick walks at most 31 days of minutes (each minute a read); the ticks after it
    walk on from there, and a deadline on the way is judged, late but judged."""
    town = Town()
    town(incident("flood-0720"))
    town(tick(T0))
    town(urgent("case-1", 80_000, at=T0 + timedelta(days=35)))
    start = town.s.wheel_minute
    assert start is not None
    town(tick(T0 + timedelta(days=40)))
    assert town.s.wheel_minute == start + MAX_WHEEL_WALK_MINUTES == start + 60 * 24 * 31
    assert town.s.counts.urgent_overdue == 0  # not reached yet
    out = town(tick(T0 + timedelta(days=40, minutes=1)))
    assert out and all(isinstance(r, d.DeadlineBreached) for r in out)
    assert town.s.counts.urgent_overdue == 1


def test_a_tick_with_nothing_to_judge_on_a_case_writes_nothing_for_it() -> None:
    """Every stored value goes to the changelog: a tick that looks at a case on the wheel
    and finds nothing fallen due (its 24 hours met by the payment, its paperwork not yet
    near) leaves the case as it was, unwritten."""
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    for at in (T0 + hours(20), T0 + hours(24)):  # R5's warning time, then its due time
        book = Book(QIFENG, town.store.get)
        assert decide(book, tick(at), RULES).records == []
        assert [k for k, _ in book.changes() if k.startswith("c/")] == []


def test_a_town_counts_its_open_incidents_up_to_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """R1: the bureau's incidents are counted as they open and close; a town tracks a
    bounded number at once (the limit is lowered here to 2), and a closed one makes room.
    An update names an incident the town knows, or is a dead letter."""
    monkeypatch.setattr(decide_module, "MAX_OPEN_INCIDENTS_PER_TOWN", 2)
    town = Town()
    town(incident("flood-0720"))
    town(incident("fire-0801"))
    assert town.s.open_incidents == 2
    assert "2 open incidents" in town.refused(incident("storm-0901"))
    closed = i.IncidentClosed(
        **env(QIFENG, "flood-0720", T0 + hours(1), BUREAU), incident_id="flood-0720"
    )
    town(closed)
    assert town.s.open_incidents == 1
    town(incident("storm-0901"))
    assert town.s.open_incidents == 2
    update = i.IncidentUpdated(
        **env(QIFENG, "quake-1001", T0 + hours(2), BUREAU), incident_id="quake-1001"
    )
    assert "unknown incident" in town.refused(update)


def test_the_p6_window_ends_exactly_a_year_after_the_grant() -> None:
    """P6: a second request of the household for the same cause is a duplicate for 365
    days from the first grant — refused a moment before the year is out, decided on its
    own merits from that very moment."""
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000))
    town(paid("case-1", 80_000, at=T0 + hours(1)))
    year = T0 + DUPLICATE_WINDOW
    [dup] = town(urgent("case-2", 80_000, at=year - timedelta(microseconds=1)))
    assert isinstance(dup, d.AdvanceRefused) and dup.reason is d.RefusalReason.DUPLICATE
    out = town(urgent("case-3", 80_000, at=year))
    assert isinstance(out[0], d.AdvanceGranted)
    # and any time after it (another household: its first grant at T0 too)
    town(urgent("case-4", 80_000, household=2))
    out = town(urgent("case-5", 80_000, household=2, at=year + timedelta(days=1)))
    assert isinstance(out[0], d.AdvanceGranted)
