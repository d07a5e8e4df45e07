"""PostgreSQL, through asyncpg: migrations, the batch writer and the read side.

The writer stores a batch of postings and the consumer positions they came from in ONE
transaction (docs/design.md "effectively once": store the offset with the output), so a crash
anywhere leaves either all of the batch or none of it. The database checks the book's
rules once more at commit (migrations/0001_journal.sql).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg

from relief_platform.postgres import TRANSIENT_ERRORS as TRANSIENT_ERRORS
from relief_platform.postgres import Migration, harden, migrations_in, quote_role, role_exists
from relief_platform.postgres import RetryPolicy as RetryPolicy
from relief_platform.postgres import connect_pool as connect_pool
from relief_platform.postgres import with_retries as with_retries
from relief_platform.secrets import Sealer
from schemas.envelope import CST
from schemas.money import yuan
from services.ledger.domain import seals
from services.ledger.domain.accounts import (
    RESERVE_KIND,
    Account,
    normal_balance,
    reserve_account,
)
from services.ledger.domain.entries import Entry, IncomingPosting, Line
from services.ledger.domain.heads import PublishedHead
from services.ledger.domain.plan import (
    BatchPlan,
    ChainHead,
    chains_of,
    plan_batch,
    reserve_accounts_touched,
)
from services.ledger.domain.reconcile import ReserveDifference, reconcile
from services.ledger.domain.verify import (
    BAD_SEAL,
    NOT_SEALED,
    DayFigure,
    DayKey,
    Verifier,
    VerifyReport,
)

log = logging.getLogger("relief.ledger.postgres")

Pool = asyncpg.Pool
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MIGRATIONS_PACKAGE = "services.ledger.migrations"
MIGRATIONS_TABLE = "ledger_migrations"
# The tables the service role may read and append to (and nothing else: P10).
LEDGER_TABLES = (
    "ledger_accounts",
    "ledger_entries",
    "ledger_lines",
    "ledger_alerts",
    "ledger_positions",
)
# Kept by the database's triggers as lines arrive, read by the writer and the dashboard:
# SELECT only (the reserve guard's balances, 0005; every account's and each day's, 0008)
DERIVED_TABLES = ("ledger_reserve_balances", "ledger_balances", "ledger_day_figures")
# Entries read per round trip by `verify` and statements (bounded memory).
VERIFY_CHUNK_ENTRIES = 5_000
# Rows a statement may hold (a county's year is far below; STYLE "a limit on everything").
STATEMENT_MAX_ROWS = 1_000_000
# Any lock the writer waits for longer than this is a bug or a stuck writer: fail the batch.
LOCK_TIMEOUT_MS = 30_000


class LedgerDatabaseError(RuntimeError):
    """The database is not in a state the service can work with (e.g. not migrated)."""


class LedgerTamperedError(LedgerDatabaseError):
    """A row the writer would build on (a chain head, an entry or alert with a posting id it
    is given again) does not carry the writer's seal: someone wrote around the writer. The
    writer stops rather than chain onto it or drop a real posting as its duplicate; `verify`
    names the row."""


# ---------------------------------------------------------------- migrations


def migrations() -> list[Migration]:
    return migrations_in(MIGRATIONS_PACKAGE)


async def migrate(owner_url: str, app_role: str, read_role: str = "") -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction, as the owner role;
    then grant the service role INSERT and SELECT on the ledger's tables, nothing more, and
    the read role (when it exists) SELECT only; no TEMP tables for either, every trigger
    function's search_path pinned (relief_platform.postgres.harden). Returns the names
    applied. Idempotent; concurrent runs wait for each other."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(owner_url)
    try:
        # one migrator at a time, whoever else starts one
        await conn.execute("SELECT pg_advisory_lock(hashtext('relief.ledger.migrate'))")
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS ledger_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r
            for r in await conn.fetch("SELECT version, name, checksum FROM ledger_migrations")
        }
        for m in migrations():
            if m.version in done:
                if done[m.version]["checksum"] != m.checksum:
                    # an applied migration was edited: the schema no longer matches the files
                    raise LedgerDatabaseError(
                        f"migration {m.name} was changed after it was applied; "
                        "write a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO ledger_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied_now.append(m.name)
            log.info("applied migration %s", m.name)
        role = _quote_ident(app_role)
        async with conn.transaction():
            for table in (*LEDGER_TABLES, *DERIVED_TABLES, MIGRATIONS_TABLE):
                await conn.execute(f"REVOKE ALL ON {table} FROM PUBLIC")
                await conn.execute(f"REVOKE ALL ON {table} FROM {role}")
            for table in LEDGER_TABLES:
                # P10: the service appends and reads; it can neither change nor remove
                await conn.execute(f"GRANT SELECT, INSERT ON {table} TO {role}")
            for table in (*DERIVED_TABLES, MIGRATIONS_TABLE):
                await conn.execute(f"GRANT SELECT ON {table} TO {role}")
            if read_role and await role_exists(conn, read_role):
                reader = quote_role(read_role)
                for table in (*LEDGER_TABLES, *DERIVED_TABLES, MIGRATIONS_TABLE):
                    await conn.execute(f"REVOKE ALL ON {table} FROM {reader}")
                    await conn.execute(f"GRANT SELECT ON {table} TO {reader}")
            elif read_role:
                log.warning("read role %s does not exist: no read-only grants", read_role)
            schema = await conn.fetchval(
                "SELECT relnamespace::regnamespace::text FROM pg_class "
                "WHERE oid = 'ledger_entries'::regclass"
            )
            await harden(conn, schema)
        await conn.execute("SELECT pg_advisory_unlock(hashtext('relief.ledger.migrate'))")
    finally:
        await conn.close()
    return applied_now


def _quote_ident(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise LedgerDatabaseError(f"role name {name!r} is not a plain identifier")
    return f'"{name}"'


# ---------------------------------------------------------------- the writer


@dataclasses.dataclass(frozen=True)
class BatchResult:
    stored: int
    duplicates: int
    alerts: int


def _lock_key(chain: str) -> int:
    """A 64-bit advisory lock key per chain (stable across processes and versions)."""
    digest = hashlib.sha256(f"relief.ledger.chain:{chain}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


ENTRY_COLUMNS = (
    "posting_id",
    "chain",
    "chain_seq",
    "kind",
    "town",
    "correlation_id",
    "causation_id",
    "occurred_at",
    "recorded_at",
    "memo",
    "prev_hash",
    "hash",
    "source_topic",
    "source_partition",
    "source_offset",
    "seal",
)
LINE_COLUMNS = ("posting_id", "line_no", "account", "side", "amount_fen")


async def store_positions(
    conn: Conn, positions: Mapping[tuple[str, int], int], sealer: Sealer
) -> None:
    """Record consumer positions ({(topic, partition): next offset}), each sealed; call
    inside the transaction that stores what was read up to them (append-only: the highest
    sealed one wins)."""
    if positions:
        await conn.executemany(
            "INSERT INTO ledger_positions (topic, partition, next_offset, seal) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [
                (t, part, offset, seals.seal_position(sealer, t, part, offset))
                for (t, part), offset in sorted(positions.items())
            ],
        )


async def read_positions(db: Pool | Conn, topic: str, sealer: Sealer | None) -> dict[int, int]:
    """partition -> the next offset to read: the highest position the writer sealed (rows
    from before the chain key, with no seal, count as sealed). Without a sealer (the
    dashboard's lag metric) the highest row, unchecked."""
    rows = await db.fetch(
        "SELECT partition, next_offset, seal FROM ledger_positions WHERE topic = $1 "
        "ORDER BY partition, next_offset DESC",
        topic,
    )
    out: dict[int, int] = {}
    for r in rows:
        partition, next_offset = int(r["partition"]), int(r["next_offset"])
        if partition in out:
            continue
        seal = None if r["seal"] is None else bytes(r["seal"])
        if (
            sealer is not None
            and seal is not None
            and not sealer.valid(
                seals.POSITION, seals.position_payload(topic, partition, next_offset), seal
            )
        ):
            # a position written around the writer would make it skip postings: ignored
            # here, reported by verify
            log.error(
                "position %s[%d] -> %d is not sealed by the ledger writer: ignored (forged?)",
                topic,
                partition,
                next_offset,
            )
            continue
        out[partition] = next_offset
    return out


class LedgerStore:
    """Writes batches of postings with their consumer positions; one transaction each.
    Every row it writes carries the writer's seal (domain/seals.py)."""

    def __init__(self, pool: Pool, sealer: Sealer, retry: RetryPolicy | None = None) -> None:
        self.pool = pool
        self.sealer = sealer
        self.retry = retry or RetryPolicy()
        self._known_accounts: set[str] = set()  # accounts are never removed: safe to cache

    async def positions(self, topic: str) -> dict[int, int]:
        """partition -> the next offset to read, as stored (and sealed) with the last batch."""
        return await with_retries(
            lambda: read_positions(self.pool, topic, self.sealer),
            self.retry,
            "reading positions",
        )

    async def store_batch(
        self,
        postings: Sequence[IncomingPosting],
        positions: Mapping[tuple[str, int], int],
    ) -> BatchResult:
        """Store `postings` (in log order) and `positions` ({(topic, partition): next
        offset}) together, retrying the whole transaction on a lost connection."""
        return await with_retries(
            lambda: self._store_once(postings, positions), self.retry, "storing a batch"
        )

    async def _store_once(
        self,
        postings: Sequence[IncomingPosting],
        positions: Mapping[tuple[str, int], int],
    ) -> BatchResult:
        conn = await self.pool.acquire()
        try:
            async with conn.transaction():
                plan = await self._plan(conn, postings) if postings else None
                if plan is not None:
                    await self._write(conn, plan)
                await store_positions(conn, positions, self.sealer)
        except TRANSIENT_ERRORS:
            # a connection cut mid-protocol must not go back to the pool half-used
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise
        finally:
            await self.pool.release(conn)
        if plan is None:
            return BatchResult(0, 0, 0)
        for account in plan.accounts:
            self._known_accounts.add(account.code)
        return BatchResult(len(plan.entries), plan.duplicates, len(plan.alerts))

    async def _plan(self, conn: Conn, postings: Sequence[IncomingPosting]) -> BatchPlan:
        await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        chains = chains_of(postings)
        # One chain per town, one writer per chain at a time: the head read below stays the
        # head until this transaction commits. Keys in order, so two writers never deadlock.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k",
            sorted({_lock_key(c) for c in chains}),
        )
        ids = list({p.posting_id for p in postings})
        known_entries = await conn.fetch(
            "SELECT posting_id, hash, seal FROM ledger_entries WHERE posting_id = ANY($1::uuid[])",
            ids,
        )
        known_alerts = await conn.fetch(
            "SELECT posting_id, town, kind, reason, account, balance_fen, change_fen, "
            "occurred_at, seal FROM ledger_alerts WHERE posting_id = ANY($1::uuid[])",
            ids,
        )
        heads = await conn.fetch(
            """SELECT c.chain, h.chain_seq, h.hash, h.seal, h.posting_id
                 FROM unnest($1::text[]) AS c(chain)
                 CROSS JOIN LATERAL (
                     SELECT chain_seq, hash, seal, posting_id FROM ledger_entries e
                      WHERE e.chain = c.chain ORDER BY chain_seq DESC LIMIT 1) AS h""",
            chains,
        )
        # nothing written around the writer is built on or lets a real posting be dropped
        for r in (*known_entries, *heads):
            if not _entry_seal_ok(self.sealer, r):
                raise LedgerTamperedError(
                    f"entry {r['posting_id']} is not sealed by the ledger writer: "
                    "stopping (run verify)"
                )
        for r in known_alerts:
            if not _alert_seal_ok(self.sealer, r):
                raise LedgerTamperedError(
                    f"alert {r['posting_id']} is not sealed by the ledger writer: "
                    "stopping (run verify)"
                )
        known = [*known_entries, *known_alerts]
        reserves = reserve_accounts_touched(postings)
        balances = await _debits_minus_credits(conn, reserves) if reserves else {}
        return plan_batch(
            postings,
            {r["chain"]: ChainHead(int(r["chain_seq"]), bytes(r["hash"])) for r in heads},
            balances,
            (r["posting_id"] for r in known),
        )

    async def _write(self, conn: Conn, plan: BatchPlan) -> None:
        new_accounts = [a for a in plan.accounts if a.code not in self._known_accounts]
        if new_accounts:
            await conn.execute(
                """INSERT INTO ledger_accounts (code, kind, town, name, normal_side)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                                        $5::text[])
                   ON CONFLICT (code) DO NOTHING""",
                [a.code for a in new_accounts],
                [a.kind for a in new_accounts],
                [a.town for a in new_accounts],
                [a.name for a in new_accounts],
                [str(a.normal_side) for a in new_accounts],
            )
        if plan.entries:
            # COPY: the fastest way in (docs/design.md "batched": ~400k rows/s vs ~110k executemany)
            await conn.copy_records_to_table(
                "ledger_entries",
                columns=ENTRY_COLUMNS,
                records=[
                    _entry_row(e, p, seals.seal_entry(self.sealer, e.hash)) for e, p in plan.entries
                ],
            )
            await conn.copy_records_to_table(
                "ledger_lines",
                columns=LINE_COLUMNS,
                records=[
                    (e.posting_id, n, line.account, line.side, line.amount_fen)
                    for e, _ in plan.entries
                    for n, line in enumerate(e.lines, start=1)
                ],
            )
        if plan.alerts:
            await conn.executemany(
                """INSERT INTO ledger_alerts (posting_id, town, kind, reason, account,
                       balance_fen, change_fen, occurred_at, posting,
                       source_topic, source_partition, source_offset, seal)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13)
                   ON CONFLICT (posting_id) DO NOTHING""",
                [
                    (
                        a.posting.posting_id,
                        a.posting.town,
                        a.posting.kind,
                        a.reason,
                        a.account,
                        a.balance_fen,
                        a.change_fen,
                        a.posting.occurred_at,
                        a.posting.raw,
                        a.posting.source.topic,
                        a.posting.source.partition,
                        a.posting.source.offset,
                        self.sealer.seal(
                            seals.ALERT,
                            seals.alert_payload(
                                posting_id=a.posting.posting_id,
                                town=a.posting.town,
                                kind=a.posting.kind,
                                reason=a.reason,
                                account=a.account,
                                balance_fen=a.balance_fen,
                                change_fen=a.change_fen,
                                occurred_at=a.posting.occurred_at,
                            ),
                        ),
                    )
                    for a in plan.alerts
                ],
            )
            for a in plan.alerts:
                # an expected business outcome (STYLE), but finance must hear of it
                log.warning(
                    "reserve guard refused posting %s: %s is %d fen, change %d fen",
                    a.posting.posting_id,
                    a.account,
                    a.balance_fen,
                    a.change_fen,
                )


