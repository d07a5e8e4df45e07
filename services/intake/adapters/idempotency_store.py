"""Idempotency keys in PostgreSQL, shared by every intake instance (the submit path's
store; domain/idempotency.py has the fingerprints and the in-process store).

A write with a key first *claims* the key (one row per organisation and key); the holder
produces the record and stores the answer; a request with the same key on any instance
then gets that answer (or 409 if its body differs). A claim whose holder died (crash
between claim and answer) lapses after `claim_s` and is taken over. An answer is kept for
`retention_s` (stated to clients in the API's description), then removed.

Under load, concurrent requests share one transaction for their claims and one for
their answers (`relief_platform.batching`): a commit, not a row, is what a write costs.

Failure: a produce whose outcome is unknown (a timeout: Kafka may still have the record)
releases the claim, so the retry with the same key produces again — under the same event
id, which the processor applies once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence

import asyncpg

from relief_platform.batching import Batcher
from relief_platform.postgres import (
    Migration,
    harden,
    migrations_in,
    quote_role,
    with_retries,
)
from relief_platform.postgres import RetryPolicy as RetryPolicy
from services.intake.domain.idempotency import Answer, Fingerprint

log = logging.getLogger("relief.intake.idempotency")

MIGRATIONS_PACKAGE = "services.intake.migrations"
MIGRATE_LOCK = "relief.intake.migrate"
# expired keys removed per statement (STYLE "a limit on everything")
PURGE_BATCH = 10_000


class KeyBusy(Exception):
    """Another request with this key is being produced right now (on any instance)."""


@dataclasses.dataclass(frozen=True)
class Claimed:
    """This request holds the key: produce, then `complete` or `release`."""


@dataclasses.dataclass(frozen=True)
class _Claim:
    org: str
    key: str
    operation: str
    fields: str  # the fingerprint's fields, JSON


@dataclasses.dataclass(frozen=True)
class _Answer:
    org: str
    key: str
    status: int
    body: str  # JSON


@dataclasses.dataclass(frozen=True)
class Answered:
    fingerprint: Fingerprint
    answer: Answer


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def migrations() -> list[Migration]:
    return migrations_in(MIGRATIONS_PACKAGE)


async def migrate(owner_url: str, app_role: str) -> list[str]:
    """Create the `intake` schema and apply what is not applied yet, as the owner; the
    service role may read, insert, update and delete keys, nothing else."""
    role = quote_role(app_role)
    applied: list[str] = []
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(MIGRATE_LOCK))
        await conn.execute("CREATE SCHEMA IF NOT EXISTS intake")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS intake.migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL)"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM intake.migrations")
        }
        for m in migrations():
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise RuntimeError(f"migration {m.name} was changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO intake.migrations VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied.append(m.name)
        async with conn.transaction():
            await conn.execute("REVOKE ALL ON SCHEMA intake FROM PUBLIC")
            await conn.execute(f"GRANT USAGE ON SCHEMA intake TO {role}")
            await conn.execute(f"REVOKE ALL ON intake.idempotency FROM PUBLIC, {role}")
            await conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON intake.idempotency TO {role}"
            )
            await harden(conn, "intake")
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(MIGRATE_LOCK))
    finally:
        await conn.close()
    return applied


def _fingerprint(row: asyncpg.Record) -> Fingerprint:
    return Fingerprint(row["operation"], json.loads(row["fields"]))


class PostgresKeys:
    """The shared store of idempotency keys."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retention_s: float,
        claim_s: float,
        wait_s: float,
        retry: RetryPolicy | None = None,
        batch_max: int = 500,
    ) -> None:
        self.pool = pool
        self.retention_s = retention_s
        self.claim_s = claim_s  # a claim lapses after this (its holder died)
        self.wait_s = wait_s  # how long a second request waits for the first's answer
        self.retry = retry or RetryPolicy(attempts_max=3)
        # group commit: concurrent requests share one transaction per batch
        self._claims: Batcher[_Claim, Claimed | Answered | None] = Batcher(
            self._claim_batch, max_items=batch_max, name="idempotency-claims"
        )
        self._answers: Batcher[_Answer, None] = Batcher(
            self._complete_batch, max_items=batch_max, name="idempotency-answers"
        )

    async def claim(self, org: str, key: str, fingerprint: Fingerprint) -> Claimed | Answered:
        """Hold the key for this request, or the first request's answer. Raises KeyBusy
        when another request holds it for longer than `wait_s`."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        fields = json.dumps(dict(fingerprint.fields), sort_keys=True)
        wanted = _Claim(org, key, fingerprint.operation, fields)
        while True:
            found = await self._claims.submit(wanted)
            if found is not None:
                return found
            if asyncio.get_running_loop().time() >= deadline:
                raise KeyBusy(key)
            await asyncio.sleep(0.05)

    async def _claim_batch(self, wanted: Sequence[_Claim]) -> list[Claimed | Answered | None]:
        """Claim many keys in one transaction (one commit for all: the write path's cost
        under load is a commit, not a row). A key twice in one batch: the second looks
        again in the next one."""
        first: dict[tuple[str, str], int] = {}
        for n, w in enumerate(wanted):
            first.setdefault((w.org, w.key), n)
        unique = [wanted[n] for n in first.values()]
        found: dict[tuple[str, str], Claimed | Answered | None] = {}

        async def once() -> None:
            found.clear()
            async with self.pool.acquire() as conn, conn.transaction():
                # insert, or take over a lapsed claim or an expired key; else read it
                claimed = await conn.fetch(
                    """INSERT INTO intake.idempotency AS i
                           (org, key, operation, fields, claimed_until, expires_at)
                       SELECT t.org, t.key, t.operation, t.fields::jsonb,
                              now() + make_interval(secs => $5),
                              now() + make_interval(secs => $6)
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                              AS t(org, key, operation, fields)
                       ON CONFLICT (org, key) DO UPDATE
                           SET operation = EXCLUDED.operation, fields = EXCLUDED.fields,
                               status = NULL, answer = NULL,
                               claimed_until = EXCLUDED.claimed_until,
                               expires_at = EXCLUDED.expires_at
                         WHERE i.expires_at <= now()
                            OR (i.status IS NULL AND i.claimed_until <= now())
                       RETURNING i.org, i.key""",
                    [w.org for w in unique],
                    [w.key for w in unique],
                    [w.operation for w in unique],
                    [w.fields for w in unique],
                    self.claim_s,
                    self.retention_s,
                )
                for row in claimed:
                    found[(row["org"], row["key"])] = Claimed()
                rest = [w for w in unique if (w.org, w.key) not in found]
                if not rest:
                    return
                rows = await conn.fetch(
                    """SELECT i.org, i.key, i.operation, i.fields::text AS fields, i.status,
                              i.answer::text AS answer
                         FROM intake.idempotency i
                         JOIN unnest($1::text[], $2::text[]) AS t(org, key)
                           ON i.org = t.org AND i.key = t.key""",
                    [w.org for w in rest],
                    [w.key for w in rest],
                )
            for row in rows:
                if row["status"] is not None:  # else being produced elsewhere: look again
                    found[(row["org"], row["key"])] = Answered(
                        _fingerprint(row), Answer(int(row["status"]), json.loads(row["answer"]))
                    )

        await with_retries(once, self.retry, "claiming keys")
        return [
            found.get((w.org, w.key)) if first[(w.org, w.key)] == n else None
            for n, w in enumerate(wanted)
        ]

    async def complete(self, org: str, key: str, answer: Answer) -> None:
        body = json.dumps(dict(answer.body), ensure_ascii=False)
        await self._answers.submit(_Answer(org, key, answer.status, body))

    async def _complete_batch(self, answers: Sequence[_Answer]) -> list[None]:
        await with_retries(
            lambda: self.pool.execute(
                """UPDATE intake.idempotency AS i
                      SET status = t.status, answer = t.answer::jsonb
                     FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[])
                          AS t(org, key, status, answer)
                    WHERE i.org = t.org AND i.key = t.key""",
                [a.org for a in answers],
                [a.key for a in answers],
                [a.status for a in answers],
                [a.body for a in answers],
            ),
            self.retry,
            "storing answers",
        )
        return [None] * len(answers)

    async def close(self) -> None:
        """Store what is queued (answers of records Kafka holds), then stop."""
        await self._claims.close()
        await self._answers.close()

    async def release(self, org: str, key: str) -> None:
        """No answer to keep (refused, or the outcome unknown): the next try claims again."""
        await with_retries(
            lambda: self.pool.execute(
                "DELETE FROM intake.idempotency WHERE org = $1 AND key = $2 AND status IS NULL",
                org,
                key,
            ),
            self.retry,
            "releasing a key",
        )

    # ------------------------------------------------------------ many keys at once
    # Bulk intake (issue 14): one statement for a batch of one organisation's keys, with
    # the same rows, rules and lapses as `claim`, `complete` and `release` above.

    async def claim_many(
        self, org: str, wanted: Sequence[tuple[str, Fingerprint]]
    ) -> list[Claimed | Answered | None]:
        """For each (key, fingerprint), in order: Claimed, the first answer, or None when
        another request holds the key right now (ask `claim` for that one, which waits).
        The keys must be distinct."""
        if not wanted:
            return []
        keys = [k for k, _ in wanted]
        operations = [f.operation for _, f in wanted]
        fields = [json.dumps(dict(f.fields), sort_keys=True) for _, f in wanted]

        async def once() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn, conn.transaction():
                # the outer SELECT sees the rows as they were before the INSERT: for a
                # key not claimed here, the row that kept it (answered, or held)
                return await conn.fetch(
                    """WITH input AS (
                           SELECT * FROM unnest($2::text[], $3::text[], $4::text[])
                                         WITH ORDINALITY AS t(key, operation, fields, n)),
                       claimed AS (
                           INSERT INTO intake.idempotency AS i
                               (org, key, operation, fields, claimed_until, expires_at)
                           SELECT $1, key, operation, fields::jsonb,
                                  now() + make_interval(secs => $5),
                                  now() + make_interval(secs => $6)
                             FROM input
                           ON CONFLICT (org, key) DO UPDATE
                               SET operation = EXCLUDED.operation, fields = EXCLUDED.fields,
                                   status = NULL, answer = NULL,
                                   claimed_until = EXCLUDED.claimed_until,
                                   expires_at = EXCLUDED.expires_at
                             WHERE i.expires_at <= now()
                                OR (i.status IS NULL AND i.claimed_until <= now())
                           RETURNING i.key)
                       SELECT input.n, claimed.key IS NOT NULL AS claimed,
                              f.operation, f.fields::text AS fields, f.status,
                              f.answer::text AS answer
                         FROM input
                         LEFT JOIN claimed ON claimed.key = input.key
                         LEFT JOIN intake.idempotency f
                                ON claimed.key IS NULL AND f.org = $1 AND f.key = input.key
                        ORDER BY input.n""",
                    org,
                    keys,
                    operations,
                    fields,
                    self.claim_s,
                    self.retention_s,
                )

        rows = await with_retries(once, self.retry, "claiming keys")
        out: list[Claimed | Answered | None] = []
        for row in rows:
            if row["claimed"]:
                out.append(Claimed())
            elif row["status"] is None:
                out.append(None)
            else:
                out.append(
                    Answered(
                        _fingerprint(row), Answer(int(row["status"]), json.loads(row["answer"]))
                    )
                )
        return out

    async def complete_many(self, org: str, answers: Sequence[tuple[str, Answer]]) -> None:
        if not answers:
            return
        await with_retries(
            lambda: self.pool.execute(
                """UPDATE intake.idempotency AS i SET status = t.status, answer = t.answer::jsonb
                     FROM unnest($2::text[], $3::smallint[], $4::text[]) AS t(key, status, answer)
                    WHERE i.org = $1 AND i.key = t.key""",
                org,
                [k for k, _ in answers],
                [a.status for _, a in answers],
                [json.dumps(dict(a.body), ensure_ascii=False) for _, a in answers],
            ),
            self.retry,
            "storing answers",
        )

    async def release_many(self, org: str, keys: Sequence[str]) -> None:
        if not keys:
            return
        await with_retries(
            lambda: self.pool.execute(
                "DELETE FROM intake.idempotency "
                "WHERE org = $1 AND key = ANY($2::text[]) AND status IS NULL",
                org,
                list(keys),
            ),
            self.retry,
            "releasing keys",
        )

    async def purge(self) -> int:
        """Remove keys past their retention (a bounded batch); how many."""
        status = await self.pool.execute(
            """DELETE FROM intake.idempotency WHERE ctid IN (
                   SELECT ctid FROM intake.idempotency WHERE expires_at <= now() LIMIT $1)""",
            PURGE_BATCH,
        )
        return int(status.split()[-1])


async def purge_every(keys: PostgresKeys, interval_s: float) -> None:
    """Remove expired keys now and then, for as long as the app runs."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await keys.purge()
            if removed:
                log.info("removed %d idempotency keys past their retention", removed)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("idempotency keys not purged: %s", exc)
