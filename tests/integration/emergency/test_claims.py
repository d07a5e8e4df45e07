"""P6 across towns on the real Kafka: the county's claims stage and the town processor,
each its own process (docs/design.md "one household, many towns").

A household of the flood is granted in Qifeng; the same household asking in Tianzhuang is
refused with the first grant named; Qifeng cancels its advance, the release reaches the
claims stage, and the household's next request in Tianzhuang is granted. Then the claims
stage is killed and started again, and the topic is read back: every request forwarded,
none granted twice.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas import decisions as d
from schemas import intake as i
from schemas.registry import encode
from schemas.topics import CLAIMS_KEY
from tests.integration.emergency.test_worker import (
    QIFENG,
    ROOT,
    TIANZHUANG,
    TOWN,
    Env,
    _env,
    consume_until,
    flood,
    produce,
    request,
    stop_processes,
)

pytestmark = pytest.mark.integration


class ClaimsEnv(Env):
    def __init__(self, bootstrap: str, unique: str, tmp: Path) -> None:
        super().__init__(bootstrap, unique, tmp)
        self.claims = f"test.claims.{unique}"
        self.vars["RELIEF_CLAIMS_TOPIC"] = self.claims
        self.vars["RELIEF_CLAIMS_APP_ID"] = f"test-claims-{unique}"
        self.vars["RELIEF_CLAIMS_METRICS_PORT"] = "0"
        self.claims_log = tmp / "claims.log"

    def start_claims(self) -> subprocess.Popen[bytes]:
        out = open(self.claims_log, "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            [sys.executable, "-m", "services.emergency", "claims", "--loglevel", "warn"],
            cwd=ROOT,
            env=self.vars,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def cenv(
    stack: local_stack.StackInfo, unique: str, tmp_path: Path
) -> AsyncIterator[ClaimsEnv]:
    e = ClaimsEnv(stack.kafka_bootstrap, unique, tmp_path)
    await ensure_topics(
        stack.kafka_bootstrap,
        partitions=3,
        names={
            e.intake: {"message.timestamp.type": "LogAppendTime"},
            e.decisions: {},
            e.postings: {},
            e.rejected: {},
        },
    )
    await ensure_topics(
        stack.kafka_bootstrap,
        partitions=1,  # the claims topic: one partition, keyed by the county
        names={e.claims: {"message.timestamp.type": "LogAppendTime"}},
    )
    yield e


@pytest.fixture
def procs() -> Any:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    stop_processes(running, wait_s=20)


async def claim(bootstrap: str, topic: str, records: list[i.ReliefRequested]) -> None:
    """Write requests as intake does: to the claims topic, keyed by the county."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, key=CLAIMS_KEY.encode(), value=encode(r))
    finally:
        await producer.stop()


async def releases(bootstrap: str, topic: str, count: int, timeout_s: float = 60) -> list[Any]:
    """The releases on the claims topic (JSON objects), once `count` are there."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    value = json.loads(m.value or b"{}")
                    if value.get("type") == "ClaimReleased":
                        found.append(value)
        return found
    finally:
        await consumer.stop()


def of_case(records: list[Any], town: str, case: str) -> list[Any]:
    return [r for r in records if getattr(r, "town", None) == town and r.correlation_id == case]


def decided(*cases: tuple[str, str]) -> Any:
    return lambda got: all(
        any(isinstance(r, d.AdvanceGranted | d.AdvanceRefused) for r in of_case(got, t, c))
        for t, c in cases
    )


async def test_a_household_granted_in_qifeng_is_refused_in_tianzhuang_until_cancelled(
    cenv: ClaimsEnv, procs: list[subprocess.Popen[bytes]]
) -> None:
    procs.append(cenv.start_worker())
    procs.append(cenv.start_claims())
    await produce(cenv.bootstrap, cenv.intake, [flood(QIFENG), flood(TIANZHUANG)])
    first = request(QIFENG, "q-1", 7)
    await claim(cenv.bootstrap, cenv.claims, [first])
    got = await consume_until(cenv.bootstrap, cenv.decisions, decided((QIFENG, "q-1")), 120, procs)
    [granted] = [r for r in of_case(got, QIFENG, "q-1") if isinstance(r, d.AdvanceGranted)]

    # the same household, the same flood, another town: refused, the first grant named
    second = request(TIANZHUANG, "t-1", 7)
    await claim(cenv.bootstrap, cenv.claims, [second])
    got = await consume_until(
        cenv.bootstrap, cenv.decisions, decided((TIANZHUANG, "t-1")), 60, procs
    )
    [refused] = of_case(got, TIANZHUANG, "t-1")
    assert isinstance(refused, d.AdvanceRefused), refused
    assert refused.rule == "P6" and refused.reason is d.RefusalReason.DUPLICATE
    assert refused.figures["previous_case_id"] == "q-1"
    assert refused.figures["previous_town"] == QIFENG
    assert "q-1" in refused.reasons and QIFENG in refused.reasons

    # Qifeng cancels its advance: the release goes back to the county's stage
    cancel = i.AdvanceCancelled(**_env(QIFENG, "q-1", TOWN), reason="已获保险赔付")
    await produce(cenv.bootstrap, cenv.intake, [cancel])
    [release] = await releases(cenv.bootstrap, cenv.claims, 1)
    assert release["request_id"] == str(first.event_id) and release["town"] == QIFENG
    assert release["reason"] == "cancelled"

    # the household asks again in Tianzhuang: now granted
    third = request(TIANZHUANG, "t-2", 7)
    await claim(cenv.bootstrap, cenv.claims, [third])
    got = await consume_until(
        cenv.bootstrap, cenv.decisions, decided((TIANZHUANG, "t-2")), 60, procs
    )
    assert any(isinstance(r, d.AdvanceGranted) for r in of_case(got, TIANZHUANG, "t-2"))
    assert granted.amount_fen == 80_000

    # the claims stage dies and comes back; a forward written again grants nothing twice
    claims_proc = procs[1]
    claims_proc.kill()
    claims_proc.wait(10)
    more = [request(QIFENG, f"q-more-{n}", 100 + n) for n in range(5)]
    await claim(cenv.bootstrap, cenv.claims, more)
    await claim(cenv.bootstrap, cenv.claims, [first])  # the first request again
    procs.append(cenv.start_claims())
    cases = [(QIFENG, f"q-more-{n}") for n in range(5)]
    got = await consume_until(cenv.bootstrap, cenv.decisions, decided(*cases), 120, procs[:1])
    grants = [r for r in got if isinstance(r, d.AdvanceGranted)]
    assert len(grants) == len({(g.town, g.correlation_id) for g in grants}) == 7
    forwarded = await consume_until(
        cenv.bootstrap, cenv.intake, lambda got: len(
            [r for r in got if isinstance(r, i.ReliefRequested)]
        ) >= 9, 30,
    )  # fmt: skip
    requests = [r for r in forwarded if isinstance(r, i.ReliefRequested)]
    assert all(r.claim is not None for r in requests)
    verdicts = {(r.town, r.correlation_id): r.claim.verdict for r in requests if r.claim}
    assert verdicts[(TIANZHUANG, "t-1")] is i.ClaimVerdict.DUPLICATE
    assert verdicts[(TIANZHUANG, "t-2")] is i.ClaimVerdict.FREE
    # (the first request again: its marks were released, so it is free again - and the
    # town keeps a request once by its case and event id: no second grant for q-1)
    assert len([g for g in grants if g.correlation_id == "q-1"]) == 1
