"""Least privilege, through the real PostgreSQL roles: the service role appends and reads
and can do nothing else (no TEMP tables, no new objects), the read role only reads, and
every trigger function runs with a pinned search_path."""

from __future__ import annotations

import asyncpg
import pytest

from deploy.local import stack as local_stack
from services.casebook.adapters import postgres as casebook_postgres
from tests.integration.ledger.conftest import LedgerDb

pytestmark = pytest.mark.integration


def as_role(url: str, role: str) -> str:
    return local_stack.role_url(url, role)  # with the role's password, when it has one


@pytest.fixture
async def both(ledger_db: LedgerDb) -> LedgerDb:
    """One database with the ledger's and the casebook's tables, as in the local stack."""
    await casebook_postgres.migrate(
        ledger_db.owner_url, local_stack.APP_ROLE, local_stack.READ_ROLE
    )
    return ledger_db


@pytest.mark.parametrize("role", [local_stack.APP_ROLE, local_stack.READ_ROLE])
async def test_no_service_role_can_create_temp_tables_or_objects(both: LedgerDb, role: str) -> None:
    conn = await asyncpg.connect(as_role(both.app_url, role))
    try:
        # a temp table named like a real one would shadow it for anything resolving names
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TEMP TABLE ledger_entries (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.ledger_shadow (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE casebook.shadow (x int)")
    finally:
        await conn.close()


async def test_the_read_role_reads_and_writes_nothing(both: LedgerDb) -> None:
    conn = await asyncpg.connect(as_role(both.app_url, local_stack.READ_ROLE))
    try:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0
        assert await conn.fetchval("SELECT count(*) FROM casebook.decisions") == 0
        for statement in (
            "INSERT INTO ledger_positions (topic, partition, next_offset, seal) "
            "VALUES ('t', 0, 1, '\\x00'::bytea)",
            "INSERT INTO casebook.progress (partition, processed_through) VALUES (0, 1)",
            "UPDATE casebook.cases SET status = 'paid'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_every_function_pins_its_search_path(both: LedgerDb) -> None:
    rows = await both.pool.fetch(
        """SELECT n.nspname, p.proname, p.proconfig
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname IN ('public', 'casebook')"""
    )
    assert {r["proname"] for r in rows} >= {
        "ledger_check_posting_balanced",
        "ledger_check_reserves",
        "ledger_refuse_change",
        "refuse_change",
    }
    for r in rows:
        assert f"search_path=pg_catalog, {r['nspname']}" in (r["proconfig"] or []), r["proname"]
