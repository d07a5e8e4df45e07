"""What the finance dashboard shows, in one consistent snapshot of the ledger, with the
open cases as the casebook keeps them:

- reserves: the balances of `town_reserve`, `town_reserve_held` and `relief_paid` per
  town, against each town's configured size (R4: 50,000 yuan);
- open urgent cases: advances not yet paid or cancelled, with their 24-hour deadline
  due as the grant states it and breached once the processor decided so (R5) — read
  from the casebook (`casebook.py`), never worked out again from postings here;
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
PAYMENT_KINDS = ("payment_confirmed", "escalated_paid")


@dataclasses.dataclass(frozen=True)
class VerifyStatus:
    ok: bool
    head_hash: str
    entries_checked: int
    problems: tuple[str, ...]
    verified_at: datetime


# Today's figures and the counts by kind come from the running day figures the journal's
# triggers keep (migration 0008): rows per day, town and kind, never the journal itself,
# so a snapshot costs the same on the first posting and the millionth.
TODAY_SQL = """
SELECT kind, sum(postings) AS n,
       sum(CASE WHEN kind = ANY($2::text[]) THEN paid_fen ELSE debit_fen END) AS amount_fen
  FROM ledger_day_figures WHERE day = $1
 GROUP BY kind"""

LAST_POSTINGS_SQL = """
SELECT e.seq, e.chain_seq, e.town, e.kind, e.memo, e.occurred_at, e.correlation_id, e.hash,
       (SELECT sum(l.amount_fen) FROM ledger_lines l
         WHERE l.posting_id = e.posting_id AND l.side = 'debit') AS amount_fen
  FROM ledger_entries e ORDER BY e.seq DESC LIMIT $1"""

HEAD_SQL = """
SELECT (SELECT coalesce(sum(postings), 0) FROM ledger_day_figures) AS entries,
       (SELECT count(*) FROM ledger_alerts) AS alerts,
       h.seq, h.chain, h.chain_seq, h.hash
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT seq, chain, chain_seq, hash FROM ledger_entries
                      ORDER BY seq DESC LIMIT 1) h ON true"""

KIND_COUNTS_SQL = "SELECT kind, sum(postings) AS n FROM ledger_day_figures GROUP BY kind"
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


async def read(
    conn: postgres.Conn,
    county: County,
    relief_deadline: timedelta,
    now: datetime,
    *,
    open_cases: Mapping[str, Any] | None,
    max_postings: int,
) -> dict[str, Any]:
    """The dashboard's data; call inside one read-only repeatable-read transaction.
    `open_cases` is the casebook's answer (None: it did not answer)."""
    by_town = await postgres.balances_by_town(conn)
    start, _ = day_bounds(now)
    today_rows = await conn.fetch(TODAY_SQL, start.date(), list(PAYMENT_KINDS))
    last_rows = await conn.fetch(LAST_POSTINGS_SQL, max_postings)
    head = await conn.fetchrow(HEAD_SQL)
    kinds = {r["kind"]: int(r["n"]) for r in await conn.fetch(KIND_COUNTS_SQL)}
    alerts = {r["town"]: int(r["n"]) for r in await conn.fetch(ALERT_COUNTS_SQL)}
    return shape(
        county,
        by_town,
        open_cases,
        today_rows,
        last_rows,
        head,
        relief_deadline=relief_deadline,
        day=start,
        kind_counts=kinds,
        alert_counts=alerts,
    )


def _money(fen: int) -> dict[str, Any]:
    return {"fen": fen, "yuan": yuan(fen)}


def shape(
    county: County,
    by_town: Mapping[str, Mapping[str, int]],
    open_cases: Mapping[str, Any] | None,  # the casebook's /v1/open-cases, None: unknown
    today_rows: Sequence[Any],  # asyncpg Records or dicts: rows by column name
    last_rows: Sequence[Any],
    head: Any,
    *,
    relief_deadline: timedelta,
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
    for r in (open_cases or {}).get("cases", []):
        cases.append(
            {
                "case": r["case_id"],
                "town": r["town"],
                "town_zh": names.get(r["town"], {}).get("zh", r["town"]),
                "town_en": names.get(r["town"], {}).get("en", r["town"]),
                "funded_by": r["funded_by"] or "town_reserve",
                "amount": _money(int(r["granted_fen"] or 0)),
                "granted_at": r["granted_at"],
                "due_at": r["relief_due_at"],
                # as the processor decided it on a tick, not worked out again here (R5)
                "breached": r["relief_state"] == "breached",
            }
        )
    open_total = int((open_cases or {}).get("total", 0))
    # every open case counted per town (the list above stops at its limit)
    open_by_town = {
        t: {"open": int(c["open"]), "breached": int(c["breached"])}
        for t, c in (open_cases or {}).get("by_town", {}).items()
    }
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
        "open_cases_known": open_cases is not None,
        "open_by_town": open_by_town,
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
