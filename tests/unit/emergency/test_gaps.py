"""A record past a gap in its partition is never applied; the partition is read again.

Faust drops records it fetched but had not handed to the agent when partitions move, and
before the group's first commit it does not read them again: they would be skipped for
good (a second worker joining mid-stream showed it). The engine notices the gap from the
last offset it applied to the partition and seeks back to the first missing record.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

from services.emergency.adapters.faust_app import Engine
from tests.unit.emergency.builders import RULES


class Message:
    def __init__(self, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = "intake", partition, offset


class Event:  # Faust's events are weakly referenced as the current event
    def __init__(self, partition: int, offset: int) -> None:
        self.message = Message(partition, offset)


class Consumer:
    """Records the seeks the engine asks for; serves the partitions' first offsets."""

    def __init__(self, first: int = 0) -> None:
        self.first = first
        self.seeks: list[tuple[TP, int]] = []

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.first)

    async def seek(self, partition: TP, offset: int) -> None:
        self.seeks.append((partition, offset))


def events(partition: int, *offsets: int) -> list[Any]:
    return [Event(partition, o) for o in offsets]


async def test_a_gap_is_read_again_and_nothing_past_it_applied() -> None:
    engine = Engine(RULES, None, {}, 3)  # type: ignore[arg-type]
    consumer = engine.consumer = Consumer()
    kept = await engine.in_order(events(0, 0, 1, 2) + events(1, 0))
    assert [(e.message.partition, e.message.offset) for e in kept] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
    ]
    # 3..7 dropped by a rebalance: 8 and 9 arrive, and so does partition 1's next record
    kept = await engine.in_order(events(0, 8, 9) + events(1, 1))
    assert [(e.message.partition, e.message.offset) for e in kept] == [(1, 1)]
    assert consumer.seeks == [(TP("intake", 0), 3)]
    # more of what was buffered after the gap: no second seek to the same place
    assert await engine.in_order(events(0, 10)) == []
    assert consumer.seeks == [(TP("intake", 0), 3)]
    # read again from 3: everything in order, what was applied before is skipped
    kept = await engine.in_order(events(0, 2, 3, 4, 5, 6, 7, 8, 9, 10))
    assert [e.message.offset for e in kept] == [3, 4, 5, 6, 7, 8, 9, 10]


async def test_a_partition_never_applied_starts_at_its_first_offset_or_its_stored_one() -> None:
    engine = Engine(RULES, None, {"q/2": 41}, 3)  # type: ignore[arg-type]
    consumer = engine.consumer = Consumer(first=17)  # the log's start after retention
    kept = await engine.in_order(events(1, 17, 18) + events(2, 42))
    assert [(e.message.partition, e.message.offset) for e in kept] == [(1, 17), (1, 18), (2, 42)]
    assert consumer.seeks == []
    engine.forget_partitions()  # a rebalance: what was known is read again from the state
    assert await engine.in_order(events(2, 45)) == []
    assert consumer.seeks == [(TP("intake", 2), 42)]
