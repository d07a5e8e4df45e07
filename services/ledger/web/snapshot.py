"""What the finance dashboard shows, read from the ledger in one consistent snapshot.

Everything comes from the journal (the ledger holds postings, not decisions):

- reserves: the balances of `town_reserve`, `town_reserve_held` and `relief_paid` per
  town, against each town's configured size (R4: 50,000 yuan);
- open urgent cases: an advance posting (`advance_granted` held on the town reserve, or
  `escalated_advance` on the county fund) made under R5/R4 — its memo names the rule —
  with no later `payment_confirmed`, `escalated_paid` or `advance_voided` posting of the
  same case (correlation id). Its 24-hour deadline is the posting's occurred_at (the
  request's broker stamp) + the policy's relief deadline;
- today (a China Standard Time day, by event time): grants, payments and escalations;
- the last postings, the chain's head and the last verification.

Names never reach the ledger (households are keyed hashes), so the page shows masked data
by construction: case ids and town names only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from schemas.envelope import CST
from schemas.money import yuan
from schemas.towns import County
from services.ledger.adapters import postgres

ADVANCE_KINDS = ("advance_granted", "escalated_advance")
CLOSING_KINDS = ("payment_confirmed", "escalated_paid", "advance_voided")
PAYMENT_KINDS = ("payment_confirmed", "escalated_paid")
# The rules under which the processor holds an urgent advance (decide.py's memos):
# R5 relief first (town reserve), R4 escalated to the county fund.
URGENT_MEMO_PATTERNS = ("R5:%", "R4:%")


@dataclasses.dataclass(frozen=True)
class VerifyStatus:
    ok: bool
    head_hash: str
    entries_checked: int
    problems: tuple[str, ...]
    verified_at: datetime


OPEN_CASES_SQL = """
SELECT e.correlation_id, e.town, e.kind, e.occurred_at, e.seq,
       (SELECT sum(l.amount_fen) FROM ledger_lines l
         WHERE l.posting_id = e.posting_id AND l.side = 'debit') AS amount_fen,
       count(*) OVER () AS total
  FROM ledger_entries e
 WHERE e.kind = ANY($1::text[])
   AND (e.memo LIKE ANY($3::text[]))
   AND ($5::text IS NULL OR e.town = $5)
   AND NOT EXISTS (SELECT 1 FROM ledger_entries c
                    WHERE c.town = e.town AND c.correlation_id = e.correlation_id
                      AND c.kind = ANY($2::text[]) AND c.seq > e.seq)
 ORDER BY e.occurred_at, e.seq
 LIMIT $4"""

TODAY_SQL = """
SELECT e.kind, count(*) AS n, coalesce(sum(x.amount_fen), 0) AS amount_fen
  FROM ledger_entries e
 CROSS JOIN LATERAL (
       SELECT sum(l.amount_fen) AS amount_fen FROM ledger_lines l
        WHERE l.posting_id = e.posting_id AND l.side = 'debit'
          AND (e.kind <> ALL($3::text[]) OR l.account LIKE 'relief\\_paid:%')) x
 WHERE e.occurred_at >= $1 AND e.occurred_at < $2
 GROUP BY e.kind"""

LAST_POSTINGS_SQL = """
SELECT e.seq, e.chain_seq, e.town, e.kind, e.memo, e.occurred_at, e.correlation_id, e.hash,
       (SELECT sum(l.amount_fen) FROM ledger_lines l
         WHERE l.posting_id = e.posting_id AND l.side = 'debit') AS amount_fen
  FROM ledger_entries e ORDER BY e.seq DESC LIMIT $1"""

HEAD_SQL = """
SELECT (SELECT count(*) FROM ledger_entries) AS entries,
       (SELECT count(*) FROM ledger_alerts) AS alerts,
       h.seq, h.chain, h.chain_seq, h.hash
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT seq, chain, chain_seq, hash FROM ledger_entries
                      ORDER BY seq DESC LIMIT 1) h ON true"""

KIND_COUNTS_SQL = "SELECT kind, count(*) AS n FROM ledger_entries GROUP BY kind"
ALERT_COUNTS_SQL = "SELECT town, count(*) AS n FROM ledger_alerts GROUP BY town"


async def version(db: postgres.Pool | postgres.Conn) -> tuple[int, int]:
    """(last entry seq, last alert seq): the snapshot changes only when these do."""
    row = await db.fetchrow(
        "SELECT (SELECT coalesce(max(seq), 0) FROM ledger_entries) AS e, "
        "(SELECT coalesce(max(seq), 0) FROM ledger_alerts) AS a"
    )
    return (0, 0) if row is None else (int(row["e"]), int(row["a"]))


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Today in China Standard Time: finance's day."""
    day = now.astimezone(CST).date()
    start = datetime.combine(day, time(0), tzinfo=CST)
    return start, start + timedelta(days=1)


async def open_advances(
    db: postgres.Pool | postgres.Conn, town: str | None, limit: int
) -> list[Any]:
    """Urgent advances not yet paid or voided, oldest first (all towns when town is None).
    Rows: correlation_id, town, kind, occurred_at, seq, amount_fen, total."""
    return list(
        await db.fetch(
            OPEN_CASES_SQL,
            list(ADVANCE_KINDS),
            list(CLOSING_KINDS),
            list(URGENT_MEMO_PATTERNS),
            limit,
            town,
        )
    )


