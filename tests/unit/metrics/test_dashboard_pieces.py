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
    granted_at = NOW - timedelta(hours=25)
    due_at = granted_at + timedelta(hours=23)  # as the grant states it, whatever it is
    data = shape(
        CONFIG.county,
        {q: {"town_reserve": 4_900_000, "town_reserve_held": 100_000}, "county": {}},
        {
            "total": 2,
            "by_town": {q: {"open": 2, "breached": 1}},
            "cases": [
                {
                    "town": q,
                    "case_id": "case-1",
                    "status": "advanced",
                    "funded_by": "town_reserve",
                    "granted_fen": 100_000,
                    "granted_at": granted_at.isoformat(),
                    "relief_due_at": due_at.isoformat(),
                    "relief_state": "breached",
                },
                {
                    "town": q,
                    "case_id": "case-2",
                    "status": "escalated",
                    "funded_by": "county_fund",
                    "granted_fen": 90_000,
                    "granted_at": NOW.isoformat(),
                    "relief_due_at": (NOW + timedelta(hours=24)).isoformat(),
                    "relief_state": "open",
                },
            ],
        },
        [{"kind": "advance_granted", "n": 1, "amount_fen": 100_000}],
        [],
        None,
        relief_deadline=timedelta(hours=24),
        day=day_bounds(NOW)[0],
        kind_counts={},
        alert_counts={},
    )
    town = next(t for t in data["towns"] if t["code"] == q)
    assert town["available"] == {"fen": 4_900_000, "yuan": "49,000.00"}
    assert town["available_ratio"] == 0.98 and town["opened"] is True
    first, second = data["open_cases"]
    # due and breached as the decisions state them: never worked out again from a clock
    assert (first["breached"], first["due_at"]) == (True, due_at.isoformat())
    assert (second["breached"], second["funded_by"]) == (False, "county_fund")
    assert first["town_zh"] == "起凤镇" and first["amount"]["yuan"] == "1,000.00"
    assert data["open_cases_total"] == 2 and data["open_cases_known"] is True
    assert data["open_by_town"] == {q: {"open": 2, "breached": 1}}
    assert data["today"]["grants"]["count"] == 1 and data["today"]["escalations"]["count"] == 0
    assert data["head"] is None and data["day"] == "2026-07-21"
    assert len(data["towns"]) == len(CONFIG.county.towns)


def test_without_the_casebook_no_open_cases_are_claimed() -> None:
    data = shape(
        CONFIG.county,
        {},
        None,
        [],
        [],
        None,
        relief_deadline=timedelta(hours=24),
        day=day_bounds(NOW)[0],
        kind_counts={},
        alert_counts={},
    )
    assert data["open_cases"] == [] and data["open_cases_known"] is False


def test_a_service_token_reads_the_reserve_api_but_not_the_dashboard() -> None:
    check = TokenCheck(parse_hashes(f"service:{sha('s')}"))
    viewer = check.viewer("s")
    assert viewer is not None and viewer.role == "service"
