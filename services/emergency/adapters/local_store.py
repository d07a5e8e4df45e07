"""Before the worker starts: drop a partition's local state that is ahead of its changelog.

Faust keeps in each partition's RocksDB the changelog offset it has stored up to. When
that offset is beyond the changelog's end (the changelog topic was recreated or
truncated, or the folder came from another cluster), Faust refuses to start with a
`ConsistencyError` — and restarting never helps: a crash loop. The changelog is the
state's source of truth, so such a partition's local copy is removed and rebuilt from
the changelog, with a warning naming the partition and both offsets.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Rdict

from relief_platform import kafka_security

log = logging.getLogger("relief.emergency")

OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps its changelog offset
END_OFFSETS_TIMEOUT_S = 15.0


def persisted_offset(db_path: Path) -> int | None:
    db = Rdict(str(db_path), access_type=AccessType.read_only())
    try:
        raw = db.get(OFFSET_KEY)
    finally:
        db.close()
    return None if raw is None else int(raw)


def partition_dbs(tabledir: Path, table: str) -> dict[int, Path]:
    """The local RocksDB folder of each partition of `table` (Faust: <table>-<p>.db)."""
    found: dict[int, Path] = {}
    for path in tabledir.glob(f"{table}-*.db"):
        suffix = path.name[len(table) + 1 : -len(".db")]
        if suffix.isdigit():
            found[int(suffix)] = path
    return found


def drop_stale(dbs: dict[int, Path], last_offsets: dict[int, int]) -> list[str]:
    """Remove each partition whose stored offset is past the changelog's last offset
    (-1: an empty or missing changelog). Returns what was removed, one line each."""
    removed = []
    for partition, path in sorted(dbs.items()):
        stored = persisted_offset(path)
        last = last_offsets.get(partition, -1)
        if stored is not None and stored > last:
            shutil.rmtree(path)
            line = (
                f"local state of partition {partition} is ahead of its changelog "
                f"({stored} > {last}): removed, it is rebuilt from the changelog"
            )
            log.warning(line)
            removed.append(line)
    return removed


async def changelog_last_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        **kafka_security.client_options(), bootstrap_servers=bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await asyncio.wait_for(consumer._client.fetch_all_metadata(), 10)
        ids = partitions.partitions_for_topic(topic) or set()
        if not ids:
            return {}
        ends = await asyncio.wait_for(
            consumer.end_offsets([TopicPartition(topic, p) for p in ids]), END_OFFSETS_TIMEOUT_S
        )
        return {tp.partition: end - 1 for tp, end in ends.items()}
    finally:
        await consumer.stop()


def check_local_store(bootstrap: str, tabledir: Path, table: str, changelog: str) -> list[str]:
    dbs = partition_dbs(tabledir, table)
    if not dbs:
        return []
    return drop_stale(dbs, asyncio.run(changelog_last_offsets(bootstrap, changelog)))
