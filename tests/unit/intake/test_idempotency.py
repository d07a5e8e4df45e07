"""The first-answer cache: bounded, aged, and precise about what differs."""

from __future__ import annotations

import pytest

from services.intake.domain.idempotency import (
    Answer,
    Fingerprint,
    IdempotencyCache,
    event_id_for,
    field_digests,
)

KEY = b"k" * 16
BODY = {
    "town": "370321001",
    "requested_fen": 80_000,
    "casualties": {"dead": 0, "injured": 2},
    "ids": ["a", "b"],
}
OK = Answer(202, {"event_id": "x"})


def test_event_id_depends_on_org_and_key_only() -> None:
    op, town = "POST /v1/cases", "370321101"
    assert event_id_for(op, town, "org", "k1") == event_id_for(op, town, "org", "k1")
    assert event_id_for(op, town, "org", "k1") != event_id_for(op, town, "org", "k2")
    assert event_id_for(op, town, "org", "k1") != event_id_for(op, town, "other", "k1")
    # the same key for another town or another operation never collides (a ledger that
    # keeps one posting per id would otherwise drop the second town's hold)
    assert event_id_for(op, town, "org", "k1") != event_id_for(op, "370321102", "org", "k1")
    other_op = "POST /v1/cases/c-1/payments"
    assert event_id_for(op, town, "org", "k1") != event_id_for(other_op, town, "org", "k1")


def test_differing_fields_are_named_by_path() -> None:
    first = Fingerprint.of("POST /v1/cases", BODY, KEY)
    same = Fingerprint.of("POST /v1/cases", dict(BODY), KEY)
    assert first.differing(same) == []
    changed = {
        **BODY,
        "requested_fen": 90_000,
        "casualties": {"dead": 1, "injured": 2},
        "ids": ["a"],
        "extra": None,
    }
    assert first.differing(Fingerprint.of("POST /v1/cases", changed, KEY)) == [
        "casualties.dead",
        "extra",
        "ids",
        "requested_fen",
    ]
    assert first.differing(Fingerprint.of("POST /v1/other", BODY, KEY)) == ["(operation)"]


def test_digests_keep_no_clear_values() -> None:
    digests = field_digests({"household_head_id": "370321198005171234"}, KEY)
    assert "370321198005171234" not in repr(digests)


def test_first_answer_is_kept_until_it_expires() -> None:
    cache = IdempotencyCache(max_entries=10, ttl_s=60)
    fp = Fingerprint.of("op", BODY, KEY)
    cache.put("org", "k", fp, OK, now_s=0)
    entry = cache.get("org", "k", now_s=59)
    assert entry is not None and entry.answer == OK
    assert cache.get("other-org", "k", now_s=59) is None
    assert cache.get("org", "k", now_s=60) is None and len(cache) == 0


def test_bounded_oldest_out() -> None:
    cache = IdempotencyCache(max_entries=3, ttl_s=1_000)
    fp = Fingerprint.of("op", {}, KEY)
    for i in range(5):
        cache.put("org", f"k{i}", fp, OK, now_s=i)
    assert len(cache) == 3
    assert cache.get("org", "k0", 5) is None and cache.get("org", "k1", 5) is None
    assert cache.get("org", "k4", 5) is not None


@pytest.mark.parametrize(("entries", "ttl"), [(0, 1.0), (1, 0.0)])
def test_a_cache_needs_limits(entries: int, ttl: float) -> None:
    with pytest.raises(ValueError, match="needs"):
        IdempotencyCache(entries, ttl)
