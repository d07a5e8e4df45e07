"""Idempotency keys shared by every intake instance: two intake *processes* (as the two
Kubernetes replicas) on one PostgreSQL; a retry that lands on the other instance, or the
same request sent to both at once, is recorded once (the real topic is read back)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from deploy.local import stack as local_stack
from services.intake.adapters import idempotency_store
from tests.integration.intake.conftest import Topic
from tests.integration.intake.test_refusals import case
from tests.integration.servers import free_port
from tests.unit.intake.people import KEY_HEX, auth, tokens_toml

pytestmark = pytest.mark.integration


def _on(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


@pytest.fixture
async def keys_db(stack: local_stack.StackInfo, fresh_database: str) -> AsyncIterator[str]:
    """A fresh database with the intake schema; the service role's URL."""
    name = fresh_database.rsplit("/", 1)[1]
    await idempotency_store.migrate(_on(stack.owner_url, name), local_stack.APP_ROLE)
    yield _on(stack.app_url, name)


@contextlib.contextmanager
def intake_process(
    stack: local_stack.StackInfo, topic: str, keys_url: str, tokens: Path
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RELIEF_INTAKE_TOPIC": topic,
        "RELIEF_ID_HASH_KEY": KEY_HEX,
        "RELIEF_INTAKE_TOKENS_FILE": str(tokens),
        "RELIEF_INTAKE_KEYS_DATABASE_URL": keys_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.intake", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/livez", timeout=1).status_code < 500:
                    break
            assert time.monotonic() < deadline, "intake did not start within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_two_intake_processes_share_their_idempotency_keys(
    stack: local_stack.StackInfo, topic: Topic, keys_db: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml(), encoding="utf-8")
    with (
        intake_process(stack, topic.name, keys_db, tokens) as a,
        intake_process(stack, topic.name, keys_db, tokens) as b,
    ):
        async with httpx.AsyncClient(timeout=30) as http:
            # a retry that lands on the other instance gets the first answer
            headers = {**auth("tok-suozhen"), "Idempotency-Key": "zhang-on-two-replicas"}
            first = await http.post(a + "/v1/cases", headers=headers, json=case())
            assert first.status_code == 202, first.text
            again = await http.post(b + "/v1/cases", headers=headers, json=case())
            assert again.status_code == 202 and again.json() == first.json()
            assert again.headers["Idempotent-Replayed"] == "true"
            # ... and with another body, a 409 naming what differs, from either
            changed = await http.post(
                b + "/v1/cases", headers=headers, json=case(requested_fen=90_000)
            )
            assert changed.status_code == 409
            assert changed.json()["differing_fields"] == ["requested_fen"]

            # the same request sent to both at once: one record, one answer
            both = {**auth("tok-suozhen"), "Idempotency-Key": "liu-at-once"}
            answers = await asyncio.gather(
                *(
                    http.post(url + "/v1/cases", headers=both, json=case(case_id="liu-1"))
                    for url in (a, b, a, b)
                )
            )
            assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
            assert len({r.json()["event_id"] for r in answers}) == 1

            # a write without a key is refused, and says why
            bare = await http.post(
                a + "/v1/cases",
                headers={"Authorization": "Bearer tok-suozhen"},
                json=case(case_id="no-key"),
            )
            assert bare.status_code == 428
            assert "Idempotency-Key" in bare.json()["detail"]

    landed = await topic.records()
    assert len(landed) == 2  # zhang once, liu once
    conn = await asyncpg.connect(keys_db)
    try:
        kept = await conn.fetch("SELECT key, status FROM intake.idempotency ORDER BY key")
    finally:
        await conn.close()
    assert [(r["key"], r["status"]) for r in kept] == [
        ("liu-at-once", 202),
        ("zhang-on-two-replicas", 202),
    ]


async def test_concurrent_claims_share_a_transaction_and_each_key_is_held_once(
    keys_db: str,
) -> None:
    """Claims and answers are committed in batches: 300 concurrent requests, 30 of them
    repeating another's key (some in the same batch as the first), on real PostgreSQL."""
    from services.intake.adapters.idempotency_store import Answered, Claimed, PostgresKeys
    from services.intake.domain.idempotency import Answer, Fingerprint

    pool = await asyncpg.create_pool(keys_db, min_size=1, max_size=4)
    assert pool is not None
    keys = PostgresKeys(pool, retention_s=3600, claim_s=30, wait_s=5, batch_max=64)
    produced: list[str] = []

    async def request(key: str) -> Answer:
        fingerprint = Fingerprint("register_case", {"case_id": key})
        found = await keys.claim("起凤镇人民政府", key, fingerprint)
        if isinstance(found, Answered):
            assert found.fingerprint == fingerprint
            return found.answer
        assert isinstance(found, Claimed)
        produced.append(key)
        await asyncio.sleep(0.01)  # Kafka's acknowledgement
        answer = Answer(202, {"event_id": f"ev-{key}"})
        await keys.complete("起凤镇人民政府", key, answer)
        return answer

    try:
        names = [f"k{i}" for i in range(270)] + [f"k{i}" for i in range(0, 270, 9)]
        answers = await asyncio.gather(*(request(k) for k in names))
        assert sorted(produced) == sorted(set(names))  # each key produced once
        for name, answer in zip(names, answers, strict=True):
            assert answer == Answer(202, {"event_id": f"ev-{name}"})
        # rows written by one transaction share its xmin: 270 answers, one commit each,
        # would be 270 distinct ones
        row = await pool.fetchrow(
            "SELECT count(*), count(DISTINCT xmin::text) FROM intake.idempotency WHERE status = 202"
        )
        assert row is not None
        stored, transactions = row
        assert stored == 270
        assert transactions <= 30, transactions
    finally:
        await keys.close()
        await pool.close()