def _optional_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _entry_seal_ok(sealer: Sealer, r: asyncpg.Record) -> bool:
    seal = _optional_bytes(r["seal"])
    # NULL: stored before the chain key (the migration lets no new row go without a seal)
    return seal is None or sealer.valid(seals.ENTRY, seals.entry_payload(bytes(r["hash"])), seal)


def _alert_seal_ok(sealer: Sealer, r: asyncpg.Record) -> bool:
    seal = _optional_bytes(r["seal"])
    return seal is None or sealer.valid(seals.ALERT, _alert_payload(r), seal)


def _alert_payload(r: asyncpg.Record) -> bytes:
    return seals.alert_payload(
        posting_id=r["posting_id"],
        town=r["town"],
        kind=r["kind"],
        reason=r["reason"],
        account=r["account"],
        balance_fen=int(r["balance_fen"]),
        change_fen=int(r["change_fen"]),
        occurred_at=r["occurred_at"],
    )


def _entry_row(e: Entry, p: IncomingPosting, seal: bytes) -> tuple[Any, ...]:
    return (
        e.posting_id,
        e.chain,
        e.chain_seq,
        e.kind,
        e.town,
        e.correlation_id,
        e.causation_id,
        e.occurred_at,
        p.recorded_at,
        e.memo,
        e.prev_hash,
        e.hash,
        p.source.topic,
        p.source.partition,
        p.source.offset,
        seal,
    )


