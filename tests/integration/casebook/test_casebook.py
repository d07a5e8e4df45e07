"""The casebook on the real Kafka and PostgreSQL: a flood in Qifeng and a fire in
Tianzhuang go through the real rules; the casebook reads their decisions, dead letters
and submissions exactly once and answers by (town, case id)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.decisions import AdvanceGranted, Decision
from schemas.registry import encode
from services.casebook.adapters import postgres as casebook_postgres
from services.casebook.app import consumer_for, rebuild
from tests.integration.casebook.conftest import (
    PARTITIONS,
    WAIT_S,
    CasebookDb,
    Processor,
    Topics,
    eventually,
    produce,
    reader,
    rows,
    running,
    settings_for,
)
from tests.unit.casebook.decisions import granted as granted_decision
from tests.unit.emergency.builders import (
    QIFENG,
    T0,
    TIANZHUANG,
    cancelled,
    incident,
    paid,
    paperwork,
    urgent,
)

FLOOD, FIRE = "flood-0720", "fire-0720"


def story_first_day() -> list[tuple[str, bytes]]:
    """The same case id in two towns; a duplicate (P6); a payment for a case Qifeng does
    not have (refused); an incident that decides nothing."""
    records = [
        incident(FLOOD, town=QIFENG),
        incident(FIRE, town=TIANZHUANG),
        urgent("case-1", 80_000, household=1, inc=FLOOD, town=QIFENG),
        urgent("case-1", 30_000, household=2, inc=FIRE, town=TIANZHUANG),
        urgent("case-2", 50_000, household=3, inc=FLOOD, town=QIFENG),
        urgent("case-3", 50_000, household=4, inc=FLOOD, town=QIFENG),
        urgent("case-dup", 30_000, household=1, inc=FLOOD, town=QIFENG),  # P6: refused
        paid("case-1", 30_000, at=T0, town=TIANZHUANG),
        paid("case-404", 10_000, at=T0, town=QIFENG),  # no such case in Qifeng
    ]
    return [(r.town, encode(r)) for r in records]


def story_second_day() -> list[tuple[str, bytes]]:
    records = [
        paid("case-1", 80_000, at=T0 + timedelta(hours=2), town=QIFENG),
        paperwork("case-1", at=T0 + timedelta(hours=3)),
        cancelled("case-3", at=T0 + timedelta(hours=3)),
    ]
    return [(r.town, encode(r)) for r in records]


async def count(db: CasebookDb, table: str) -> int:
    conn = await asyncpg.connect(db.app_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM casebook.{table}"))
    finally:
        await conn.close()


async def test_two_towns_their_stories_their_deadlines_and_a_rebuild_gives_the_same_rows(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    settings = settings_for(stack, casebook_db, topics)
    processor = Processor(stack.kafka_bootstrap, topics)
    first = await produce(stack.kafka_bootstrap, topics.intake, story_first_day())
    sent = await processor.step()
    decided = [r for r in sent if isinstance(r, Decision)]

    async with running(settings):
        await eventually(
            lambda: _at_least(casebook_db, "decisions", len(decided)), "the first day's decisions"
        )
        # the second day arrives while it runs; the processor re-sends the first day's
        # decisions as a worker does after a crash (same ids): stored once
        await produce(stack.kafka_bootstrap, topics.intake, story_second_day())
        decided += [r for r in await processor.step() if isinstance(r, Decision)]
        await produce(
            stack.kafka_bootstrap,
            topics.decisions,
            [(d.town, encode(d)) for d in decided[:5]],
        )
        await eventually(
            lambda: _at_least(casebook_db, "decisions", len(decided)), "the second day's"
        )
        await eventually(lambda: _at_least(casebook_db, "submissions", 12), "every submission")
        await asyncio.sleep(0.5)  # anything stored twice would show now
    assert await count(casebook_db, "decisions") == len({d.event_id for d in decided})

    async with reader(settings) as cb:
        # the same case id, one case in each town, each with its own story
        qifeng = (await cb.get(f"/v1/towns/{QIFENG}/cases/case-1")).json()
        tianzhuang = (await cb.get(f"/v1/towns/{TIANZHUANG}/cases/case-1")).json()
        assert (qifeng["status"], qifeng["granted_fen"], qifeng["paid_fen"]) == (
            "paid",
            80_000,
            80_000,
        )
        assert (tianzhuang["status"], tianzhuang["paid_fen"]) == ("paid", 30_000)
        # what each request registered, as its first decision carries it
        assert (qifeng["category"], qifeng["requested_fen"], qifeng["incident_id"]) == (
            "emergency",
            80_000,
            FLOOD,
        )
        assert tianzhuang["incident_id"] == FIRE
        assert {d["event_id"] for d in qifeng["decisions"]}.isdisjoint(
            d["event_id"] for d in tianzhuang["decisions"]
        )
        assert [d["type"] for d in qifeng["decisions"]] == [
            "AdvanceGranted",
            "ReliefPaid",
            "DeadlineMet",
            "DeadlineMet",
        ]
        assert {(d["kind"], d["state"]) for d in qifeng["deadlines"]} == {
            ("relief_24h", "met"),
            ("paperwork_5d", "met"),
        }

        # open deadlines: only case-2's, due exactly as its grant says
        [grant_2] = [
            d
            for d in decided
            if isinstance(d, AdvanceGranted) and (d.town, d.correlation_id) == (QIFENG, "case-2")
        ]
        open_now = (await cb.get(f"/v1/towns/{QIFENG}/deadlines")).json()
        assert [(d["case_id"], d["kind"], d["due_at"]) for d in open_now] == [
            ("case-2", "relief_24h", _iso(grant_2.due_at)),
            ("case-2", "paperwork_5d", _iso(grant_2.paperwork_due_at)),
        ]
        assert (await cb.get(f"/v1/towns/{TIANZHUANG}/deadlines")).json() != []  # its paperwork

        # a refusal is a case with its reason; an unknown case is 404 in either town
        dup = (await cb.get(f"/v1/towns/{QIFENG}/cases/case-dup")).json()
        assert dup["status"] == "refused"
        assert [(d["type"], d["rule"]) for d in dup["decisions"]] == [("AdvanceRefused", "P6")]
        # P9: the refusal in words, naming the grant it repeats
        assert "case-1" in dup["decisions"][0]["reason"]
        assert "不重复救助" in dup["decisions"][0]["reason"]
        assert (await cb.get(f"/v1/towns/{TIANZHUANG}/cases/case-2")).status_code == 404
        assert (await cb.get(f"/v1/towns/{QIFENG}/cases/case-404")).status_code == 404

        # finance's open cases: unpaid advances, Qifeng's case-2 only
        unpaid = (await cb.get("/v1/open-cases")).json()
        assert [(c["town"], c["case_id"], c["relief_state"]) for c in unpaid["cases"]] == [
            (QIFENG, "case-2", "open")
        ]
        assert unpaid["total"] == 1
        assert unpaid["by_town"] == {QIFENG: {"open": 1, "breached": 0}}
        # the list stops at its limit; the counts do not
        assert (await cb.get("/v1/open-cases", params={"limit": 1})).json()["total"] == 1

        # without the service token nothing is read
        async with httpx.AsyncClient(
            transport=cb._transport, base_url="http://casebook"
        ) as anonymous:
            assert (await anonymous.get(f"/v1/towns/{QIFENG}/cases/case-1")).status_code == 401

    # the intake offsets of the first day, for the submissions below
    assert len(first) == 9

    live = await rows(casebook_db.app_url)
    counts = await rebuild(settings)
    rebuilt = await rows(casebook_db.app_url)
    assert counts.decisions == len({d.event_id for d in decided})
    for table in live:
        assert rebuilt[table] == live[table], f"casebook.{table} differs after a rebuild"
    assert live["decisions"] and live["cases"] and live["submissions"] and live["rejections"]


async def _at_least(db: CasebookDb, table: str, n: int) -> bool:
    return await count(db, table) >= n


def _iso(moment: datetime | None) -> str:
    assert moment is not None
    return moment.isoformat().replace("+00:00", "Z")


async def test_submissions_decided_rejected_pending_and_scoped(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    settings = settings_for(stack, casebook_db, topics)
    processor = Processor(stack.kafka_bootstrap, topics)
    flood = incident(FLOOD, town=QIFENG)
    request = urgent("case-1", 80_000, household=1, inc=FLOOD, town=QIFENG)
    stray = paid("case-404", 10_000, at=T0, town=QIFENG)
    await produce(
        stack.kafka_bootstrap, topics.intake, [(r.town, encode(r)) for r in (flood, request, stray)]
    )
    await processor.step()
    late = paid("case-1", 80_000, at=T0, town=QIFENG)  # sent, not yet decided

    async with running(settings), reader(settings) as cb:

        async def status(event_id: uuid.UUID, **scope: str) -> str:
            answer = (await cb.get(f"/v1/submissions/{event_id}", params=scope)).json()
            return str(answer["status"])

        await eventually(
            lambda: _is(status(stray.event_id), "rejected"), "the stray payment rejected"
        )
        refused = (await cb.get(f"/v1/submissions/{stray.event_id}")).json()
        assert refused["town"] == QIFENG and refused["type"] == "PaymentConfirmed"
        assert "case-404" in refused["reason"] and refused["decisions"] == []

        await eventually(lambda: _is(status(request.event_id), "decided"), "the request decided")
        granted = (await cb.get(f"/v1/submissions/{request.event_id}")).json()
        assert [d["type"] for d in granted["decisions"]] == ["AdvanceGranted"]
        assert granted["correlation_id"] == "case-1"

        # an incident decides nothing: decided once the processor's group is past it
        await eventually(lambda: _is(status(flood.event_id), "decided"), "the incident read")
        assert (await cb.get(f"/v1/submissions/{flood.event_id}")).json()["decisions"] == []

        # not yet read by the processor, and an id nobody sent: pending
        await produce(stack.kafka_bootstrap, topics.intake, [(late.town, encode(late))])
        assert await status(late.event_id) == "pending"
        assert await status(uuid.uuid4()) == "pending"

        # scoped: Qifeng's token sees its own; Tianzhuang's and another org's see nothing
        assert await status(request.event_id, town=QIFENG) == "decided"
        assert await status(request.event_id, town=TIANZHUANG) == "pending"
        assert await status(stray.event_id, town=TIANZHUANG) == "pending"
        other = await cb.get(f"/v1/submissions/{stray.event_id}", params={"town": TIANZHUANG})
        assert other.json()["reason"] is None and other.json()["town"] is None
        assert await status(request.event_id, org="起凤镇人民政府") == "decided"
        assert await status(request.event_id, org="桓台县应急管理局") == "pending"

        await processor.step()
        await eventually(lambda: _is(status(late.event_id), "decided"), "the late payment")
        paid_now = (await cb.get(f"/v1/submissions/{late.event_id}")).json()
        assert [d["type"] for d in paid_now["decisions"]] == ["ReliefPaid", "DeadlineMet"]


async def _is(answer: Awaitable[str], want: str) -> bool:
    return await answer == want


def _nul_in_a_figure() -> bytes:
    """A decision well-formed in every way but one: a NUL in a figure, which PostgreSQL's
    jsonb refuses — no retry can store it."""
    value = json.loads(encode(granted_decision("case-nul")))
    value["figures"]["note"] = "a\u0000b"
    return json.dumps(value).encode()


@pytest.mark.parametrize("unreadable", ["not a decision", "a NUL in a figure"])
async def test_an_unreadable_decision_is_a_dead_letter_and_the_rest_flow(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics, unreadable: str
) -> None:
    settings = settings_for(stack, casebook_db, topics)
    processor = Processor(stack.kafka_bootstrap, topics)
    await produce(
        stack.kafka_bootstrap,
        topics.intake,
        [(r.town, encode(r)) for r in (incident(FLOOD), urgent("case-9", 80_000, inc=FLOOD))],
    )
    bad = b'{"type": "Nonsense"}' if unreadable == "not a decision" else _nul_in_a_figure()
    await produce(stack.kafka_bootstrap, topics.decisions, [(QIFENG, bad)])
    good = [r for r in await processor.step() if isinstance(r, Decision)]
    async with running(settings):
        await eventually(lambda: _at_least(casebook_db, "decisions", len(good)), "the good ones")
        await eventually(
            lambda: _dead_letters(stack.kafka_bootstrap, topics.rejected, topics.decisions),
            "the dead letter",
        )


async def _dead_letters(bootstrap: str, topic: str, source: str) -> bool:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=1_000)
        return any(source.encode() in (m.value or b"") for ms in batch.values() for m in ms)
    finally:
        await consumer.stop()


async def test_two_writers_on_one_database_fold_each_decision_once(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    """Two consumers at once (a restarted `run` beside a `rebuild`, or a second `run` by
    mistake): they take turns on the writers' lock; the rows equal one writer's."""
    settings = settings_for(stack, casebook_db, topics, casebook_batch_max=3)
    processor = Processor(stack.kafka_bootstrap, topics)
    await produce(stack.kafka_bootstrap, topics.intake, story_first_day() + story_second_day())
    decided = [r for r in await processor.step() if isinstance(r, Decision)]
    async with running(settings), running(settings):
        await eventually(lambda: _at_least(casebook_db, "decisions", len(decided)), "all of it")
        await eventually(lambda: _at_least(casebook_db, "submissions", 12), "every submission")
        await asyncio.sleep(1.0)  # both have read to the end
    both = await rows(casebook_db.app_url)
    await rebuild(settings)
    assert await rows(casebook_db.app_url) == both
    # one writer's counts: Qifeng's case-1 has 4 decisions, not 8
    conn = await asyncpg.connect(casebook_db.app_url)
    try:
        folded = await conn.fetchval(
            "SELECT decisions FROM casebook.cases WHERE town = $1 AND case_id = 'case-1'", QIFENG
        )
    finally:
        await conn.close()
    assert folded == 4


async def test_a_decision_forged_with_the_app_role_is_named_by_verify(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    """The service role may INSERT into a case's story; a decision it adds without the
    writer's seal (a grant nobody made) is named by `verify`, and only that one."""
    settings = settings_for(stack, casebook_db, topics)
    processor = Processor(stack.kafka_bootstrap, topics)
    await produce(stack.kafka_bootstrap, topics.intake, story_first_day())
    decided = [r for r in await processor.step() if isinstance(r, Decision)]
    async with running(settings):
        await eventually(lambda: _at_least(casebook_db, "decisions", len(decided)), "all of it")
    sealer = settings.seal_sealer()
    checked, problems = await casebook_postgres.verify_seals(casebook_db.app_url, sealer)
    assert (checked, problems) == (len(decided), [])
    conn = await asyncpg.connect(casebook_db.app_url)  # the service role
    try:
        forged = await conn.fetchval(
            """INSERT INTO casebook.decisions (event_id, town, case_id, type, rule,
                   case_status, causation_id, occurred_at, recorded_at, amount_fen, reason,
                   figures, body, source_partition, source_offset, seal)
               SELECT gen_random_uuid(), town, 'case-forged', type, rule, case_status,
                      causation_id, occurred_at, recorded_at, amount_fen, reason, figures,
                      body, source_partition, source_offset, seal
                 FROM casebook.decisions ORDER BY event_id LIMIT 1
               RETURNING event_id"""
        )  # a real decision's seal, copied: it does not cover another id and case
    finally:
        await conn.close()
    checked, problems = await casebook_postgres.verify_seals(casebook_db.app_url, sealer)
    assert checked == len(decided) + 1
    assert [(p.event_id, p.case_id) for p in problems] == [(forged, "case-forged")]
    assert "forged" in problems[0].reason


