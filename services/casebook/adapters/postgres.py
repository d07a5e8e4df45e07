"""The casebook in PostgreSQL (asyncpg): migrations, the batch writer, the reads.

Exactly once: a batch's rows and the consumer positions they came from are written in
one transaction. A decision id seen again (the processor re-sends a batch it had not
acknowledged) inserts nothing, and only decisions inserted now are folded into the
cases, so a replay changes nothing. Each batch transaction takes one advisory lock
first for each partition it read: two writers of the same partitions (a `rebuild` racing
a restarted `run`) take turns, and whichever inserts a decision first folds it, once;
shards (`RELIEF_CASEBOOK_SHARD`, other partitions: a town's records are on one partition
of each topic) write side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from relief_platform.postgres import TRANSIENT_ERRORS as TRANSIENT_ERRORS
from relief_platform.postgres import Migration, harden, migrations_in, quote_role, role_exists
from relief_platform.postgres import RetryPolicy as RetryPolicy
from relief_platform.postgres import connect_pool as connect_pool
from relief_platform.postgres import with_retries as with_retries
from relief_platform.secrets import Sealer
from schemas.decisions import Decision
from schemas.intake import DisclosurePublished
from services.casebook.domain import hardship, seals
from services.casebook.domain.disclosure import MAX_LIST_ROWS, Approved
from services.casebook.domain.fold import (
    CaseKey,
    CaseRow,
    DeadlineKey,
    DeadlineRow,
    DeadlineState,
    fold,
)
from services.casebook.domain.submissions import (
    MAX_REASON_CHARS,
    Answer,
    Rejection,
    Submitted,
    answer,
    visible,
)
from services.casebook.domain.views import (
    MAX_STORY,
    MAX_SUBMISSION_DECISIONS,
    CaseList,
    CaseStory,
    CaseSummary,
    DeadlineView,
    DecisionEntry,
    HardshipFollowUpView,
    HardshipRows,
    HardshipRowView,
    OpenCase,
    OpenCases,
    SubmissionView,
    TownOpen,
)

log = logging.getLogger("relief.casebook.postgres")

Pool = asyncpg.Pool
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MIGRATIONS_PACKAGE = "services.casebook.migrations"
# The service role's rights, table by table: the story is append-only; the rest is a
# projection that the fold rewrites.
GRANTS = {
    "decisions": "SELECT, INSERT",
    "cases": "SELECT, INSERT, UPDATE",
    "deadlines": "SELECT, INSERT, UPDATE",
    "submissions": "SELECT, INSERT",
    "rejections": "SELECT, INSERT",
    "publications": "SELECT, INSERT",  # P7: append-only
    "hardship_lists": "SELECT, INSERT",  # section 二: append-only
    "hardship_rows": "SELECT, INSERT",
    "hardship_follow_ups": "SELECT, INSERT",  # P9: the first decision on a row stands
    "positions": "SELECT, INSERT, UPDATE",
    "progress": "SELECT, INSERT, UPDATE",
}
WRITER_LOCK = "relief.casebook.writer"
MIGRATE_LOCK = "relief.casebook.migrate"
LOCK_TIMEOUT_MS = 30_000
QUERY_TIMEOUT_S = 10.0


class CasebookDatabaseError(RuntimeError):
    """The database is not in a state the casebook can work with."""


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def _take_turns(conn: Conn, positions: Iterable[tuple[str, int]]) -> None:
    """Writers of the same partitions take turns; shards (other partitions) do not wait
    for each other. Every writer holds the writers' lock shared (a `drop` takes it alone),
    then one lock per partition of its batch, in one order (no deadlock)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _lock_key(WRITER_LOCK))
    keys = sorted({_lock_key(f"{WRITER_LOCK}/{t}/{p}") for t, p in positions})
    await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)


# ---------------------------------------------------------------- migrations


def migrations() -> list[Migration]:
    return migrations_in(MIGRATIONS_PACKAGE)


def _quote_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise CasebookDatabaseError(f"role name {name!r} is not a plain identifier")
    return f'"{name}"'


async def migrate(owner_url: str, app_role: str, read_role: str = "") -> list[str]:
    """Create the casebook's schema and apply the migrations not yet applied, as the
    owner role; grant the service role its rights and the read role (when it exists)
    SELECT only; no TEMP tables, search_path pinned (relief_platform.postgres.harden).
    Idempotent; returns the names applied."""
    applied_now: list[str] = []
    role = _quote_ident(app_role)
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(MIGRATE_LOCK))
        await conn.execute("CREATE SCHEMA IF NOT EXISTS casebook")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS casebook.migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL)"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM casebook.migrations")
        }
        for m in migrations():
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise CasebookDatabaseError(
                        f"migration {m.name} was changed after it was applied; "
                        "write a new migration instead (or rebuild the casebook)"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO casebook.migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.name)
            log.info("applied migration %s", m.name)
        async with conn.transaction():
            await conn.execute("REVOKE ALL ON SCHEMA casebook FROM PUBLIC")
            await conn.execute(f"GRANT USAGE ON SCHEMA casebook TO {role}")
            await conn.execute(f"GRANT SELECT ON casebook.migrations TO {role}")
            for table, rights in GRANTS.items():
                await conn.execute(f"REVOKE ALL ON casebook.{table} FROM PUBLIC, {role}")
                await conn.execute(f"GRANT {rights} ON casebook.{table} TO {role}")
            if read_role and await role_exists(conn, read_role):
                reader = quote_role(read_role)
                await conn.execute(f"GRANT USAGE ON SCHEMA casebook TO {reader}")
                for table in (*GRANTS, "migrations"):
                    await conn.execute(f"REVOKE ALL ON casebook.{table} FROM {reader}")
                    await conn.execute(f"GRANT SELECT ON casebook.{table} TO {reader}")
            elif read_role:
                log.warning("read role %s does not exist: no read-only grants", read_role)
            await harden(conn, "casebook")
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(MIGRATE_LOCK))
    finally:
        await conn.close()
    return applied_now