async def _debits_minus_credits(conn: Conn, accounts: Sequence[str]) -> dict[str, int]:
    # the reserve guard's running balances (migration 0005): one row per account, however
    # large the book; a reserve with no line yet is 0
    rows = await conn.fetch(
        """SELECT a.account, coalesce(b.balance_fen, 0) AS balance_fen
             FROM unnest($1::text[]) AS a(account)
             LEFT JOIN ledger_reserve_balances b ON b.account = a.account""",
        list(accounts),
    )
    return {r["account"]: int(r["balance_fen"]) for r in rows}


# ---------------------------------------------------------------- read side


@dataclasses.dataclass(frozen=True)
class AccountBalance:
    account: str
    kind: str
    town: str  # town code or "county"
    name: str
    debit_fen: int
    credit_fen: int
    balance_fen: int  # on the account's normal side


async def balances(db: Pool | Conn, town: str | None = None) -> list[AccountBalance]:
    """Every account's balance (or the accounts of one town), from the running balances
    the lines keep (0008: one row an account however large the book; `verify` checks
    them against the journal)."""
    rows = await db.fetch(
        """SELECT a.code, a.kind, a.town, a.name,
                  coalesce(b.debit_fen, 0) AS debit_fen, coalesce(b.credit_fen, 0) AS credit_fen
             FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account = a.code
            WHERE $1::text IS NULL OR a.town = $1
            ORDER BY a.town, a.kind""",
        town,
    )
    return [
        AccountBalance(
            account=r["code"],
            kind=r["kind"],
            town=r["town"],
            name=r["name"],
            debit_fen=int(r["debit_fen"]),
            credit_fen=int(r["credit_fen"]),
            balance_fen=normal_balance(r["kind"], int(r["debit_fen"]), int(r["credit_fen"])),
        )
        for r in rows
    ]


