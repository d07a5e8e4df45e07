"""The processor-health judgement, told as a day of readings: the clock ticks, the
processor keeps up, falls silent, and comes back."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("first_commit", [0, 1])
def test_a_groups_first_commit_of_a_partition_is_progress_at_any_offset(first_commit: int) -> None:
    # the processor starting: nothing committed at first, then its first commit
    readings = [
        (0.0, reading({0: 5, 1: 0}, {})),
        (50.0, reading({0: 5, 1: 0}, {0: first_commit})),
        (100.0, reading({0: 5, 1: 0}, {0: first_commit})),  # 50 s since that progress
    ]
    assert run(readings) == [True, True, True]
    progress = observe(None, readings[0][1], 0.0, LIMITS)
    progress = observe(progress, readings[1][1], 50.0, LIMITS)
    assert judge(progress, readings[1][1], 50.0, LIMITS).committed_advancing


def test_the_committed_offsets_count_as_advancing_for_the_window_after_they_moved() -> None:
    waiting = reading({0: 9, 1: 0}, {0: 2})
    moved = reading({0: 9, 1: 0}, {0: 3})
    progress = observe(observe(None, waiting, 0.0, LIMITS), moved, 10.0, LIMITS)
    verdict = judge(progress, moved, 69.94, LIMITS)
    assert verdict.committed_advancing and verdict.consuming
    assert verdict.seconds_since_progress == 59.9  # to a tenth of a second
    verdict = judge(progress, moved, 70.0, LIMITS)
    assert not verdict.committed_advancing and not verdict.consuming
    assert not judge(progress, moved, 130.0, LIMITS).committed_advancing


@pytest.mark.parametrize("waiting", [0, 1, 2])
def test_a_lag_within_the_threshold_stays_caught_up_however_long_since_the_last_reading(
    waiting: int,
) -> None:
    # Kafka unreachable: /healthz judges the last good reading at the time it is asked
    limits = Limits(max_lag=2, stall_s=60.0)
    last = reading({0: 4 + waiting, 1: 0}, {0: 4})
    progress = observe(None, last, 0.0, limits)
    verdict = judge(progress, last, 600.0, limits)
    assert verdict.consuming and verdict.reason is None
    assert (verdict.lag, verdict.seconds_since_progress) == (waiting, 600.0)


def test_a_commit_read_past_the_end_is_no_lag_and_hides_none_of_another_partitions() -> None:
    # the ends are read before the committed offsets: records written and committed in
    # between put a committed offset past the end read
    offsets = reading({0: 5, 1: 8}, {0: 7, 1: 5})
    verdict = judge(observe(None, offsets, 0.0, LIMITS), offsets, 0.0, LIMITS)
    assert verdict.lag_by_partition == {0: 0, 1: 3} and verdict.lag == 3


@pytest.mark.parametrize("waiting", [0, 1, 2])
def test_a_quiet_spell_within_the_threshold_is_progress_until_its_last_reading(
    waiting: int,
) -> None:
    limits = Limits(max_lag=2, stall_s=60.0)
    quiet = reading({0: 4 + waiting, 1: 0}, {0: 4})
    progress = observe(observe(None, quiet, 0.0, limits), quiet, 3_600.0, limits)
    assert judge(progress, quiet, 3_600.0, limits).seconds_since_progress == 0.0
    # then records arrive faster than the processor commits: not a stall at once
    busy = reading({0: 9, 1: 0}, {0: 4})
    progress = observe(progress, busy, 3_630.0, limits)
    verdict = judge(progress, busy, 3_630.0, limits)
    assert verdict.consuming and verdict.seconds_since_progress == 30.0
    assert not judge(progress, busy, 3_660.0, limits).consuming
