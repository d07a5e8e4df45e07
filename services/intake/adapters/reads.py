"""Read sources: the ledger's PostgreSQL read side, or none (503 with a clear body)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import asyncpg

from services.intake.domain.reads import (
    MAX_HISTORY,
    MAX_MOVEMENTS,
    CaseView,
    DeadlineView,
    DecisionEntry,
    HistoryEntry,
    ReadNotAvailable,
    ReserveMovementView,
    ReserveView,
    case_status,
)
from services.ledger.adapters import postgres as ledger
from services.ledger.adapters.decisions import case_decisions, open_deadlines

log = logging.getLogger("relief.intake.reads")

NOT_CONFIGURED = (
    "read side not configured: set RELIEF_DATABASE_URL to the ledger's PostgreSQL "
    "(the service role) to read cases and reserves"
)
MAX_DEADLINES = 1_000  # open urgent cases listed per town at most
QUERY_TIMEOUT_S = 5.0


class NoReadSource:
    """No read side configured: every read is 503 with NOT_CONFIGURED."""

    async def case(self, case_id: str) -> CaseView | None:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def reserve(self, town: str, size_fen: int) -> ReserveView:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def deadlines(self, town: str) -> list[DeadlineView]:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def close(self) -> None:
        return None


class LedgerReadSource:
    """Cases and reserves from the ledger's tables (services/ledger read functions)."""

    def __init__(
        self, url: str, pool_max: int, paperwork_deadline: timedelta = timedelta(days=5)
    ) -> None:
        self.url = url
        self.pool_max = pool_max
        self.paperwork_deadline = paperwork_deadline
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _db(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncio.wait_for(
                        ledger.connect_pool(self.url, self.pool_max), QUERY_TIMEOUT_S
                    )
                except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                    raise ReadNotAvailable(
                        f"the ledger database does not answer: {type(exc).__name__}"
                    ) from exc
            return self._pool

    async def case(self, case_id: str) -> CaseView | None:
        db = await self._db()
        try:
            rows = await db.fetch(
                """SELECT e.posting_id, e.kind, e.town, e.occurred_at, e.recorded_at, e.memo,
                          coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'debit'), 0)
                              AS amount_fen
                     FROM ledger_entries e JOIN ledger_lines l USING (posting_id)
                    WHERE e.correlation_id = $1
                    GROUP BY e.seq, e.posting_id
                    ORDER BY e.seq LIMIT $2""",
                case_id,
                MAX_HISTORY,
                timeout=QUERY_TIMEOUT_S,
            )
            decided = await case_decisions(db, case_id, MAX_HISTORY)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise ReadNotAvailable(f"ledger read failed: {type(exc).__name__}") from exc
        if not rows and not decided:
            return None
        decisions = [
            DecisionEntry(
                event_id=d["event_id"],
                type=d["type"],
                rule=d["rule"],
                occurred_at=d["occurred_at"],
                figures=body.get("figures", {}),
                reason=body.get("reasons") or body.get("reason"),
            )
            for d in decided
            for body in [json.loads(d["body"])]
        ]
        history = [
            HistoryEntry(
                posting_id=r["posting_id"],
                kind=r["kind"],
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                memo=r["memo"],
                amount_fen=int(r["amount_fen"]),
            )
            for r in rows
        ]
        return CaseView(
            case_id=case_id,
            town=rows[0]["town"] if rows else decided[0]["town"],
            status=case_status([h.kind for h in history], [d.type for d in decisions]),
            history=history,
            decisions=decisions,
        )

    async def reserve(self, town: str, size_fen: int) -> ReserveView:
        db = await self._db()
        try:
            balances = {b.kind: b.balance_fen for b in await ledger.balances(db, town)}
            movements = await ledger.reserve_movements(db, town, limit=MAX_MOVEMENTS)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise ReadNotAvailable(f"ledger read failed: {type(exc).__name__}") from exc
        return ReserveView(
            town=town,
            size_fen=size_fen,
            available_fen=balances.get("town_reserve", 0),
            held_fen=balances.get("town_reserve_held", 0),
            movements=[
                ReserveMovementView(
                    posting_id=m.posting_id,
                    kind=m.kind,
                    occurred_at=m.occurred_at,
                    change_fen=m.change_fen,
                    balance_fen=m.balance_fen,
                )
                for m in movements
            ],
        )

    async def deadlines(self, town: str) -> list[DeadlineView]:
        """Open deadlines of the town's urgent advances, from the processor's decisions:
        relief within 24 h (R5, due as the grant says) and paperwork within 5 days (P1),
        until met, breached or voided."""
        db = await self._db()
        try:
            rows = await open_deadlines(db, town, self.paperwork_deadline, MAX_DEADLINES)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise ReadNotAvailable(f"ledger read failed: {type(exc).__name__}") from exc
        return [
            DeadlineView(
                case_id=r["case_id"], kind=r["deadline"], due_at=r["due_at"], warned=r["warned"]
            )
            for r in rows
        ]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