async def balances_by_town(db: Pool | Conn) -> dict[str, dict[str, int]]:
    """{town or "county": {account kind: balance_fen}} — the dashboard's table."""
    out: dict[str, dict[str, int]] = {}
    for b in await balances(db):
        out.setdefault(b.town, {})[b.kind] = b.balance_fen
    return out


async def day_figures(db: Pool | Conn, day: date | None = None) -> dict[DayKey, DayFigure]:
    """The running day figures (0008): {(CST day, town, kind): postings, debits, paid},
    of one day or of every day."""
    rows = await db.fetch(
        """SELECT day, town, kind, postings, debit_fen, paid_fen FROM ledger_day_figures
            WHERE $1::date IS NULL OR day = $1""",
        day,
    )
    return {
        (r["day"], r["town"], r["kind"]): DayFigure(
            int(r["postings"]), int(r["debit_fen"]), int(r["paid_fen"])
        )
        for r in rows
    }


async def reserve_balances(db: Pool | Conn) -> dict[str, int]:
    """{town: available reserve in fen} (debits - credits of town_reserve:<town>)."""
    return {b.town: b.balance_fen for b in await balances(db) if b.kind == RESERVE_KIND}


@dataclasses.dataclass(frozen=True)
class Movement:
    seq: int
    chain_seq: int
    posting_id: uuid.UUID
    kind: str
    memo: str
    occurred_at: datetime
    change_fen: int  # + into the reserve, - out of it
    balance_fen: int  # the reserve after this movement


