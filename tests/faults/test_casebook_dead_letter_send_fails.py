"""The casebook must dead-letter the decisions it cannot read while Kafka will not take
its dead letters.

Run on purpose (`./run faults`), on the suite's cluster. The processor decides a steady
stream and the casebook's consumer (`python -m services.casebook run`) folds its
decisions into the cluster's PostgreSQL. The casebook's dead-letter topic (the one it
also reads, for the processor's dead letters of intake records) needs every replica in
sync (`min.insync.replicas=3`), so when a broker is SIGKILLed the decisions can still be
read but no dead letter can be written. Bad records are then slipped onto the decisions
topic among the good ones. The casebook may not step over them (it stores its position
only after their dead letters are acknowledged): it waits on the send, or exits and is
started again as the supervisor would; while the broker is away no dead letter appears
and no stored position passes a bad record. Once the broker is back: every bad record
dead-lettered (by its derived id: a re-sent letter is the same letter, stamped with its
record's broker time), every good decision folded once, the casebook's positions at the
ends of its topics, and its rows equal to what a replay into an empty database gives.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.decisions import Decision
from schemas.registry import RecordError, decode
from schemas.towns import load_county
from tests.faults.conftest import Cluster, Figures, start_service
from tests.faults.dead_letters import (
    Slipped,
    dead_letters,
    end_offsets,
    refuse_dead_letters,
    restart_if_exited,
    strict_topic,
)
from tests.faults.test_postgres_stopped import cluster_stack
from tests.integration.casebook.conftest import CasebookDb, casebook_database, rows
from tests.integration.emergency.test_faults import (
    AFTER_CRASH_S,
    granted_once,
    requests_over,
)
from tests.integration.emergency.test_worker import Env

pytestmark = pytest.mark.faults

BAD = [
    b"{not json",
    b'{"type": "AdvanceGranted"}',
    b"\xff\xfe",
    b"[]",
    b'{"type": "Nothing", "schema_version": 1}',
]


def casebook_settings(db: CasebookDb, env: Env, rejected_topic: str) -> dict[str, str]:
    return {
        "RELIEF_KAFKA_BOOTSTRAP": env.bootstrap,
        "RELIEF_DATABASE_URL": db.app_url,
        "RELIEF_DATABASE_OWNER_URL": db.owner_url,
        "RELIEF_INTAKE_TOPIC": env.intake,
        "RELIEF_DECISIONS_TOPIC": env.decisions,
        "RELIEF_REJECTED_TOPIC": rejected_topic,
        "RELIEF_EMERGENCY_APP_ID": env.vars["RELIEF_EMERGENCY_APP_ID"],
        "RELIEF_CASEBOOK_METRICS_PORT": "0",
    }


def start_casebook(
    command: str, db: CasebookDb, env: Env, log: Path, rejected_topic: str
) -> subprocess.Popen[bytes]:
    """`python -m services.casebook COMMAND` (run, rebuild) on `db` and the story's topics."""
    return start_service(
        ["services.casebook", command],
        log,
        casebook_settings(db, env, rejected_topic),
        drop_prefix="RELIEF_CASEBOOK_",
    )


