"""What the dead-letter stories share: a broker of the dead-letter topic killed while that
topic needs every replica in sync, a consumer supervised meanwhile, bad records slipped
onto the topic it reads, and the letters read back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.topics import RejectedRecord
from tests.faults.conftest import Cluster
from tests.integration.emergency.test_faults import logs
from tests.integration.emergency.test_worker import PARTITIONS, Env

BROKER_DOWN_S = 45.0  # past the dead-letter producers' 40 s request timeout


async def strict_topic(bootstrap: str, topic: str) -> None:
    """A dead-letter topic no write reaches while a broker of its three is down."""
    await ensure_topics(
        bootstrap,
        partitions=PARTITIONS,
        replication_factor=3,
        names={topic: {"min.insync.replicas": "3"}},
    )


async def kill_a_broker_of(cluster: Cluster, bootstrap: str, topic: str) -> None:
    """SIGKILL the broker leading `topic`'s partition 0 (`cluster.up()` starts it again)."""
    leaders = await local_stack.partition_leaders(bootstrap, [topic])
    victim = leaders[topic][0]
    pid = cluster.pid(victim)
    assert pid is not None, f"broker {victim} leads {topic} but does not run"
    os.killpg(pid, signal.SIGKILL)


def restart_if_exited(
    procs: list[subprocess.Popen[bytes]],
    start: Callable[[], subprocess.Popen[bytes]],
    exits: list[int],
) -> None:
    """The supervisor's part: the last of `procs` exited, its code noted, another started."""
    if (code := procs[-1].poll()) is not None:
        exits.append(code)
        procs.append(start())


async def supervise(
    seconds: float,
    procs: list[subprocess.Popen[bytes]],
    start: Callable[[], subprocess.Popen[bytes]],
    exits: list[int],
    env: Env,
    worker: subprocess.Popen[bytes],
) -> None:
    """For `seconds`, restart the consumer whenever it exits; the processor never may."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        restart_if_exited(procs, start, exits)
        assert worker.poll() is None, f"the processor exited\n{logs(env)}"
        await asyncio.sleep(1)


async def slip_in(
    bootstrap: str, topic: str, towns: Sequence[str], values: Sequence[bytes]
) -> None:
    """`values` onto `topic`, keyed by town in turn (so they land among a town's records)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, value in enumerate(values):
            await producer.send_and_wait(topic, key=towns[n % len(towns)].encode(), value=value)
    finally:
        await producer.stop()


async def dead_letters(bootstrap: str, topic: str) -> list[RejectedRecord]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[RejectedRecord] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2_000):
            for msgs in batch.values():
                got.extend(RejectedRecord.model_validate_json(m.value or b"") for m in msgs)
    finally:
        await consumer.stop()
    return got


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