async def reserve_movements(db: Pool | Conn, town: str, *, limit: int = 1_000) -> list[Movement]:
    """The last `limit` movements of a town's reserve, oldest first, with running balance."""
    rows = await db.fetch(
        """SELECT * FROM (
             SELECT e.seq, e.chain_seq, e.posting_id, e.kind, e.memo, e.occurred_at,
                    sum(CASE l.side WHEN 'debit' THEN l.amount_fen ELSE -l.amount_fen END)
                        AS change_fen,
                    sum(sum(CASE l.side WHEN 'debit' THEN l.amount_fen ELSE -l.amount_fen END))
                        OVER (ORDER BY e.seq) AS balance_fen
               FROM ledger_lines l JOIN ledger_entries e USING (posting_id)
              WHERE l.account = $1
              GROUP BY e.seq, e.chain_seq, e.posting_id, e.kind, e.memo, e.occurred_at
           ) m ORDER BY seq DESC LIMIT $2""",
        reserve_account(town),
        limit,
    )
    return [
        Movement(
            seq=r["seq"],
            chain_seq=r["chain_seq"],
            posting_id=r["posting_id"],
            kind=r["kind"],
            memo=r["memo"],
            occurred_at=r["occurred_at"],
            change_fen=int(r["change_fen"]),
            balance_fen=int(r["balance_fen"]),
        )
        for r in reversed(rows)
    ]


