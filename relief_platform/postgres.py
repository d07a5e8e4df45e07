"""PostgreSQL plumbing every service that stores rows shares: a pool, and bounded retries
of a transaction when the server restarts or fails over."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TypeVar

import asyncpg
from asyncpg.pool import Pool

log = logging.getLogger("relief.postgres")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter (STYLE "a limit on everything")."""

    attempts_max: int = 10
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        capped: float = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return capped * (0.5 + random.random() / 2)


# What a PostgreSQL restart or failover looks like from the client: the transaction was
# rolled back (or, if the commit itself was cut, maybe not — a retry is then a no-op,
# because every writer deduplicates its rows and positions by key).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P03 starting up
    asyncpg.exceptions.SerializationError,  # 40001
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, ...
    asyncpg.InterfaceError,  # "connection is closed" and the like
    asyncpg.InternalClientError,  # a connection cut mid-protocol (e.g. during COPY)
    ConnectionError,
    OSError,
    TimeoutError,
)


async def with_retries(action: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    for attempt in range(policy.attempts_max):
        try:
            return await action()
        except TRANSIENT_ERRORS as exc:
            if attempt + 1 >= policy.attempts_max:
                raise
            delay = policy.delay_s(attempt)
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.2f s",
                what,
                type(exc).__name__,
                exc,
                attempt + 1,
                policy.attempts_max - 1,
                delay,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def connect_pool(url: str, size_max: int) -> Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=size_max)
    if pool is None:  # pragma: no cover - create_pool returns a pool when awaited
        raise ConnectionError("could not create a connection pool")
    return pool


# A migration file: NNNN_what_it_does.sql, applied in order, each once.
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_in(package: str) -> list[Migration]:
    """The migrations a package ships, in order; versions must run 1..n without gaps."""
    found = []
    for item in resources.files(package).iterdir():
        match = MIGRATION_NAME.fullmatch(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{package}: migration versions must be 1..n without gaps: {versions}")
    return found


# ---------------------------------------------------------------- least privilege

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_role(name: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"role name {name!r} is not a plain identifier")
    return f'"{name}"'


async def harden(conn: asyncpg.Connection, schema: str) -> None:
    """What every migration run leaves behind, as the owner (issue: least privilege):

    - no role but the owner may create TEMP tables in the database (a temp table shadows
      a real one for a function that looks names up through search_path) nor objects in
      the `public` schema;
    - every function of `schema` runs with a pinned search_path (pg_catalog, then its own
      schema), so a trigger cannot be made to call someone else's look-alike.

    Owner-only statements on objects the migrator does not own only warn (PostgreSQL
    skips them); whoever owns the database then makes the same grants."""
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
    await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    functions = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS signature
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $1 AND p.proowner = (SELECT oid FROM pg_roles
                                                     WHERE rolname = current_user)""",
        schema,
    )
    for f in functions:
        await conn.execute(
            f"ALTER FUNCTION {f['signature']} SET search_path = pg_catalog, "
            + (await conn.fetchval("SELECT quote_ident($1)", schema))
        )


async def role_exists(conn: asyncpg.Connection, role: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role))
