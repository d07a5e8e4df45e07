"""Which intake partition a town lives on: the same answer the producers' partitioner gives.

Intake produces with key = town code and the default (murmur2) partitioner, as Kafka's
Java clients do; a clock tick on partition p concerns exactly the towns that hash to p.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.partitioner import murmur2


def partition_of(town: str, partitions: int) -> int:
    return int(murmur2(town.encode()) & 0x7FFFFFFF) % partitions


def towns_on(partition: int, towns: Iterable[str], partitions: int) -> list[str]:
    return sorted(t for t in towns if partition_of(t, partitions) == partition)