@dataclasses.dataclass(frozen=True)
class Alert:
    posting_id: uuid.UUID
    town: str
    kind: str
    reason: str
    account: str
    balance_fen: int
    change_fen: int
    occurred_at: datetime


async def alerts(db: Pool | Conn, town: str | None = None, *, limit: int = 1_000) -> list[Alert]:
    rows = await db.fetch(
        """SELECT posting_id, town, kind, reason, account, balance_fen, change_fen, occurred_at
             FROM ledger_alerts WHERE $1::text IS NULL OR town = $1
            ORDER BY seq DESC LIMIT $2""",
        town,
        limit,
    )
    return [Alert(**dict(r)) for r in reversed(rows)]


def period_bounds(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """[00:00 CST of first_day, 00:00 CST of the day after last_day): finance's days are
    China Standard Time days (schemas.envelope.CST)."""
    if last_day < first_day:
        raise ValueError("the period ends before it starts")
    start = datetime.combine(first_day, time(0), tzinfo=CST)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=CST)
    return start, end


STATEMENT_HEADER = (
    "account",
    "occurred_at_cst",
    "posting_id",
    "kind",
    "memo",
    "debit_fen",
    "credit_fen",
    "balance_fen",
    "balance_yuan",
    "chain_seq",
    "hash",
)


async def statement_rows(
    db: Pool | Conn, town: str, first_day: date, last_day: date
) -> list[tuple[Any, ...]]:
    """Per account of `town`: an opening-balance row, each line in the period (by event
    time, occurred_at) with the running balance, and a closing row. Balances are on the
    account's normal side."""
    start, end = period_bounds(first_day, last_day)
    rows = await db.fetch(
        """SELECT a.code, a.kind, e.occurred_at, e.posting_id, e.kind AS posting_kind, e.memo,
                  l.side, l.amount_fen, e.chain_seq, e.hash, e.occurred_at < $2 AS before
             FROM ledger_accounts a
             JOIN ledger_lines l ON l.account = a.code
             JOIN ledger_entries e USING (posting_id)
            WHERE a.town = $1 AND e.occurred_at < $3
            ORDER BY a.code, e.occurred_at, e.seq, l.line_no
            LIMIT $4""",
        town,
        start,
        end,
        STATEMENT_MAX_ROWS,
    )
    out: list[tuple[Any, ...]] = []
    current: str | None = None
    balance = 0
    opened = False

    def row(label: str, amount_fen: int) -> tuple[Any, ...]:
        return (current, "", "", label, "", "", "", amount_fen, yuan(amount_fen), "", "")

    for r in rows:
        if r["code"] != current:
            if current is not None:
                out.extend([] if opened else [row("opening", balance)])
                out.append(row("closing", balance))
            current, balance, opened = r["code"], 0, False
        amount = int(r["amount_fen"])
        debit = r["side"] == "debit"
        change = normal_balance(r["kind"], amount if debit else 0, 0 if debit else amount)
        if r["before"]:
            balance += change
            continue
        if not opened:
            out.append(row("opening", balance))
            opened = True
        balance += change
        out.append(
            (
                current,
                r["occurred_at"].astimezone(CST).isoformat(timespec="seconds"),
                str(r["posting_id"]),
                r["posting_kind"],
                r["memo"],
                amount if debit else "",
                "" if debit else amount,
                balance,
                yuan(balance),
                r["chain_seq"],
                bytes(r["hash"]).hex(),
            )
        )
    if current is not None:
        out.extend([] if opened else [row("opening", balance)])
        out.append(row("closing", balance))
    return out


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection:
# a memo "=HYPERLINK(...)" opened by finance). Text cells that do are prefixed with an
# apostrophe, which spreadsheets show as text; numbers (a negative balance) stay numbers.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def statement_csv(rows: Sequence[tuple[Any, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STATEMENT_HEADER)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


async def statement(db: Pool | Conn, town: str, first_day: date, last_day: date) -> str:
    """The town's statement for [first_day, last_day] (CST days) as CSV."""
    return statement_csv(await statement_rows(db, town, first_day, last_day))