async def positions(db: CasebookDb) -> dict[tuple[str, int], int]:
    """The casebook's stored positions ({} while PostgreSQL cannot be reached)."""
    try:
        conn = await asyncpg.connect(db.app_url, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return {}
    try:
        found = await conn.fetch("SELECT topic, partition, next_offset FROM casebook.positions")
        return {(r["topic"], r["partition"]): int(r["next_offset"]) for r in found}
    finally:
        await conn.close()


async def granted_in_casebook(db: CasebookDb, cases: set[str]) -> bool:
    """Every case of `cases` has its grant folded into the casebook."""
    conn = await asyncpg.connect(db.app_url, timeout=5)
    try:
        held = await conn.fetchval(
            "SELECT count(DISTINCT body->>'correlation_id') FROM casebook.decisions "
            "WHERE type = 'AdvanceGranted' AND body->>'correlation_id' = ANY($1)",
            list(cases),
        )
        return int(held) == len(cases)
    finally:
        await conn.close()


async def read_decisions(
    bootstrap: str, topic: str
) -> tuple[list[Decision], dict[tuple[int, int], datetime]]:
    """Every record of `topic` up to its end now: the decisions, and the broker stamps of
    the records that are no decision, by (partition, offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    good: list[Decision] = []
    bad: dict[tuple[int, int], datetime] = {}
    try:
        tps = [TopicPartition(topic, p) for p in (await end_offsets(bootstrap, topic))]
        consumer.assign(tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        for tp in tps:
            await consumer.seek_to_beginning(tp)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for tp, msgs in (await consumer.getmany(timeout_ms=2_000)).items():
                for m in msgs:
                    try:
                        record = decode(m.value or b"")
                    except RecordError:
                        record = None
                    if isinstance(record, Decision):
                        good.append(record)
                    else:
                        bad[(tp.partition, m.offset)] = datetime.fromtimestamp(
                            m.timestamp / 1000, UTC
                        )
    finally:
        await consumer.stop()
    return good, bad


async def test_casebook_dead_letters_refused_by_kafka_under_load_skip_nothing(
    cluster: Cluster,
    env: Env,
    worker: list[subprocess.Popen[bytes]],
    consumers: list[subprocess.Popen[bytes]],
    reliability: Callable[..., Figures],
) -> None:
    towns = load_county().codes()
    n_cases = 2_000
    cases = requests_over(towns, n_cases, "cbdlq")
    dlq = f"{env.rejected}.casebook"
    await strict_topic(env.bootstrap, dlq)
    topics = (env.decisions, dlq, env.intake)
    stack = cluster_stack(cluster)
    async with casebook_database(stack) as db, casebook_database(stack) as replayed:
        casebook_log = env.log.with_name("casebook.log")

        def casebook() -> subprocess.Popen[bytes]:
            return start_casebook("run", db, env, casebook_log, rejected_topic=dlq)

        def its_log() -> str:
            return casebook_log.read_text(errors="replace")[-3000:]

        async def nothing_stepped_over(slipped: Slipped) -> None:
            held = await positions(db)
            for partition, offset in slipped:
                at = held.get((env.decisions, partition), 0)
                assert at <= offset, f"the casebook stepped over {partition}@{offset}: {at}"

        casebooks = consumers
        casebooks.append(casebook())
        refused = await refuse_dead_letters(
            cluster,
            env,
            worker,
            towns=towns,
            cases=cases,
            dlq=dlq,
            onto=env.decisions,
            bad=BAD,
            consumers=casebooks,
            start=casebook,
            caught_up=lambda backlog: granted_in_casebook(db, backlog),
            while_down=nothing_stepped_over,
        )
        exits, slipped = refused.exits, refused.slipped

        wanted = {c.correlation_id for c in cases}
        deadline = asyncio.get_running_loop().time() + AFTER_CRASH_S
        while True:  # every case granted, and the casebook at the end of every topic
            ends = {  # an empty partition has no stored position
                (t, p): o
                for t in topics
                for p, o in (await end_offsets(env.bootstrap, t)).items()
                if o > 0
            }
            held = await positions(db)
            if held == ends and await granted_in_casebook(db, wanted):
                break
            assert asyncio.get_running_loop().time() < deadline, (
                f"the casebook at {held} of {ends}; its log:\n{its_log()}"
            )
            restart_if_exited(casebooks, casebook, exits)
            assert worker[0].poll() is None, "the processor exited"
            await asyncio.sleep(1)
        casebooks[-1].terminate()
        await asyncio.to_thread(casebooks[-1].wait, 30)

        decisions, unread = await read_decisions(env.bootstrap, env.decisions)
        reliability(
            fault="the casebook's dead letters refused (a broker of their topic SIGKILLed for "
            "45 s); recovery: the casebook's",
            sent=n_cases,
            accepted=wanted,
            decisions=decisions,
            recovery_s=await refused.load.recovery_s(),
        )
        await granted_once(decisions, wanted, env)
        assert sorted(unread) == sorted(slipped), "the decisions topic holds other bad records"
        live = await rows(db.app_url)
        folded = [r[0] for r in live["decisions"]]  # event_id, the table's key
        assert sorted(folded) == sorted({d.event_id for d in decisions}), (
            "the casebook's decisions are not the topic's good ones, each once"
        )

        letters = await dead_letters(env.bootstrap, dlq)
        by_id = {r.rejected_id: r for r in letters}
        assert len(by_id) == len(BAD), f"{len(by_id)} bad records dead-lettered of {len(BAD)}"
        assert len({r.model_dump_json() for r in letters}) == len(BAD), "a letter re-sent changed"
        assert {(r.source_topic, r.partition, r.offset) for r in letters} == {
            (env.decisions, p, o) for p, o in slipped
        }
        assert {(r.partition, r.offset): r.rejected_at for r in letters} == unread
        assert sorted(r.raw_length for r in by_id.values()) == sorted(len(b) for b in BAD)

        # a replay of the same topics into an empty database gives the same rows
        replay = start_casebook("rebuild", replayed, env, casebook_log, rejected_topic=dlq)
        consumers.append(replay)  # stopped, should it not finish
        code = await asyncio.to_thread(replay.wait, AFTER_CRASH_S)
        assert code == 0, f"the replay exited {code}:\n{its_log()}"
        again = await rows(replayed.app_url)
        # the replay sends its own (identical) letters for the bad records onto the topic
        # it reads, and may read some of them before it stops: the dead-letter topic's
        # positions are the one thing a replay may place further on
        for table in live:
            if table == "positions":
                assert [r for r in again[table] if r[0] != dlq] == [
                    r for r in live[table] if r[0] != dlq
                ]
            else:
                assert again[table] == live[table], f"casebook.{table} differs after a replay"
        assert len({r.rejected_id for r in await dead_letters(env.bootstrap, dlq)}) == len(BAD)

    print(
        f"{n_cases} cases, {len(BAD)} bad decisions; the casebook exited {exits} while its "
        f"dead letters were refused, {len(letters)} letters sent for {len(by_id)} records"
    )
