"""The positioned consumer's pure parts: which partitions a shard takes, where a batch
reads on (relief_platform.positioned)."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from relief_platform.positioned import broker_time, in_shard, next_offsets, shard_of


def record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, partition, offset, 1_719_794_400_000, 1, b"k", b"v", None, 1, 1, ()
    )


def test_shards_split_every_topic_by_partition_and_cover_each_once() -> None:
    found = [TopicPartition(t, p) for t in ("a", "b") for p in range(6)]
    shards = [in_shard(found, (k, 4)) for k in range(4)]
    assert sorted((tp.topic, tp.partition) for s in shards for tp in s) == sorted(
        (tp.topic, tp.partition) for tp in found
    )
    assert [tp.partition for tp in shards[1]] == [1, 5, 1, 5]
    assert in_shard(found, None) == found
    with pytest.raises(ValueError, match="0 to 1"):
        in_shard(found, (2, 2))


@pytest.mark.parametrize(
    ("text", "why"),
    [("2/2", "k is 0 to 1"), ("1/0", "k is 0 to -1"), ("a/b", "expected k/n"), ("1", "k/n")],
)
def test_a_shard_setting_that_is_wrong_says_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        shard_of(text)


def test_a_shard_setting() -> None:
    assert shard_of("") is None
    assert shard_of("1/3") == (1, 3)


def test_a_batch_reads_on_after_the_last_offset_of_each_partition() -> None:
    batch = [record("a", 0, 7), record("a", 0, 9), record("a", 1, 3), record("b", 0, 0)]
    assert next_offsets(batch) == {("a", 0): 10, ("a", 1): 4, ("b", 0): 1}
    assert next_offsets([]) == {}


def test_broker_time_is_the_records_stamp_in_utc() -> None:
    at = broker_time(1_719_794_400_000)
    assert at is not None and at.isoformat() == "2024-07-01T00:40:00+00:00"
    assert broker_time(None) is None
    assert broker_time(-1) is None  # Kafka's "no timestamp"
