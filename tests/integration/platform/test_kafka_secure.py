"""`up --secure`: the local Kafka with SASL/SCRAM and an ACL per service principal
(issue 13, item 8). A broker of its own (temporary state folder, other ports): a client
without credentials can neither write intake nor read postings; intake may write intake
and not read postings; the ledger reads postings and cannot write intake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from relief_platform.kafka_security import KafkaSecurity
from schemas import topics
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    state = tmp_path_factory.mktemp("secure-kafka")
    port = free_port()
    env = {
        **os.environ,
        "RELIEF_STATE_DIR": str(state),
        "RELIEF_LOCAL_KAFKA_PORT": str(port),
        "RELIEF_LOCAL_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    code = (
        "import asyncio\nfrom deploy.local import stack\nfrom relief_platform import topics\n"
        "stack.kafka_up(stack.local_info(), 1, secure=True)\n"
        "asyncio.run(topics.ensure_topics(stack.kafka_bootstrap(), 1, 1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    try:
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        yield f"127.0.0.1:{port}", state
    finally:
        subprocess.run(
            [sys.executable, "-c", "from deploy.local import stack\nstack.kafka_down()"],
            cwd=ROOT, env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def as_(state: Path, principal: str | None) -> dict[str, Any]:
    if principal is None:
        return {}
    import tomllib

    passwords = tomllib.loads((state / "kafka-credentials.toml").read_text())
    return KafkaSecurity(
        security_protocol="SASL_PLAINTEXT",
        sasl_username=principal,
        sasl_password=passwords[principal],
    ).client_options()


async def can_write(bootstrap: str, options: dict[str, Any], topic: str) -> bool:
    producer = AIOKafkaProducer(
        **options, bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5_000
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"probe", key=b"370321101")
        return True
    except KafkaError:
        return False
    finally:
        await producer.stop()


async def can_read(bootstrap: str, options: dict[str, Any], topic: str) -> bool:
    consumer = AIOKafkaConsumer(
        **options, bootstrap_servers=bootstrap, request_timeout_ms=5_000,
        enable_auto_commit=False,
    )  # fmt: skip
    try:
        await consumer.start()
        part = TopicPartition(topic, 0)
        consumer.assign([part])
        await consumer.seek_to_beginning(part)
        await consumer.getmany(timeout_ms=3_000)
        await consumer.position(part)
        return True
    except KafkaError:
        return False
    finally:
        await consumer.stop()


async def test_without_credentials_nothing_and_each_service_only_its_own(
    secure_kafka: tuple[str, Path],
) -> None:
    bootstrap, state = secure_kafka
    assert not await can_write(bootstrap, as_(state, None), topics.INTAKE)
    assert not await can_read(bootstrap, as_(state, None), topics.POSTINGS)
    # a wrong password is no better
    wrong = {**as_(state, "intake"), "sasl_plain_password": "guess"}
    assert not await can_write(bootstrap, wrong, topics.INTAKE)

    assert await can_write(bootstrap, as_(state, "intake"), topics.INTAKE)
    assert not await can_read(bootstrap, as_(state, "intake"), topics.POSTINGS)
    assert not await can_write(bootstrap, as_(state, "intake"), topics.POSTINGS)
    assert await can_write(bootstrap, as_(state, "emergency"), topics.POSTINGS)
    assert await can_read(bootstrap, as_(state, "ledger"), topics.POSTINGS)
    assert not await can_write(bootstrap, as_(state, "ledger"), topics.INTAKE)
    assert not await can_write(bootstrap, as_(state, "clock"), topics.DECISIONS)
