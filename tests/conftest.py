"""Fixtures shared by every test.

`stack` gives the real Kafka broker and PostgreSQL server. When the settings
(RELIEF_KAFKA_BOOTSTRAP, RELIEF_DATABASE_ADMIN_URL, ...) point at servers that answer, they
are used as they are; otherwise the local stack (deploy/local/stack.py) is started once for
the test session and what the fixture started is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import pytest

from deploy.local import stack as local_stack


def _configured_info() -> local_stack.StackInfo:
    local = local_stack.local_info()
    return local_stack.StackInfo(
        kafka_bootstrap=os.environ.get("RELIEF_KAFKA_BOOTSTRAP", local.kafka_bootstrap),
        admin_url=os.environ.get("RELIEF_DATABASE_ADMIN_URL", local.admin_url),
        owner_url=os.environ.get("RELIEF_DATABASE_OWNER_URL", local.owner_url),
        app_url=os.environ.get("RELIEF_DATABASE_URL", local.app_url),
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[local_stack.StackInfo]:
    info = _configured_info()
    kafka_ok = asyncio.run(local_stack.kafka_answers(info.kafka_bootstrap))
    pg_ok = asyncio.run(local_stack.pg_answers(info.admin_url))
    started_pg = started_kafka = False
    if not pg_ok:
        # a cluster made now asks for passwords: the URLs carry the ones it was given
        started = local_stack.pg_up(info)
        if "RELIEF_DATABASE_ADMIN_URL" not in os.environ:
            info = started
        started_pg = True
    if not kafka_ok:
        local_stack.kafka_up(info)
        started_kafka = True
    try:
        yield info
    finally:
        keep = bool(os.environ.get("RELIEF_KEEP_STACK"))
        if started_kafka and not keep:
            local_stack.stop_pid(local_stack.kafka_dir() / "kafka.pid", "kafka")
        if started_pg and not keep:
            local_stack.pg_down()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and database names, so tests never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def fresh_database(stack: local_stack.StackInfo, unique: str) -> AsyncIterator[str]:
    """An empty database owned by relief_owner; yields its admin URL and drops it afterwards."""
    import asyncpg

    name = f"t_{unique}"
    admin_db = stack.admin_url.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_db)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    finally:
        await conn.close()
    yield stack.admin_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(admin_db)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def need_tool(reason: str) -> NoReturn:
    """A tool a test needs is missing. `./run test` installs every such tool, so under CI
    this is a failure (a skipped test proves nothing); on a developer's machine a skip
    that says what to install."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} — ./run test installs it; CI must not skip this test")
    pytest.skip(reason)