async def test_two_shards_fold_what_one_consumer_folds(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    """RELIEF_CASEBOOK_SHARD 0/2 and 1/2 side by side: each reads its own partitions of
    the three topics (a town's records are on one partition number of each), and together
    they store what one consumer replaying everything stores, row for row; each shard
    records how far the processor got on its own intake partitions."""
    processor = Processor(stack.kafka_bootstrap, topics)
    sent = await produce(
        stack.kafka_bootstrap, topics.intake, story_first_day() + story_second_day()
    )
    decided = [r for r in await processor.step() if isinstance(r, Decision)]
    shards = [
        settings_for(stack, casebook_db, topics, casebook_batch_max=4, casebook_shard=f"{k}/2")
        for k in range(2)
    ]
    intake_partitions = {partition for partition, _ in sent}

    async def progress_seen() -> bool:
        conn = await asyncpg.connect(casebook_db.app_url)
        try:
            found = await conn.fetch("SELECT partition FROM casebook.progress")
        finally:
            await conn.close()
        return {r["partition"] for r in found} >= intake_partitions

    async with running(shards[0]), running(shards[1]):
        await eventually(lambda: _at_least(casebook_db, "decisions", len(decided)), "all of it")
        await eventually(lambda: _at_least(casebook_db, "submissions", 12), "every submission")
        await eventually(progress_seen, "each shard's progress on its intake partitions")
    sharded = await rows(casebook_db.app_url)
    # each shard read its own partitions of every topic, and only those
    pool = await casebook_postgres.connect_pool(casebook_db.app_url, 2)
    try:
        for k, settings in enumerate(shards):
            consumer = consumer_for(settings, pool)
            await consumer.run(asyncio.Event(), until_caught_up=True)
            assert consumer.assigned == {
                (t, p)
                for t in (topics.intake, topics.decisions, topics.rejected)
                for p in range(PARTITIONS)
                if p % 2 == k
            }
    finally:
        await pool.close()
    assert await rows(casebook_db.app_url) == sharded  # caught up: nothing more to fold
    await rebuild(settings_for(stack, casebook_db, topics))
    assert await rows(casebook_db.app_url) == sharded


async def test_a_shard_refuses_topics_of_different_partition_counts(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics, unique: str
) -> None:
    other = f"test.cb.decisions4.{unique}"
    await ensure_topics(stack.kafka_bootstrap, PARTITIONS + 1, 1, names={other: {}})
    settings = settings_for(
        stack, casebook_db, dataclasses.replace(topics, decisions=other), casebook_shard="0/2"
    )
    with pytest.raises(RuntimeError, match="one partition count"):
        async with running(settings) as task:
            await asyncio.wait_for(task, WAIT_S)
