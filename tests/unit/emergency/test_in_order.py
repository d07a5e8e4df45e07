"""A record past a gap in its partition is never applied: the partition is read again
from the first missing offset (Faust can lose a fetched record when partitions move, and
the group's committed offset then passes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from services.emergency.adapters.faust_app import Engine
from tests.unit.emergency.builders import RULES

TOPIC = "intake"


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Event:
    message: Message


def ev(partition: int, offset: int) -> Event:
    return Event(Message(TOPIC, partition, offset))


class Seeks:
    """Stands for Faust's consumer: where each log starts, and where it was asked to
    read from again."""

    def __init__(self, log_start: int = 0) -> None:
        self.seeks: list[dict[Any, int]] = []
        self.log_start = log_start

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return {tp: self.log_start for tp in tps}

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        self.seeks.append(dict(partitions))


def engine(table: dict[str, Any] | None = None) -> tuple[Engine, Seeks]:
    e = Engine(RULES, None, table if table is not None else {}, 3)  # type: ignore[arg-type]
    seeks = Seeks()
    e.consumer = seeks
    e.intake_topic = TOPIC
    return e, seeks


async def test_records_in_order_pass_and_records_applied_before_are_left_out() -> None:
    e, seeks = engine({"q/0": 9})
    kept = await e.in_order([ev(0, 8), ev(0, 9), ev(0, 10), ev(0, 11)])
    assert [k.message.offset for k in kept] == [10, 11]
    assert seeks.seeks == []


async def test_a_record_past_a_gap_is_not_applied_and_the_partition_is_read_again() -> None:
    e, seeks = engine({"q/0": 669, "q/1": 4})
    first = await e.in_order([ev(0, 670), ev(0, 671), ev(1, 5)])
    assert [(k.message.partition, k.message.offset) for k in first] == [(0, 670), (0, 671), (1, 5)]
    # 672 never came: nothing of partition 0 past it is applied; partition 1 goes on
    second = await e.in_order([ev(0, 673), ev(0, 674), ev(1, 6)])
    assert [(k.message.partition, k.message.offset) for k in second] == [(1, 6)]
    assert len(seeks.seeks) == 1
    ((tp, offset),) = seeks.seeks[0].items()
    assert (tp.topic, tp.partition, offset) == (TOPIC, 0, 672)
    # records fetched before the seek took effect: still past the gap; Faust may skip
    # the records read again because of them, so the partition is sought again
    assert await e.in_order([ev(0, 675)]) == []
    assert [list(s.values()) for s in seeks.seeks] == [[672], [672]]
    # read again from 672: applied in order, the ones already applied left out
    again = await e.in_order([ev(0, 672), ev(0, 673), ev(0, 674), ev(0, 675)])
    assert [k.message.offset for k in again] == [672, 673, 674, 675]


async def test_a_partition_never_applied_starts_at_the_start_of_its_log() -> None:
    e, seeks = engine()
    kept = await e.in_order([ev(2, 0), ev(2, 1)])
    assert [k.message.offset for k in kept] == [0, 1]
    assert seeks.seeks == []
    e, seeks = engine()
    assert await e.in_order([ev(2, 5)]) == []  # 0-4 never came
    assert [list(s.values()) for s in seeks.seeks] == [[0]]


async def test_after_an_assignment_the_start_comes_from_the_state() -> None:
    e, _ = engine({"q/0": 41})

    consumer = Seeks(log_start=7)
    e.consumer = consumer
    from faust.types import TP

    targets = await e.start_offsets({TP(TOPIC, 0), TP(TOPIC, 1), TP("other", 0)})
    assert {(tp.partition, off) for tp, off in targets.items()} == {(0, 42), (1, 7)}
    # the first record of a partition must be where the state (or the log) starts it
    assert await e.in_order([ev(1, 8)]) == []
    assert [list(s.values()) for s in consumer.seeks] == [[7]]
    assert await e.in_order([ev(0, 41), ev(0, 42)]) == [ev(0, 42)]


async def test_without_a_consumer_a_gap_is_an_error() -> None:
    e, _ = engine({"q/0": 1})
    e.consumer = None
    with pytest.raises(RuntimeError, match="records from 2 missing"):
        await e.in_order([ev(0, 3)])
