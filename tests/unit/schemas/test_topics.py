"""Topic names and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import topics
from schemas.topics import MAX_RAW_EXCERPT_CHARS, MAX_REASON_CHARS, RejectedRecord

CLEAR_ID = "11010519491231002X"


def test_names_and_partitions() -> None:
    assert topics.INTAKE == "relief.intake.v1"
    assert topics.DECISIONS == "relief.decisions.v1"
    assert topics.POSTINGS == "ledger.postings.v1"
    assert topics.REJECTED == "relief.rejected.v1"
    assert topics.DEFAULT_PARTITIONS == 6
    assert len(set(topics.ALL_TOPICS)) == 5


def test_a_dead_letter_is_bounded_masked_and_deterministic() -> None:
    raw = ('{"id":"' + CLEAR_ID + '","x":"' + "长" * 10_000 + '"}').encode() + b"\xff"
    rec = RejectedRecord.of(topics.INTAKE, 3, 42, f"bad {CLEAR_ID} " + "r" * 5000, raw)
    assert CLEAR_ID not in rec.raw_excerpt and CLEAR_ID not in rec.reason
    assert "110*************2X" in rec.raw_excerpt
    assert len(rec.raw_excerpt) <= MAX_RAW_EXCERPT_CHARS
    assert len(rec.reason) <= MAX_REASON_CHARS
    assert rec.raw_length == len(raw)
    again = RejectedRecord.of(topics.INTAKE, 3, 42, "other reason", raw, datetime.now(UTC))
    assert again.rejected_id == rec.rejected_id
    assert RejectedRecord.model_validate_json(rec.model_dump_json()) == rec


def test_an_empty_value_can_be_rejected_too() -> None:
    rec = RejectedRecord.of(topics.INTAKE, 0, 0, "", None)
    assert rec.raw_excerpt == "" and rec.raw_length == 0 and rec.reason