async def read(
    conn: postgres.Conn,
    county: County,
    relief_deadline: timedelta,
    now: datetime,
    *,
    max_open_cases: int,
    max_postings: int,
) -> dict[str, Any]:
    """The dashboard's data; call inside one read-only repeatable-read transaction."""
    by_town = await postgres.balances_by_town(conn)
    start, end = day_bounds(now)
    open_rows = await open_advances(conn, None, max_open_cases)
    today_rows = await conn.fetch(TODAY_SQL, start, end, list(PAYMENT_KINDS))
    last_rows = await conn.fetch(LAST_POSTINGS_SQL, max_postings)
    head = await conn.fetchrow(HEAD_SQL)
    kinds = {r["kind"]: int(r["n"]) for r in await conn.fetch(KIND_COUNTS_SQL)}
    alerts = {r["town"]: int(r["n"]) for r in await conn.fetch(ALERT_COUNTS_SQL)}
    return shape(
        county,
        by_town,
        open_rows,
        today_rows,
        last_rows,
        head,
        relief_deadline=relief_deadline,
        now=now,
        day=start,
        kind_counts=kinds,
        alert_counts=alerts,
    )


def _money(fen: int) -> dict[str, Any]:
    return {"fen": fen, "yuan": yuan(fen)}


def shape(
    county: County,
    by_town: Mapping[str, Mapping[str, int]],
    open_rows: Sequence[Any],  # asyncpg Records or dicts: rows by column name
    today_rows: Sequence[Any],
    last_rows: Sequence[Any],
    head: Any,
    *,
    relief_deadline: timedelta,
    now: datetime,
    day: datetime,
    kind_counts: Mapping[str, int],
    alert_counts: Mapping[str, int],
) -> dict[str, Any]:
    """The snapshot as JSON-ready data (pure: no I/O)."""
    towns = []
    names = {}
    for t in county.towns:
        names[t.code] = {"zh": t.name_zh, "en": t.name_en}
        b = by_town.get(t.code, {})
        available = b.get("town_reserve", 0)
        towns.append(
            {
                "code": t.code,
                "name_zh": t.name_zh,
                "name_en": t.name_en,
                "opened": "town_reserve" in b,
                "size": _money(t.reserve_fen),
                "available": _money(available),
                "held": _money(b.get("town_reserve_held", 0)),
                "paid": _money(b.get("relief_paid", 0)),
                "available_ratio": available / t.reserve_fen if t.reserve_fen else 0.0,
                "alerts": alert_counts.get(t.code, 0),
            }
        )
    c = by_town.get("county", {})
    cases = []
    for r in open_rows:
        due = r["occurred_at"] + relief_deadline
        cases.append(
            {
                "case": r["correlation_id"],
                "town": r["town"],
                "town_zh": names.get(r["town"], {}).get("zh", r["town"]),
                "town_en": names.get(r["town"], {}).get("en", r["town"]),
                "funded_by": "county_fund" if r["kind"] == "escalated_advance" else "town_reserve",
                "amount": _money(int(r["amount_fen"] or 0)),
                "granted_at": r["occurred_at"].isoformat(),
                "due_at": due.isoformat(),
                "breached": due <= now,
            }
        )
    open_total = int(open_rows[0]["total"]) if open_rows else 0
    today: dict[str, dict[str, Any]] = {
        k: {"count": 0, **_money(0)} for k in ("grants", "payments", "escalations")
    }
    for r in today_rows:
        n, fen = int(r["n"]), int(r["amount_fen"])
        targets = []
        if r["kind"] in ADVANCE_KINDS:
            targets.append("grants")
        if r["kind"] == "escalated_advance":
            targets.append("escalations")
        if r["kind"] in PAYMENT_KINDS:
            targets.append("payments")
        for key in targets:
            total = today[key]["fen"] + fen
            today[key] = {"count": today[key]["count"] + n, **_money(total)}
    postings = [
        {
            "seq": int(r["seq"]),
            "chain_seq": int(r["chain_seq"]),
            "town": r["town"],
            "town_zh": names.get(r["town"], {}).get("zh", r["town"]),
            "kind": r["kind"],
            "memo": r["memo"],
            "case": r["correlation_id"],
            "occurred_at": r["occurred_at"].isoformat(),
            "amount": _money(int(r["amount_fen"] or 0)),
            "hash": bytes(r["hash"]).hex(),
        }
        for r in last_rows
    ]
    head_out = None
    if head is not None and head["seq"] is not None:
        head_out = {
            "seq": int(head["seq"]),
            "chain": head["chain"],
            "chain_seq": int(head["chain_seq"]),
            "hash": bytes(head["hash"]).hex(),
        }
    return {
        "day": day.date().isoformat(),
        "relief_deadline_s": int(relief_deadline.total_seconds()),
        "towns": towns,
        "county": {
            "fund": _money(c.get("county_fund", 0)),
            "held": _money(c.get("county_held", 0)),
        },
        "open_cases": cases,
        "open_cases_total": open_total,
        "today": today,
        "postings": postings,
        "head": head_out,
        "entries": 0 if head is None else int(head["entries"]),
        "alerts": 0 if head is None else int(head["alerts"]),
        "kind_counts": dict(kind_counts),
    }


def verification(status: VerifyStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "ok": status.ok,
        "head_hash": status.head_hash,
        "entries_checked": status.entries_checked,
        "problems": list(status.problems[:10]),
        "verified_at": status.verified_at.isoformat(),
    }