async def drop(owner_url: str) -> None:
    """Drop the casebook's schema and everything in it (a rebuild starts from nothing).
    Waits for the batch in flight of any writer, so none is cut in half."""
    conn = await asyncpg.connect(owner_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(WRITER_LOCK))
            await conn.execute("DROP SCHEMA IF EXISTS casebook CASCADE")
    finally:
        await conn.close()


# ---------------------------------------------------------------- the writer


@dataclasses.dataclass(frozen=True)
class ReadDecision:
    """A decision as read from Kafka, with where it was."""

    decision: Decision
    partition: int
    offset: int
    raw: str  # the record as the processor wrote it (its own canonical JSON)


@dataclasses.dataclass
class Batch:
    """What one poll brought, parsed: written together with the positions."""

    decisions: list[ReadDecision] = dataclasses.field(default_factory=list)
    submissions: list[Submitted] = dataclasses.field(default_factory=list)
    rejections: list[Rejection] = dataclasses.field(default_factory=list)
    publications: list[Publication] = dataclasses.field(default_factory=list)
    # section 二: pushed lists with their rows, and civil affairs' follow-ups
    hardship_lists: list[tuple[hardship.PushedList, list[hardship.ListRow]]] = dataclasses.field(
        default_factory=list
    )
    follow_ups: list[hardship.FollowUp] = dataclasses.field(default_factory=list)
    positions: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Publication:
    """A DisclosurePublished read from the intake topic (P7)."""

    record: DisclosurePublished
    published_at: datetime  # the broker's stamp
    partition: int
    offset: int


@dataclasses.dataclass(frozen=True)
class Stored:
    decisions: int  # new decisions (a re-sent one is not counted)
    duplicates: int
    cases: int  # case rows written
    submissions: int
    rejections: int
    hardship_rows: int = 0  # rows of pushed lists stored now
    follow_ups: int = 0  # follow-ups kept now
    follow_ups_refused: int = 0


def _reason(d: Decision) -> str | None:
    """The written reasons (P9) when the decision gives them, else its reason's code
    (older refusals carry only the code; their `reasons` read as empty)."""
    for name in ("reasons", "reason"):
        value = getattr(d, name, None)
        if value is not None and value != "":
            return str(value)
    return None


DECISION_COLUMNS = (
    "event_id",
    "town",
    "case_id",
    "type",
    "rule",
    "case_status",
    "causation_id",
    "occurred_at",
    "recorded_at",
    "amount_fen",
    "reason",
    "figures",
    "body",
    "source_partition",
    "source_offset",
)


def _decision_row(r: ReadDecision, sealer: Sealer) -> tuple[Any, ...]:
    d = r.decision
    amount = getattr(d, "amount_fen", None)
    figures = json.dumps(d.figures, ensure_ascii=False, sort_keys=True)
    row = (
        d.event_id,
        d.town,
        d.correlation_id,
        d.type,
        d.rule,
        None if d.case_status is None else d.case_status.value,
        d.causation_id,
        d.occurred_at,
        d.recorded_at,
        amount if isinstance(amount, int) else None,
        _reason(d),
        figures,
        r.raw,
        r.partition,
        r.offset,
    )
    payload = _decision_payload(dict(zip(DECISION_COLUMNS, row, strict=True)))
    return (*row, sealer.seal(seals.DECISION, payload))


def _decision_payload(values: Mapping[str, Any]) -> bytes:
    """The sealed form of a decision row, from the values written or read back (JSON
    columns as text: parsed here, whoever spelled them)."""
    return seals.decision_payload(
        **{
            **values,
            "figures": json.loads(values["figures"]),
            "body": json.loads(values["body"]),
        }
    )


INSERT_DECISIONS = """
INSERT INTO casebook.decisions (event_id, town, case_id, type, rule, case_status,
       causation_id, occurred_at, recorded_at, amount_fen, reason, figures, body,
       source_partition, source_offset, seal)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::uuid[], $8::timestamptz[], $9::timestamptz[],
                     $10::bigint[], $11::text[], $12::jsonb[], $13::jsonb[],
                     $14::integer[], $15::bigint[], $16::bytea[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id"""

