"""Reads through intake's read side, fed by the real rules: their postings stored by the
ledger, their decisions projected from a real Kafka topic by the decisions read model."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from deploy.local import stack as local_stack
from deploy.local.topics import ensure_topics
from schemas.postings import Posting
from services.emergency.adapters.outputs import Output
from services.intake.adapters.reads import LedgerReadSource
from services.ledger.adapters import postgres as ledger
from services.ledger.adapters.decisions import DecisionsProjection
from tests.integration.emergency.test_worker import produce
from tests.unit.emergency.builders import (
    QIFENG,
    T0,
    Town,
    cancelled,
    hours,
    incident,
    paid,
    paperwork,
    urgent,
)
from tests.unit.ledger.stories import incoming


async def _store_postings(url: str, outputs: list[Output], first_offset: int) -> None:
    postings = [o.record for o in outputs if isinstance(o.record, Posting)]
    pool = await ledger.connect_pool(url, 1)
    try:
        store = ledger.LedgerStore(pool, ledger.RetryPolicy(3, 0.1, 1.0))
        batch = [incoming(p, offset=first_offset + n) for n, p in enumerate(postings)]
        await store.store_batch(batch, {("ledger.postings.v1", 0): first_offset + len(batch)})
    finally:
        await pool.close()


async def _project(url: str, bootstrap: str, topic: str, rejected: str, want: int) -> int:
    """Run the decisions read model until `want` rows are stored; returns the row count."""
    pool = await ledger.connect_pool(url, 2)
    stop = asyncio.Event()
    projection = DecisionsProjection(
        pool,
        bootstrap=bootstrap,
        topic=topic,
        rejected_topic=rejected,
        batch_max=500,
        poll_timeout_ms=100,
    )
    task = asyncio.create_task(projection.run(stop))
    try:
        for _ in range(300):
            count = int(await pool.fetchval("SELECT count(*) FROM relief_decisions"))
            if count >= want or task.done():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything beyond `want` would arrive now
        return int(await pool.fetchval("SELECT count(*) FROM relief_decisions"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pool.close()


async def test_case_stories_and_open_deadlines_from_decisions(
    ledger_url: str, stack: local_stack.StackInfo, unique: str
) -> None:
    topic, rejected = f"test.decisions.{unique}", f"test.rejected.{unique}"
    await ensure_topics(stack.kafka_bootstrap, partitions=3, names={topic: {}, rejected: {}})
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000, at=T0, household=1))
    town(urgent("case-2", 50_000, at=T0 + hours(1), household=2))
    town(urgent("case-3", 50_000, at=T0 + hours(1), household=3))
    town(urgent("case-dup", 30_000, at=T0 + hours(2), household=1))  # P6: refused
    town(paid("case-1", 80_000, at=T0 + hours(2)))
    town(paperwork("case-1", at=T0 + hours(30)))
    town(cancelled("case-3", at=T0 + hours(3)))
    decisions = [o.record for o in town.outputs if o.topic == "relief.decisions.v1"]
    await _store_postings(ledger_url, town.outputs, 0)
    await produce(stack.kafka_bootstrap, topic, decisions)  # type: ignore[arg-type]

    stored = await _project(ledger_url, stack.kafka_bootstrap, topic, rejected, len(decisions))
    assert stored == len(decisions)
    # a second run resumes from its stored positions: nothing twice (and a redelivery of
    # the same ids would be a no-op on the primary key)
    assert await _project(ledger_url, stack.kafka_bootstrap, topic, rejected, 0) == stored

    reads = LedgerReadSource(ledger_url, 1, paperwork_deadline=timedelta(days=5))
    try:
        open_now = [(d.case_id, d.kind, d.due_at) for d in await reads.deadlines(QIFENG)]
        assert open_now == [
            ("case-2", "relief_24h", T0 + hours(25)),  # R5: unpaid
            ("case-2", "paperwork_5d", T0 + hours(1) + timedelta(days=5)),  # P1
        ]  # case-1 met both, case-3 was cancelled, case-dup was refused

        refused = await reads.case("case-dup")
        assert refused is not None and refused.status == "refused"
        assert refused.history == []  # no money moved
        [decision] = refused.decisions
        assert (decision.type, decision.rule, decision.reason) == (
            "AdvanceRefused",
            "P6",
            "duplicate",
        )

        story = await reads.case("case-1")
        assert story is not None and story.status == "paid"
        assert [d.type for d in story.decisions] == ["AdvanceGranted", "DeadlineMet", "DeadlineMet"]
    finally:
        await reads.close()

    conn = await asyncpg.connect(ledger_url)
    try:  # the read model is append-only like the journal (P10)
        try:
            await conn.execute("DELETE FROM relief_decisions")
        except asyncpg.PostgresError as exc:
            assert "permission denied" in str(exc) or "append-only" in str(exc)
        else:
            raise AssertionError("the service role deleted decisions")
    finally:
        await conn.close()
