"""What the dead-letter stories share: a broker of the dead-letter topic killed while that
topic needs every replica in sync, a consumer supervised meanwhile, bad records slipped
onto the topic it reads, and the letters read back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.envelope import Record
from schemas.topics import RejectedRecord
from tests.faults.conftest import CaughtUp, Cluster, Load, steady_load
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    feed,
    granted_count_reaches,
    logs,
)
from tests.integration.emergency.test_worker import PARTITIONS, Env, flood

BROKER_DOWN_S = 45.0  # past the dead-letter producers' 40 s request timeout


Start = Callable[[], subprocess.Popen[bytes]]
Slipped = list[tuple[int, int]]  # (partition, offset) of each bad record


@dataclasses.dataclass
class Refused:
    """What the fault left: the load (for its recovery), where the bad records went, and
    the exit codes of the consumer while its dead letters were refused."""

    load: Load
    slipped: Slipped
    exits: list[int]


async def refuse_dead_letters(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    *,
    towns: Sequence[str],
    cases: Sequence[Record],
    dlq: str,
    onto: str,
    bad: Sequence[bytes],
    consumers: list[subprocess.Popen[bytes]],
    start: Start,
    caught_up: CaughtUp,
    while_down: Callable[[Slipped], Awaitable[None]] | None = None,
) -> Refused:
    """The story's fault under a steady load of `cases`: once the processor (started
    here) has granted 200, the broker leading `dlq` (a `strict_topic`) is SIGKILLed, `bad`
    slipped onto `onto` (the topic the consumer reads), the consumer (the last of
    `consumers`) supervised for BROKER_DOWN_S; then no dead letter may be on `dlq`, and
    `while_down` looks at the consumer's state before the broker is started again. The
    rest of the load is produced before this returns."""
    exits: list[int] = []
    worker.append(env.start_worker())
    await feed(env.bootstrap, env.intake, [flood(t) for t in towns], chunk=100, pause_s=0)
    gates = {"broken": 500, "mended": 1_200}
    async with steady_load(
        env, cases, chunk=25, pause_s=0.5, gates=gates, drain_s=AFTER_CRASH_S
    ) as load:
        await granted_count_reaches(env, 200, workers=worker)
        await kill_a_broker_of(cluster, env.bootstrap, dlq)
        load.open("broken")
        slipped = await slip_in(env.bootstrap, onto, towns, bad)
        await supervise(BROKER_DOWN_S, consumers, start, exits, env, worker[0])
        # nothing dead-lettered while the topic could not take it
        assert not await dead_letters(env.bootstrap, dlq)
        if while_down is not None:
            await while_down(slipped)
        await asyncio.to_thread(cluster.up)  # the broker back
        load.fault_over(caught_up=caught_up)
        load.open("mended")
    return Refused(load, slipped, exits)


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
    start: Start,
    exits: list[int],
) -> None:
    """The supervisor's part: the last of `procs` exited, its code noted, another started."""
    if (code := procs[-1].poll()) is not None:
        exits.append(code)
        procs.append(start())


async def supervise(
    seconds: float,
    procs: list[subprocess.Popen[bytes]],
    start: Start,
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
) -> Slipped:
    """`values` onto `topic`, keyed by town in turn (so they land among a town's records);
    their (partition, offset)s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = []
        for n, value in enumerate(values):
            key = towns[n % len(towns)].encode()
            meta = await producer.send_and_wait(topic, key=key, value=value)
            sent.append((meta.partition, meta.offset))
        return sent
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