CASE_COLUMNS = (
    "town",
    "case_id",
    "status",
    "funded_by",
    "category",
    "urgency",
    "requested_fen",
    "incident_id",
    "granted_fen",
    "paid_fen",
    "recovery_fen",
    "granted_at",
    "opened_at",
    "updated_at",
    "decisions",
    "last_type",
    "last_rule",
    "public_name",
    "approved_at",
    "approved_period",
    "approver_level",
    "approved_fen",
)
UPSERT_CASES = """
INSERT INTO casebook.cases (town, case_id, status, funded_by, category, urgency,
       requested_fen, incident_id, granted_fen, paid_fen, recovery_fen, granted_at,
       opened_at, updated_at, decisions, last_type, last_rule, public_name, approved_at,
       approved_period, approver_level, approved_fen)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[],
                     $11::bigint[], $12::timestamptz[], $13::timestamptz[],
                     $14::timestamptz[], $15::integer[], $16::text[], $17::text[],
                     $18::text[], $19::timestamptz[], $20::text[], $21::text[],
                     $22::bigint[])
ON CONFLICT (town, case_id) DO UPDATE SET
    public_name = EXCLUDED.public_name, approved_at = EXCLUDED.approved_at,
    approved_period = EXCLUDED.approved_period,
    approver_level = EXCLUDED.approver_level, approved_fen = EXCLUDED.approved_fen,
    status = EXCLUDED.status, funded_by = EXCLUDED.funded_by,
    category = EXCLUDED.category, urgency = EXCLUDED.urgency,
    requested_fen = EXCLUDED.requested_fen, incident_id = EXCLUDED.incident_id,
    granted_fen = EXCLUDED.granted_fen, paid_fen = EXCLUDED.paid_fen,
    recovery_fen = EXCLUDED.recovery_fen, granted_at = EXCLUDED.granted_at,
    opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at,
    decisions = EXCLUDED.decisions, last_type = EXCLUDED.last_type,
    last_rule = EXCLUDED.last_rule"""

UPSERT_DEADLINES = """
INSERT INTO casebook.deadlines (town, case_id, kind, due_at, state, opened_by, closed_by)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::uuid[], $7::uuid[])
ON CONFLICT (town, case_id, kind) DO UPDATE SET
    due_at = EXCLUDED.due_at, state = EXCLUDED.state, opened_by = EXCLUDED.opened_by,
    closed_by = EXCLUDED.closed_by"""

INSERT_SUBMISSIONS = """
INSERT INTO casebook.submissions (event_id, type, town, correlation_id, org,
       source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::integer[], $7::bigint[])
ON CONFLICT (event_id) DO NOTHING"""

INSERT_PUBLICATIONS = """
INSERT INTO casebook.publications (event_id, town, period, published_at, org, note,
       source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::integer[], $8::bigint[])
ON CONFLICT (event_id) DO NOTHING"""

INSERT_REJECTIONS = """
INSERT INTO casebook.rejections (rejected_id, source_event_id, source_type, town, reason,
       source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                     $6::integer[], $7::bigint[])
ON CONFLICT (rejected_id) DO NOTHING"""

INSERT_HARDSHIP_LISTS = """
INSERT INTO casebook.hardship_lists (event_id, town, department, org, correlation_id,
       occurred_at, pushed_at, rows, source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::timestamptz[], $8::integer[], $9::integer[],
                     $10::bigint[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id"""

INSERT_HARDSHIP_ROWS = """
INSERT INTO casebook.hardship_rows (list_event_id, row_index, town, household_ref,
       category, note)
SELECT * FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::text[], $5::text[],
                     $6::text[])
ON CONFLICT (list_event_id, row_index) DO NOTHING"""

# What is stored of each row a follow-up names: its town, where its list is in the log,
# and the follow-up kept for it.
KNOWN_HARDSHIP_ROWS = """
SELECT k.list_event_id, k.row_index, r.town, l.source_partition, l.source_offset,
       f.event_id AS kept, f.outcome AS kept_outcome
  FROM unnest($1::uuid[], $2::integer[]) AS k(list_event_id, row_index)
  JOIN casebook.hardship_rows r
    ON r.list_event_id = k.list_event_id AND r.row_index = k.row_index
  JOIN casebook.hardship_lists l ON l.event_id = k.list_event_id
  LEFT JOIN casebook.hardship_follow_ups f
    ON f.list_event_id = k.list_event_id AND f.row_index = k.row_index"""

INSERT_FOLLOW_UPS = """
INSERT INTO casebook.hardship_follow_ups (event_id, list_event_id, row_index, town,
       outcome, case_id, referred_to, reasons, decided_by, org, occurred_at, decided_at,
       source_partition, source_offset)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::timestamptz[], $12::timestamptz[], $13::integer[], $14::bigint[])
ON CONFLICT (event_id) DO NOTHING"""

UPSERT_POSITIONS = """
INSERT INTO casebook.positions (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE
    SET next_offset = greatest(positions.next_offset, EXCLUDED.next_offset)"""


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _case_from(r: asyncpg.Record) -> CaseRow:
    return CaseRow(**{c: r[c] for c in CASE_COLUMNS})


