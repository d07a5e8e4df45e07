"""How fast the casebook folds decisions: Kafka to PostgreSQL, positions with the rows.

    python benchmarks/casebook_bench.py [--cases 20000] [--batch 5000]

Creates a scratch database on the server of RELIEF_DATABASE_ADMIN_URL (default: the local
stack) and topics of its own on RELIEF_KAFKA_BOOTSTRAP, produces the decisions of
--cases urgent cases over nine towns (a grant, a payment and its deadline met: three
decisions each) and each case's two submissions, then times the casebook's consumer
reading everything from the start (what `rebuild` does).

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from relief_platform import kafka_security

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas import decisions as d
from schemas.envelope import Actor, Role, derived_id
from schemas.intake import PaymentConfirmed
from schemas.registry import encode
from services.casebook.adapters import postgres
from services.casebook.app import consumer_for
from services.casebook.settings import CasebookSettings

TOWNS = [f"3703211{n:02d}" for n in range(9)]
START = datetime(2026, 7, 1, tzinfo=UTC)
SYSTEM = Actor(role=Role.SYSTEM, org="relief-emergency")
TOWN = Actor(role=Role.TOWN, org="镇人民政府")


def records(cases: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(decisions, intake records) as (key, value) pairs."""
    decisions: list[tuple[str, bytes]] = []
    intake: list[tuple[str, bytes]] = []
    for n in range(cases):
        town, case = TOWNS[n % len(TOWNS)], f"case-{n}"
        at = START + timedelta(seconds=n)
        request, payment = uuid.uuid4(), uuid.uuid4()

        def env(
            cause: uuid.UUID, kind: str, at: datetime = at, town: str = town, case: str = case
        ) -> dict[str, object]:
            return {
                "event_id": derived_id(cause, kind),
                "occurred_at": at,
                "town": town,
                "actor": SYSTEM,
                "correlation_id": case,
                "causation_id": cause,
            }

        grant = d.AdvanceGranted(
            **env(request, "advance"),
            rule="R5+P3",
            figures={"amount_fen": 80_000},
            amount_fen=80_000,
            due_at=at + timedelta(hours=24),
            paperwork_due_at=at + timedelta(days=5),
            case_status=d.CaseStatus.ADVANCED,
        )
        later = at + timedelta(hours=2)
        paid = d.ReliefPaid(
            **env(payment, "paid", later),
            rule="R5",
            amount_fen=80_000,
            funded_by=d.FundedBy.TOWN_RESERVE,
            case_status=d.CaseStatus.PAID,
        )
        met = d.DeadlineMet(
            **env(payment, "met", later),
            rule="R5",
            deadline=d.DeadlineKind.RELIEF_24H,
            due_at=grant.due_at,
            case_status=d.CaseStatus.PAID,
        )
        decisions += [(town, encode(x)) for x in (grant, paid, met)]
        confirm = PaymentConfirmed(
            event_id=payment,
            occurred_at=later,
            town=town,
            actor=TOWN,
            correlation_id=case,
            amount_fen=80_000,
            bank_reference=f"BANK-{n}",
        )
        intake.append((town, encode(confirm)))
    return decisions, intake


async def produce(bootstrap: str, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, key=k.encode(), value=v) for k, v in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def main(cases: int, batch: int) -> None:
    info = local_stack.local_info()
    bootstrap = os.environ.get("RELIEF_KAFKA_BOOTSTRAP", info.kafka_bootstrap)
    admin_url = os.environ.get("RELIEF_DATABASE_ADMIN_URL", info.admin_url)
    tag = uuid.uuid4().hex[:8]
    name = f"bench_casebook_{tag}"

    def on(url: str) -> str:
        return url.rsplit("/", 1)[0] + "/" + name

    admin = await asyncpg.connect(admin_url.rsplit("/", 1)[0] + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    try:
        owner = on(os.environ.get("RELIEF_DATABASE_OWNER_URL", info.owner_url))
        app = on(os.environ.get("RELIEF_DATABASE_URL", info.app_url))
        await postgres.migrate(owner, local_stack.APP_ROLE)
        topics = {n: f"bench.cb.{n}.{tag}" for n in ("intake", "decisions", "rejected")}
        await ensure_topics(bootstrap, 6, 1, names={t: {} for t in topics.values()})
        decided, intake = records(cases)
        started = time.perf_counter()
        await produce(bootstrap, topics["decisions"], decided)
        await produce(bootstrap, topics["intake"], intake)
        print(
            f"produced {len(decided)} decisions, {len(intake)} submissions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        settings = CasebookSettings(
            kafka_bootstrap=bootstrap,
            database_url=app,
            database_owner_url=owner,
            intake_topic=topics["intake"],
            decisions_topic=topics["decisions"],
            rejected_topic=topics["rejected"],
            casebook_batch_max=batch,
        )
        pool = await postgres.connect_pool(app, 2)
        try:
            consumer = consumer_for(settings, pool)
            started = time.perf_counter()
            await consumer.run(asyncio.Event(), until_caught_up=True)
            elapsed = time.perf_counter() - started
        finally:
            await pool.close()
        c = consumer.counts
        print(
            f"casebook: {c.decisions} decisions and {c.submissions} submissions in "
            f"{elapsed:.1f} s = {c.decisions / elapsed:,.0f} decisions/s "
            f"({(c.decisions + c.submissions) / elapsed:,.0f} records/s), batches of {batch}"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.cases, args.batch))
