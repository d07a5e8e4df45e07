"""Deadlines on event time: the 24-hour relief (R5) and the 5-day paperwork (P1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.emergency.domain.deadlines import Deadline, DeadlineState

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def relief() -> Deadline:
    return Deadline.starting("relief_24h", T0, DAY, lead=timedelta(hours=4))


def test_due_and_warning_times() -> None:
    d = relief()
    assert d.due_at == T0 + DAY
    assert d.warn_at == T0 + timedelta(hours=20)


def test_ticks_warn_once_then_breach_once() -> None:
    d = relief()
    assert d.on_tick(T0 + timedelta(hours=19, minutes=59)) is None
    assert d.on_tick(T0 + timedelta(hours=20)) is DeadlineState.WARNED
    d = d.model_copy(update={"state": DeadlineState.WARNED})
    assert d.on_tick(T0 + timedelta(hours=21)) is None  # warned already
    # 24 小时内: 以内 counts the due time itself (deadlines.py): a tick at exactly 24:00:00
    # is still on time, one a microsecond later is not
    assert d.on_tick(T0 + DAY) is None
    assert d.on_tick(T0 + DAY + timedelta(microseconds=1)) is DeadlineState.BREACHED
    d = d.model_copy(update={"state": DeadlineState.BREACHED})
    assert d.on_tick(T0 + 2 * DAY) is None
    assert d.on_done(T0 + 2 * DAY) is None  # a late payment does not end it twice


def test_the_first_tick_past_the_warning_time_warns_even_between_ticks() -> None:
    """Ticks come every minute or so, rarely at the warning's own instant: the first one
    at or after it, still before the due time, warns (R5: the town is told before the 24
    hours run out, not only when a tick happens to fall on the warning time)."""
    assert relief().on_tick(T0 + timedelta(hours=20, seconds=37)) is DeadlineState.WARNED
    assert relief().on_tick(T0 + timedelta(hours=23, minutes=59)) is DeadlineState.WARNED


def test_payment_at_or_before_due_meets_and_after_due_breaches() -> None:
    assert relief().on_done(T0 + DAY - timedelta(seconds=1)) is DeadlineState.MET
    assert relief().on_done(T0 + DAY) is DeadlineState.MET  # exactly 24:00:00: 以内
    assert relief().on_done(T0 + DAY + timedelta(microseconds=1)) is DeadlineState.BREACHED


def test_a_long_outage_of_the_clock_breaches_at_the_next_tick_without_a_warning() -> None:
    assert relief().on_tick(T0 + 3 * DAY) is DeadlineState.BREACHED


def test_a_lead_longer_than_the_period_warns_from_the_start() -> None:
    d = Deadline.starting("paperwork_5d", T0, timedelta(days=5), lead=timedelta(days=9))
    assert d.warn_at == T0
