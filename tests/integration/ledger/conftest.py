"""Freshly migrated ledger databases on the real PostgreSQL of the `stack`, and topics on its
real Kafka broker."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from deploy.local import stack as local_stack
from relief_platform.secrets import Sealer
from services.ledger.adapters import postgres
from services.ledger.app import DEV_CHAIN_KEY_HEX

# the writer's seal key in the tests: the services' own development key, so a ledger
# process started by a test (without RELIEF_LEDGER_CHAIN_KEY) seals with the same one
SEALER = Sealer(bytes.fromhex(DEV_CHAIN_KEY_HEX))


@dataclasses.dataclass(frozen=True)
class LedgerDb:
    admin_url: str  # superuser: only tests tamper with the book
    owner_url: str
    app_url: str
    pool: asyncpg.Pool  # as the service role (INSERT, SELECT only)


def _on(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


async def ensure_read_role(admin: asyncpg.Connection) -> None:
    """The read-only role, on a server set up before it existed (as stack.pg_bootstrap)."""
    if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", local_stack.READ_ROLE):
        with contextlib.suppress(asyncpg.DuplicateObjectError):  # a test beside this one
            await admin.execute(
                f'CREATE ROLE "{local_stack.READ_ROLE}" LOGIN NOSUPERUSER NOCREATEROLE'
            )


@contextlib.asynccontextmanager
async def ledger_database(stack: local_stack.StackInfo) -> AsyncIterator[LedgerDb]:
    """An empty database owned by relief_owner, migrated; dropped afterwards."""
    name = f"ledger_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
    try:
        await ensure_read_role(admin)
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    finally:
        await admin.close()
    db_owner = _on(stack.owner_url, name)
    await postgres.migrate(db_owner, local_stack.APP_ROLE, local_stack.READ_ROLE)
    pool = await postgres.connect_pool(_on(stack.app_url, name), 4)
    try:
        yield LedgerDb(_on(stack.admin_url, name), db_owner, _on(stack.app_url, name), pool)
    finally:
        await pool.close()
        admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def ledger_db(stack: local_stack.StackInfo) -> AsyncIterator[LedgerDb]:
    async with ledger_database(stack) as db:
        yield db
