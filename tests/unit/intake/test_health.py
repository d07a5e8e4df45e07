"""The processor-health judgement, told as a day of readings: the clock ticks, the
processor keeps up, falls silent, and comes back."""

from __future__ import annotations

from services.intake.domain.health import Limits, Offsets, Progress, judge, observe

LIMITS = Limits(max_lag=0, stall_s=60.0)
PARTS = {0: 0, 1: 0}


def reading(ends: dict[int, int], committed: dict[int, int]) -> Offsets:
    return Offsets(ends=ends, starts=PARTS, committed=committed)


def run(readings: list[tuple[float, Offsets]], limits: Limits = LIMITS) -> list[bool]:
    """Whether the processor counted as consuming after each reading."""
    progress: Progress | None = None
    verdicts = []
    for at_s, offsets in readings:
        progress = observe(progress, offsets, at_s, limits)
        verdicts.append(judge(progress, offsets, at_s, limits).consuming)
    return verdicts


def test_ticks_that_are_committed_within_the_window_are_progress() -> None:
    # the clock writes a tick every 30 s; the processor commits it a few seconds later
    readings = [
        (0.0, reading({0: 1, 1: 1}, {0: 1, 1: 1})),
        (30.0, reading({0: 2, 1: 2}, {0: 1, 1: 1})),  # a tick waits
        (35.0, reading({0: 2, 1: 2}, {0: 2, 1: 2})),
        (60.0, reading({0: 3, 1: 3}, {0: 2, 1: 2})),
        (89.0, reading({0: 3, 1: 3}, {0: 2, 1: 2})),  # slow, but within 60 s of progress
    ]
    assert run(readings) == [True] * 5


def test_records_waiting_with_no_commit_for_the_window_is_a_stall() -> None:
    progress = observe(None, reading({0: 5, 1: 0}, {0: 2}), 0.0, LIMITS)
    later = reading({0: 7, 1: 0}, {0: 2})
    progress = observe(progress, later, 59.9, LIMITS)
    assert judge(progress, later, 59.9, LIMITS).consuming
    verdict = judge(progress, later, 60.0, LIMITS)
    assert not verdict.consuming
    assert verdict.lag == 5 and verdict.lag_by_partition == {0: 5, 1: 0}
    assert not verdict.committed_advancing
    assert verdict.seconds_since_progress == 60.0
    assert verdict.reason == "5 records wait and the committed offsets have not advanced"

    # one commit forward is progress again, even with records still waiting
    moved = reading({0: 7, 1: 0}, {0: 3})
    progress = observe(progress, moved, 61.0, LIMITS)
    verdict = judge(progress, moved, 61.0, LIMITS)
    assert verdict.consuming and verdict.committed_advancing and verdict.lag == 4


def test_a_group_that_never_committed_is_judged_from_the_log_start() -> None:
    offsets = Offsets(ends={0: 10, 1: 4}, starts={0: 6, 1: 4}, committed={})
    progress = observe(None, offsets, 0.0, LIMITS)
    assert judge(progress, offsets, 30.0, LIMITS).consuming  # a processor may be starting
    verdict = judge(progress, offsets, 60.0, LIMITS)
    assert not verdict.consuming and verdict.lag == 4
    assert not verdict.has_committed_offsets
    assert verdict.reason == "the group has no committed offsets while 4 records wait"


def test_nothing_waiting_is_never_a_stall_however_long_it_stays_quiet() -> None:
    offsets = reading({0: 3, 1: 3}, {0: 3, 1: 3})
    progress = observe(None, offsets, 0.0, LIMITS)
    progress = observe(progress, offsets, 3_600.0, LIMITS)
    verdict = judge(progress, offsets, 3_600.0, LIMITS)
    assert verdict.consuming and verdict.lag == 0 and verdict.reason is None
    assert not verdict.committed_advancing  # nothing to commit is not a commit


def test_a_lag_up_to_the_threshold_counts_as_caught_up() -> None:
    limits = Limits(max_lag=2, stall_s=60.0)
    two_waiting = reading({0: 4, 1: 0}, {0: 2})
    assert run([(0.0, two_waiting), (120.0, two_waiting)], limits) == [True, True]
    three_waiting = reading({0: 5, 1: 0}, {0: 2})
    assert run([(0.0, three_waiting), (120.0, three_waiting)], limits) == [True, False]


def test_a_group_moved_back_is_not_progress() -> None:
    ahead = reading({0: 9, 1: 0}, {0: 5})
    reset = reading({0: 9, 1: 0}, {0: 1})
    assert run([(0.0, ahead), (30.0, reset), (60.0, reset)]) == [True, True, False]