def _deadline_from(r: asyncpg.Record) -> DeadlineRow:
    return DeadlineRow(
        town=r["town"],
        case_id=r["case_id"],
        kind=r["kind"],
        due_at=r["due_at"],
        state=DeadlineState(r["state"]),
        opened_by=str(r["opened_by"]),
        closed_by=None if r["closed_by"] is None else str(r["closed_by"]),
    )


class CasebookStore:
    """Writes batches with their positions, one transaction each; reads positions."""

    def __init__(self, pool: Pool, sealer: Sealer, retry: RetryPolicy | None = None) -> None:
        self.pool = pool
        self.sealer = sealer  # seals every decision it stores (domain/seals.py)
        self.retry = retry or RetryPolicy()

    async def positions(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        rows = await with_retries(
            lambda: self.pool.fetch(
                "SELECT topic, partition, next_offset FROM casebook.positions "
                "WHERE topic = ANY($1::text[])",
                list(topics),
            ),
            self.retry,
            "reading positions",
        )
        return {(r["topic"], int(r["partition"])): int(r["next_offset"]) for r in rows}

    async def store(self, batch: Batch) -> Stored:
        return await with_retries(lambda: self._store_once(batch), self.retry, "storing a batch")

    async def _store_once(self, batch: Batch) -> Stored:
        conn = await self.pool.acquire()
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                await _take_turns(conn, batch.positions)
                result = await self._write(conn, batch)
        except TRANSIENT_ERRORS:
            # a connection cut mid-protocol must not go back to the pool half-used
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise
        finally:
            await self.pool.release(conn)
        return result

    async def _write(self, conn: Conn, batch: Batch) -> Stored:
        unique: dict[uuid.UUID, ReadDecision] = {}
        for r in batch.decisions:
            unique.setdefault(r.decision.event_id, r)  # the first copy in the log stands
        rows = [_decision_row(r, self.sealer) for r in unique.values()]
        inserted: set[uuid.UUID] = set()
        if rows:
            inserted = {
                r["event_id"] for r in await conn.fetch(INSERT_DECISIONS, *_columns(rows, 16))
            }
        new = [r.decision for r in unique.values() if r.decision.event_id in inserted]
        written_cases = await self._fold(conn, new) if new else 0
        if batch.submissions:
            await conn.execute(
                INSERT_SUBMISSIONS,
                *_columns(
                    [
                        (s.event_id, s.type, s.town, s.correlation_id, s.org, s.partition, s.offset)
                        for s in batch.submissions
                    ],
                    7,
                ),
            )
        if batch.rejections:
            await conn.execute(
                INSERT_REJECTIONS,
                *_columns(
                    [
                        (
                            j.rejected_id,
                            j.source_event_id,
                            j.source_type,
                            j.town,
                            j.reason,
                            j.source_partition,
                            j.source_offset,
                        )
                        for j in batch.rejections
                    ],
                    7,
                ),
            )
        if batch.publications:
            await conn.execute(
                INSERT_PUBLICATIONS,
                *_columns(
                    [
                        (
                            p.record.event_id,
                            p.record.town,
                            p.record.period,
                            p.published_at,
                            p.record.actor.org,
                            p.record.note,
                            p.partition,
                            p.offset,
                        )
                        for p in batch.publications
                    ],
                    8,
                ),
            )
        rows_stored, judged = await self._hardship(conn, batch)
        if batch.positions:
            items = sorted(batch.positions.items())
            await conn.execute(
                UPSERT_POSITIONS,
                [t for (t, _), _ in items],
                [p for (_, p), _ in items],
                [o for _, o in items],
            )
        return Stored(
            decisions=len(new),
            duplicates=len(batch.decisions) - len(new),
            cases=written_cases,
            submissions=len(batch.submissions),
            rejections=len(batch.rejections),
            hardship_rows=rows_stored,
            follow_ups=len(judged.kept),
            follow_ups_refused=len(judged.refused),
        )

    async def _hardship(self, conn: Conn, batch: Batch) -> tuple[int, hardship.Judged]:
        """Section 二: the lists and their rows, then the follow-ups judged in log order
        against what is stored (lists of this batch included)."""
        rows_stored = 0
        if batch.hardship_lists:
            lists = [pushed for pushed, _ in batch.hardship_lists]
            inserted = {
                r["event_id"]
                for r in await conn.fetch(
                    INSERT_HARDSHIP_LISTS,
                    *_columns(
                        [
                            (
                                p.event_id,
                                p.town,
                                p.department,
                                p.org,
                                p.correlation_id,
                                p.occurred_at,
                                p.pushed_at,
                                p.rows,
                                p.at.partition,
                                p.at.offset,
                            )
                            for p in lists
                        ],
                        10,
                    ),
                )
            }
            new_rows = [
                (r.list_event_id, r.row_index, r.town, r.household_ref, r.category, r.note)
                for pushed, rows in batch.hardship_lists
                if pushed.event_id in inserted
                for r in rows
            ]
            if new_rows:
                await conn.execute(INSERT_HARDSHIP_ROWS, *_columns(new_rows, 6))
            rows_stored = len(new_rows)
        if not batch.follow_ups:
            return rows_stored, hardship.Judged([], [])
        keys = sorted({f.key for f in batch.follow_ups})
        known = {
            (r["list_event_id"], r["row_index"]): hardship.Known(
                town=r["town"],
                list_at=None
                if r["source_partition"] is None
                else hardship.Where(r["source_partition"], r["source_offset"]),
                kept=r["kept"],
                kept_outcome=r["kept_outcome"],
            )
            for r in await conn.fetch(
                KNOWN_HARDSHIP_ROWS, [k[0] for k in keys], [k[1] for k in keys]
            )
        }
        judged = hardship.judge(known, batch.follow_ups)
        if judged.kept:
            await conn.execute(
                INSERT_FOLLOW_UPS,
                *_columns(
                    [
                        (
                            f.event_id,
                            f.list_event_id,
                            f.row_index,
                            f.town,
                            f.outcome,
                            f.case_id,
                            f.referred_to,
                            f.reasons,
                            f.decided_by,
                            f.org,
                            f.occurred_at,
                            f.decided_at,
                            f.at.partition,
                            f.at.offset,
                        )
                        for f in judged.kept
                    ],
                    14,
                ),
            )
        if judged.refused:
            # its submission answers `rejected` with the reason, as a dead letter would
            await conn.execute(
                INSERT_REJECTIONS,
                *_columns(
                    [
                        (
                            j.rejected_id,
                            j.follow_up.event_id,
                            "HardshipFollowedUp",
                            j.follow_up.town,
                            j.reason[:MAX_REASON_CHARS],
                            j.follow_up.at.partition,
                            j.follow_up.at.offset,
                        )
                        for j in judged.refused
                    ],
                    7,
                ),
            )
        return rows_stored, judged

    async def _fold(self, conn: Conn, new: Sequence[Decision]) -> int:
        keys = sorted({(d.town, d.correlation_id) for d in new})
        towns, ids = [k[0] for k in keys], [k[1] for k in keys]
        current: dict[CaseKey, CaseRow] = {
            (r["town"], r["case_id"]): _case_from(r)
            for r in await conn.fetch(
                """SELECT c.* FROM casebook.cases c
                     JOIN unnest($1::text[], $2::text[]) AS k(town, case_id)
                    USING (town, case_id)""",
                towns,
                ids,
            )
        }
        deadlines: dict[DeadlineKey, DeadlineRow] = {
            (r["town"], r["case_id"], r["kind"]): _deadline_from(r)
            for r in await conn.fetch(
                """SELECT d.* FROM casebook.deadlines d
                     JOIN unnest($1::text[], $2::text[]) AS k(town, case_id)
                    USING (town, case_id)""",
                towns,
                ids,
            )
        }
        folded = fold(current, deadlines, new)
        if folded.cases:
            case_rows = [
                tuple(getattr(c, col) for col in CASE_COLUMNS)
                for _, c in sorted(folded.cases.items())
            ]
            await conn.execute(UPSERT_CASES, *_columns(case_rows, len(CASE_COLUMNS)))
        if folded.deadlines:
            deadline_rows = [
                (
                    d.town,
                    d.case_id,
                    d.kind,
                    d.due_at,
                    d.state.value,
                    uuid.UUID(d.opened_by),
                    None if d.closed_by is None else uuid.UUID(d.closed_by),
                )
                for _, d in sorted(folded.deadlines.items())
            ]
            await conn.execute(UPSERT_DEADLINES, *_columns(deadline_rows, 7))
        return len(folded.cases)

    async def set_progress(self, processed_through: Mapping[int, int]) -> None:
        """The processor's committed offsets on the intake topic, once the casebook has
        read everything it had sent by then (adapters/kafka.py)."""
        if not processed_through:
            return
        items = sorted(processed_through.items())
        await with_retries(
            lambda: self.pool.execute(
                """INSERT INTO casebook.progress (partition, processed_through)
                    SELECT * FROM unnest($1::integer[], $2::bigint[])
                    ON CONFLICT (partition) DO UPDATE SET processed_through =
                        greatest(progress.processed_through, EXCLUDED.processed_through)""",
                [p for p, _ in items],
                [o for _, o in items],
            ),
            self.retry,
            "storing progress",
        )


# ---------------------------------------------------------------- reads

STORY_SQL = """
SELECT event_id, type, rule, case_status, occurred_at, recorded_at, causation_id,
       amount_fen, figures, reason
  FROM casebook.decisions
 WHERE town = $1 AND case_id = $2
 ORDER BY source_partition, source_offset
 LIMIT $3"""


def _entry(r: asyncpg.Record) -> DecisionEntry:
    return DecisionEntry(
        event_id=r["event_id"],
        type=r["type"],
        rule=r["rule"],
        case_status=r["case_status"],
        occurred_at=r["occurred_at"],
        recorded_at=r["recorded_at"],
        causation_id=r["causation_id"],
        amount_fen=r["amount_fen"],
        figures=json.loads(r["figures"]),
        reason=r["reason"],
    )


def _deadline_view(r: asyncpg.Record) -> DeadlineView:
    return DeadlineView(
        case_id=r["case_id"],
        kind=r["kind"],
        due_at=r["due_at"],
        state=r["state"],
        warned=r["state"] == DeadlineState.WARNED.value,
    )


async def case_story(db: Pool, town: str, case_id: str) -> CaseStory | None:
    """A case of `town` with its whole story; None when the town has no such case."""
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            "SELECT * FROM casebook.cases WHERE town = $1 AND case_id = $2",
            town,
            case_id,
            timeout=QUERY_TIMEOUT_S,
        )
        if row is None:
            return None
        deadlines = await conn.fetch(
            "SELECT * FROM casebook.deadlines WHERE town = $1 AND case_id = $2 ORDER BY kind",
            town,
            case_id,
            timeout=QUERY_TIMEOUT_S,
        )
        story = await conn.fetch(STORY_SQL, town, case_id, MAX_STORY, timeout=QUERY_TIMEOUT_S)
    return CaseStory(
        town=row["town"],
        case_id=row["case_id"],
        status=row["status"],
        funded_by=row["funded_by"],
        category=row["category"],
        urgency=row["urgency"],
        requested_fen=row["requested_fen"],
        incident_id=row["incident_id"],
        granted_fen=row["granted_fen"],
        paid_fen=row["paid_fen"],
        recovery_fen=row["recovery_fen"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        granted_at=row["granted_at"],
        deadlines=[_deadline_view(d) for d in deadlines],
        decisions=[_entry(d) for d in story],
    )


async def open_deadlines(db: Pool, town: str, limit: int) -> list[DeadlineView]:
    """The town's deadlines not yet met, breached or voided, soonest first (R5, P1)."""
    rows = await db.fetch(
        """SELECT * FROM casebook.deadlines
             WHERE town = $1 AND state IN ('open', 'warned')
             ORDER BY due_at, case_id, kind LIMIT $2""",
        town,
        limit,
        timeout=QUERY_TIMEOUT_S,
    )
    return [_deadline_view(r) for r in rows]


async def open_cases(db: Pool, town: str | None, limit: int) -> OpenCases:
    """Urgent advances not yet paid or cancelled, oldest first (every town when None),
    with their 24-hour deadline as the decisions stand."""
    rows = await db.fetch(
        """SELECT c.town, c.case_id, c.status, c.funded_by, c.granted_fen, c.granted_at,
                   d.due_at, d.state
              FROM casebook.cases c
              LEFT JOIN casebook.deadlines d
                ON d.town = c.town AND d.case_id = c.case_id AND d.kind = 'relief_24h'
             WHERE c.status IN ('advanced', 'escalated')
               AND ($1::text IS NULL OR c.town = $1)
             ORDER BY c.granted_at, c.town, c.case_id
             LIMIT $2""",
        town,
        limit,
        timeout=QUERY_TIMEOUT_S,
    )
    counts = await db.fetch(
        """SELECT c.town, count(*) AS open,
                  count(*) FILTER (WHERE d.state = 'breached') AS breached
             FROM casebook.cases c
             LEFT JOIN casebook.deadlines d
               ON d.town = c.town AND d.case_id = c.case_id AND d.kind = 'relief_24h'
            WHERE c.status IN ('advanced', 'escalated')
              AND ($1::text IS NULL OR c.town = $1)
            GROUP BY c.town""",
        town,
        timeout=QUERY_TIMEOUT_S,
    )
    by_town = {
        r["town"]: TownOpen(open=int(r["open"]), breached=int(r["breached"])) for r in counts
    }
    return OpenCases(
        by_town=by_town,
        # the towns' counts add up to the total: one pass over the open cases, not two
        total=sum(t.open for t in by_town.values()),
        cases=[
            OpenCase(
                town=r["town"],
                case_id=r["case_id"],
                status=r["status"],
                funded_by=r["funded_by"],
                granted_fen=r["granted_fen"],
                granted_at=r["granted_at"],
                relief_due_at=r["due_at"],
                relief_state=r["state"],
            )
            for r in rows
        ],
    )


async def list_cases(
    db: Pool,
    town: str | None,
    statuses: Sequence[str],
    incident_id: str | None,
    limit: int,
) -> CaseList:
    """Cases of `town` (every town when None), in any of `statuses` (any when empty), of
    `incident_id` (any when None), the newest first; each with its 24-hour deadline and
    its latest decision's rule and figures."""
    rows = await db.fetch(
        """SELECT c.*, d.due_at, d.state, last.figures AS last_figures,
                  count(*) OVER () AS total
             FROM casebook.cases c
             LEFT JOIN casebook.deadlines d
               ON d.town = c.town AND d.case_id = c.case_id AND d.kind = 'relief_24h'
             LEFT JOIN LATERAL (
                   SELECT figures FROM casebook.decisions x
                    WHERE x.town = c.town AND x.case_id = c.case_id
                    ORDER BY x.source_offset DESC LIMIT 1) last ON true
            WHERE ($1::text IS NULL OR c.town = $1)
              AND (cardinality($2::text[]) = 0 OR c.status = ANY($2::text[]))
              AND ($3::text IS NULL OR c.incident_id = $3)
            ORDER BY c.updated_at DESC, c.town, c.case_id
            LIMIT $4""",
        town,
        list(statuses),
        incident_id,
        limit,
        timeout=QUERY_TIMEOUT_S,
    )
    return CaseList(
        total=int(rows[0]["total"]) if rows else 0,
        cases=[
            CaseSummary(
                town=r["town"],
                case_id=r["case_id"],
                status=r["status"],
                category=r["category"],
                urgency=r["urgency"],
                incident_id=r["incident_id"],
                funded_by=r["funded_by"],
                requested_fen=r["requested_fen"],
                granted_fen=r["granted_fen"],
                paid_fen=r["paid_fen"],
                opened_at=r["opened_at"],
                updated_at=r["updated_at"],
                relief_due_at=r["due_at"],
                relief_state=r["state"],
                last_type=r["last_type"],
                last_rule=r["last_rule"],
                last_figures=json.loads(r["last_figures"]) if r["last_figures"] else {},
            )
            for r in rows
        ],
    )


async def submission(
    db: Pool, event_id: uuid.UUID, town: str | None, org: str | None
) -> SubmissionView:
    """What became of the record `event_id`, as a reader scoped to `town` / `org` may
    see it: anything the scope may not see reads as pending (as if unknown)."""
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        seen_row = await conn.fetchrow(
            "SELECT * FROM casebook.submissions WHERE event_id = $1",
            event_id,
            timeout=QUERY_TIMEOUT_S,
        )
        decided = await conn.fetch(
            """SELECT town, case_id, event_id, type, rule, case_status, occurred_at,
                       recorded_at, causation_id, amount_fen, figures, reason
                  FROM casebook.decisions WHERE causation_id = $1
                 ORDER BY source_partition, source_offset LIMIT $2""",
            event_id,
            MAX_SUBMISSION_DECISIONS,
            timeout=QUERY_TIMEOUT_S,
        )
        rejected_row = await conn.fetchrow(
            """SELECT * FROM casebook.rejections WHERE source_event_id = $1
                 ORDER BY source_partition, source_offset LIMIT 1""",
            event_id,
            timeout=QUERY_TIMEOUT_S,
        )
        progress = None
        if seen_row is not None:
            progress = await conn.fetchval(
                "SELECT processed_through FROM casebook.progress WHERE partition = $1",
                seen_row["source_partition"],
                timeout=QUERY_TIMEOUT_S,
            )
    seen = None
    if seen_row is not None:
        seen = Submitted(
            event_id=seen_row["event_id"],
            type=seen_row["type"],
            town=seen_row["town"],
            correlation_id=seen_row["correlation_id"],
            org=seen_row["org"],
            partition=seen_row["source_partition"],
            offset=seen_row["source_offset"],
        )
    rejected = None
    if rejected_row is not None:
        rejected = Rejection(
            rejected_id=rejected_row["rejected_id"],
            source_event_id=rejected_row["source_event_id"],
            source_type=rejected_row["source_type"],
            town=rejected_row["town"],
            reason=rejected_row["reason"],
            source_partition=rejected_row["source_partition"],
            source_offset=rejected_row["source_offset"],
        )
    ans: Answer = answer(
        seen,
        [(r["town"], r["case_id"]) for r in decided],
        rejected,
        None if progress is None else int(progress),
    )
    if not visible(ans, seen, town, org):
        return SubmissionView(event_id=event_id, status=answer(None, [], None, None).status)
    return SubmissionView(
        event_id=event_id,
        status=ans.status,
        town=ans.town,
        type=ans.type,
        correlation_id=ans.correlation_id,
        reason=ans.reason,
        decisions=[_entry(r) for r in decided],
    )


# ---------------------------------------------------------------- disclosure (P7)

# The approved expenditure-type cases of a town's month, each with the first publication
# recorded after its approval. Urgent cases are never listed (P7).
DISCLOSURE_SQL = """
SELECT c.case_id, c.public_name, c.category, c.approved_fen, c.approver_level,
       c.approved_at,
       (SELECT min(p.published_at) FROM casebook.publications p
         WHERE p.town = c.town AND p.period = c.approved_period
           AND p.published_at >= c.approved_at) AS published_at
  FROM casebook.cases c
 WHERE c.town = $1 AND c.approved_period = $2
   AND c.urgency = 'expenditure' AND c.approved_at IS NOT NULL
 ORDER BY c.approved_at, c.case_id
 LIMIT $3"""

# Approved expenditure-type cases no publication covers yet, every town.
UNPUBLISHED_SQL = """
SELECT c.town, c.approved_at
  FROM casebook.cases c
 WHERE c.urgency = 'expenditure' AND c.approved_at IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM casebook.publications p
                    WHERE p.town = c.town AND p.period = c.approved_period
                      AND p.published_at >= c.approved_at)"""


async def disclosure_cases(db: Pool, town: str, period: str) -> list[Approved]:
    rows = await db.fetch(DISCLOSURE_SQL, town, period, MAX_LIST_ROWS, timeout=QUERY_TIMEOUT_S)
    return [
        Approved(
            case_id=r["case_id"],
            public_name=r["public_name"],
            category=r["category"],
            approved_fen=int(r["approved_fen"]),
            approver_level=r["approver_level"],
            approved_at=r["approved_at"],
            published_at=r["published_at"],
        )
        for r in rows
    ]


async def unpublished_approvals(db: Pool) -> dict[str, list[datetime]]:
    """town -> the approval moments of its cases not published yet (P7)."""
    out: dict[str, list[datetime]] = {}
    for r in await db.fetch(UNPUBLISHED_SQL, timeout=QUERY_TIMEOUT_S):
        out.setdefault(r["town"], []).append(r["approved_at"])
    return out


# ---------------------------------------------------------------- hardship lists (section 二)

HARDSHIP_ROWS_SQL = """
SELECT r.list_event_id, r.row_index, r.town, r.household_ref, r.category, r.note,
       l.department, l.org AS pushed_by, l.pushed_at,
       f.event_id AS follow_up_id, f.outcome, f.case_id, f.referred_to, f.reasons,
       f.decided_by, f.org AS decided_org, f.decided_at,
       count(*) OVER () AS total
  FROM casebook.hardship_rows r
  JOIN casebook.hardship_lists l ON l.event_id = r.list_event_id
  LEFT JOIN casebook.hardship_follow_ups f
    ON f.list_event_id = r.list_event_id AND f.row_index = r.row_index
 WHERE ($1::text IS NULL OR r.town = $1)
   AND (f.event_id IS NULL) = $2
 ORDER BY CASE WHEN $2 THEN l.pushed_at END ASC,
          CASE WHEN NOT $2 THEN f.decided_at END DESC,
          l.source_partition, l.source_offset, r.row_index
 LIMIT $3"""


async def hardship_rows(db: Pool, town: str | None, waiting: bool, limit: int) -> HardshipRows:
    """Rows of pushed lists of `town` (every town when None): those still waiting for a
    follow-up, the oldest list first, or those followed up, the latest decision first."""
    rows = await db.fetch(HARDSHIP_ROWS_SQL, town, waiting, limit, timeout=QUERY_TIMEOUT_S)
    return HardshipRows(
        total=int(rows[0]["total"]) if rows else 0,
        rows=[
            HardshipRowView(
                list_event_id=r["list_event_id"],
                row_index=r["row_index"],
                town=r["town"],
                household_ref=r["household_ref"],
                category=r["category"],
                note=r["note"],
                department=r["department"],
                pushed_by=r["pushed_by"],
                pushed_at=r["pushed_at"],
                follow_up=None
                if r["follow_up_id"] is None
                else HardshipFollowUpView(
                    event_id=r["follow_up_id"],
                    outcome=r["outcome"],
                    case_id=r["case_id"],
                    referred_to=r["referred_to"],
                    reasons=r["reasons"],
                    decided_by=r["decided_by"],
                    org=r["decided_org"],
                    decided_at=r["decided_at"],
                ),
            )
            for r in rows
        ],
    )


async def ready(db: Pool) -> bool:
    """The schema is there and answers."""
    return bool(
        await db.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", "casebook.cases", timeout=QUERY_TIMEOUT_S
        )
    )