async def reconcile_reserves(
    db: Pool | Conn, view_available_fen: Mapping[str, int]
) -> list[ReserveDifference]:
    """Compare a {town: available_fen} view (e.g. the processor's) with the ledger's town
    reserves; an empty list means they agree."""
    return reconcile(view_available_fen, await reserve_balances(db))


# ---------------------------------------------------------------- verify


_ENTRY_SELECT = """SELECT posting_id, chain, chain_seq, kind, town, correlation_id,
                          causation_id, occurred_at, memo, prev_hash, hash, seal
                     FROM ledger_entries"""

# every chain, one index probe each (a skip scan of (chain, chain_seq)), not the journal
CHAINS_SQL = """
WITH RECURSIVE c(chain) AS (
    SELECT min(chain) FROM ledger_entries
    UNION ALL
    SELECT (SELECT min(e.chain) FROM ledger_entries e WHERE e.chain > c.chain)
      FROM c WHERE c.chain IS NOT NULL)
SELECT chain FROM c WHERE chain IS NOT NULL"""


async def _stored_entries(
    conn: Conn, after: Mapping[str, int] | None = None
) -> AsyncIterator[Entry]:
    """Entries in (chain, chain_seq) order, in chunks; with `after` (chain -> position),
    only those past each chain's position (a chain not named: from its start)."""
    if after is None:
        last: tuple[str, int] | None = None  # keyset pagination over (chain, chain_seq)
        while True:
            rows = await conn.fetch(
                f"{_ENTRY_SELECT} WHERE (chain, chain_seq) > ($1, $2) "
                "ORDER BY chain, chain_seq LIMIT $3",
                "" if last is None else last[0],
                0 if last is None else last[1],
                VERIFY_CHUNK_ENTRIES,
            )
            if not rows:
                return
            for entry in await _with_lines(conn, rows):
                yield entry
            last = (rows[-1]["chain"], int(rows[-1]["chain_seq"]))
    for chain in [r["chain"] for r in await conn.fetch(CHAINS_SQL)]:
        position = after.get(chain, 0)
        while True:
            rows = await conn.fetch(
                f"{_ENTRY_SELECT} WHERE chain = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT $3",
                chain,
                position,
                VERIFY_CHUNK_ENTRIES,
            )
            if not rows:
                break
            for entry in await _with_lines(conn, rows):
                yield entry
            position = int(rows[-1]["chain_seq"])


async def _with_lines(conn: Conn, rows: Sequence[asyncpg.Record]) -> list[Entry]:
    lines: dict[uuid.UUID, list[Line]] = {}
    for r in await conn.fetch(
        "SELECT posting_id, account, side, amount_fen FROM ledger_lines "
        "WHERE posting_id = ANY($1::uuid[]) ORDER BY posting_id, line_no",
        [r["posting_id"] for r in rows],
    ):
        lines.setdefault(r["posting_id"], []).append(
            Line(r["account"], r["side"], int(r["amount_fen"]))
        )
    return [
        Entry(
            posting_id=r["posting_id"],
            chain=r["chain"],
            chain_seq=int(r["chain_seq"]),
            kind=r["kind"],
            town=r["town"],
            correlation_id=r["correlation_id"],
            causation_id=r["causation_id"],
            occurred_at=r["occurred_at"],
            memo=r["memo"],
            lines=tuple(lines.get(r["posting_id"], ())),
            prev_hash=bytes(r["prev_hash"]),
            hash=bytes(r["hash"]),
            seal=_optional_bytes(r["seal"]),
        )
        for r in rows
    ]


