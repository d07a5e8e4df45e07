"""The dashboard's pure pieces: tokens, and the snapshot's shape."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from schemas.policy import load_config
from services.ledger.web.auth import TokenCheck, TokenConfigError, bearer, parse_hashes
from services.ledger.web.snapshot import day_bounds, shape

CONFIG = load_config()
NOW = datetime(2026, 7, 20, 16, 30, tzinfo=UTC)  # 00:30 on the 21st in Huantai


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_only_finance_and_county_tokens_whose_hash_is_configured_open_it() -> None:
    check = TokenCheck(parse_hashes(f"{sha('f')}, county:{sha('c').upper()}"))
    assert check.viewer("f") is not None and check.viewer("f").role == "finance"  # type: ignore[union-attr]
    assert check.viewer("c").role == "county"  # type: ignore[union-attr]
    assert check.viewer("x") is None and check.viewer("") is None and check.viewer(None) is None
    assert check.viewer("f" * 10_000) is None
    with pytest.raises(TokenConfigError):
        parse_hashes(f"town:{sha('t')}")  # towns see their own cases elsewhere, not this
    with pytest.raises(TokenConfigError):
        parse_hashes("not-a-hash")
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None


def test_finance_days_are_china_standard_time_days() -> None:
    start, end = day_bounds(NOW)
    assert start.isoformat() == "2026-07-21T00:00:00+08:00"
    assert end - start == timedelta(days=1)


def test_the_snapshot_shape() -> None:
    q = "370321101"
    opened_at = NOW - timedelta(hours=25)
    data = shape(
        CONFIG.county,
        {q: {"town_reserve": 4_900_000, "town_reserve_held": 100_000}, "county": {}},
        [
            {
                "correlation_id": "case-1",
                "town": q,
                "kind": "advance_granted",
                "occurred_at": opened_at,
                "seq": 2,
                "amount_fen": 100_000,
                "total": 1,
            }
        ],
        [{"kind": "advance_granted", "n": 1, "amount_fen": 100_000}],
        [],
        None,
        relief_deadline=timedelta(hours=24),
        now=NOW,
        day=day_bounds(NOW)[0],
        kind_counts={},
        alert_counts={},
    )
    town = next(t for t in data["towns"] if t["code"] == q)
    assert town["available"] == {"fen": 4_900_000, "yuan": "49,000.00"}
    assert town["available_ratio"] == 0.98 and town["opened"] is True
    [case] = data["open_cases"]
    assert (
        case["breached"] is True and case["due_at"] == (opened_at + timedelta(hours=24)).isoformat()
    )
    assert case["town_zh"] == "起凤镇"
    assert data["today"]["grants"]["count"] == 1 and data["today"]["escalations"]["count"] == 0
    assert data["head"] is None and data["day"] == "2026-07-21"
    assert len(data["towns"]) == len(CONFIG.county.towns)