# ---------------------------------------------------------------- verify

VERIFY_CHUNK = 5_000


@dataclasses.dataclass(frozen=True)
class SealProblem:
    event_id: uuid.UUID
    town: str
    case_id: str
    reason: str


async def verify_seals(db_url: str, sealer: Sealer) -> tuple[int, list[SealProblem]]:
    """Every stored decision must carry the writer's seal: (decisions checked, problems)."""
    conn = await asyncpg.connect(db_url)
    checked = 0
    problems: list[SealProblem] = []
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            last = uuid.UUID(int=0)
            while True:
                rows = await conn.fetch(
                    """SELECT event_id, town, case_id, type, rule, case_status, causation_id,
                              occurred_at, recorded_at, amount_fen, reason, figures::text,
                              body::text, source_partition, source_offset, seal
                         FROM casebook.decisions WHERE event_id > $1
                        ORDER BY event_id LIMIT $2""",
                    last,
                    VERIFY_CHUNK,
                )
                if not rows:
                    break
                for r in rows:
                    checked += 1
                    values = {c: r[c] for c in DECISION_COLUMNS}
                    seal = None if r["seal"] is None else bytes(r["seal"])
                    if not sealer.valid(seals.DECISION, _decision_payload(values), seal):
                        problems.append(
                            SealProblem(
                                r["event_id"],
                                r["town"],
                                r["case_id"],
                                "not sealed by the casebook writer"
                                if seal is None
                                else "seal does not match: not written by the casebook (forged)",
                            )
                        )
                last = rows[-1]["event_id"]
    finally:
        await conn.close()
    return checked, problems