async def verify(
    db_url: str,
    sealer: Sealer | None,
    published: Sequence[PublishedHead] = (),
    *,
    verifier: Verifier | None = None,
) -> VerifyReport:
    """Recompute every chain and every balance from the journal (one consistent snapshot).
    With the chain key (`sealer`), every entry, alert and position must carry the writer's
    seal; each `published` head must still be in its chain, at its place, with its hash
    (history the database cannot rewrite unnoticed).

    `verifier`: the caller's, kept between runs (the dashboard's, every minute). Fresh, it
    makes a full run. Fed by an earlier run, it carries on: only the entries appended since
    are checked, after the heads it verified are found unchanged in their chains, and the
    running balances and day figures are compared with its sums - a cost that of what was
    appended, not of the book. The rest of the whole recomputation (lines without an entry,
    the seals of alerts and positions) is the full run's: finance's `verify` and the
    dashboard's "verify now"."""
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            verifier = verifier if verifier is not None else Verifier(sealer)
            verified = verifier.positions()
            after: dict[str, int] | None = None
            if verified:
                after = {}
                for chain, (position, hash_) in verified.items():
                    stored = await conn.fetchval(
                        "SELECT hash FROM ledger_entries WHERE chain = $1 AND chain_seq = $2",
                        chain,
                        position,
                    )
                    if stored is None or bytes(stored) != hash_:
                        verifier.note(
                            chain,
                            f"the entry verified at #{position} ({hash_.hex()[:16]}…) is "
                            + ("missing" if stored is None else "a different entry now")
                            + ": history was rewritten",
                        )
                    after[chain] = position
            elif sealer is not None:
                await _check_sealed_rows(conn, verifier, sealer)
            for head in published:
                stored = await conn.fetchval(
                    "SELECT hash FROM ledger_entries WHERE chain = $1 AND chain_seq = $2",
                    head.chain,
                    head.chain_seq,
                )
                if stored is None or bytes(stored) != head.hash:
                    verifier.note(
                        head.chain,
                        f"the head published on {head.day} (#{head.chain_seq} "
                        f"{head.hash.hex()[:16]}…) is "
                        + ("missing" if stored is None else "a different entry now")
                        + ": history was rewritten",
                    )
            async for entry in _stored_entries(conn, after):
                verifier.feed(entry)
            if after is None:
                orphans = await conn.fetch(
                    """SELECT DISTINCT l.posting_id FROM ledger_lines l
                        WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e
                                           WHERE e.posting_id = l.posting_id)
                        LIMIT 10"""
                )
                for r in orphans:
                    verifier.note("*", f"lines of posting {r['posting_id']} have no journal entry")
            # what the dashboard and the reserve guard read, compared with the journal:
            # every account's balance and the day figures (0008), the guard's reserves (0005)
            stored_balances = {b.account: b.balance_fen for b in await balances(conn)}
            stored_days = await day_figures(conn)
            stored_reserves = {
                r["account"]: int(r["balance_fen"])
                for r in await conn.fetch(
                    "SELECT account, balance_fen FROM ledger_reserve_balances"
                )
            }
        return verifier.report(stored_balances, stored_days, stored_reserves)
    finally:
        await conn.close()


async def _check_sealed_rows(conn: Conn, verifier: Verifier, sealer: Sealer) -> None:
    """Alerts and positions carry the writer's seal too (entries: in the Verifier)."""
    for r in await conn.fetch(
        "SELECT posting_id, town, kind, reason, account, balance_fen, change_fen, "
        "occurred_at, seal FROM ledger_alerts ORDER BY seq"
    ):
        if r["seal"] is None or not _alert_seal_ok(sealer, r):
            verifier.note(
                r["town"],
                f"alert {r['posting_id']}: " + (NOT_SEALED if r["seal"] is None else BAD_SEAL),
            )
    for r in await conn.fetch(
        "SELECT topic, partition, next_offset, seal FROM ledger_positions "
        "ORDER BY topic, partition, next_offset"
    ):
        payload = seals.position_payload(r["topic"], int(r["partition"]), int(r["next_offset"]))
        if not sealer.valid(seals.POSITION, payload, _optional_bytes(r["seal"])):
            verifier.note(
                "*",
                f"position {r['topic']}[{r['partition']}] -> {r['next_offset']}: "
                + (NOT_SEALED if r["seal"] is None else BAD_SEAL),
            )


__all__ = [
    "Account",
    "AccountBalance",
    "Alert",
    "BatchResult",
    "LedgerStore",
    "Movement",
    "RetryPolicy",
    "alerts",
    "balances",
    "balances_by_town",
    "connect_pool",
    "day_figures",
    "migrate",
    "read_positions",
    "reconcile_reserves",
    "reserve_balances",
    "reserve_movements",
    "statement",
    "statement_rows",
    "verify",
]
