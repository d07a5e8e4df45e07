"""The first-answer cache: bounded, aged, and precise about what differs."""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.idempotency import (
    KEY_PATTERN,
    MAX_KEY_CHARS,
    Answer,
    Fingerprint,
    IdempotencyCache,
    canonical,
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


def test_each_answer_is_kept_its_own_ttl_from_when_it_was_stored() -> None:
    cache = IdempotencyCache(max_entries=10, ttl_s=60)
    fp = Fingerprint.of("op", BODY, KEY)
    cache.put("org", "early", fp, OK, now_s=100)
    cache.put("org", "late", fp, OK, now_s=130)
    assert cache.get("org", "early", now_s=159) is not None
    # the first expires at 160, the one stored after it stays until 190
    assert cache.get("org", "early", now_s=160) is None
    assert cache.get("org", "late", now_s=160) is not None and len(cache) == 1
    assert cache.get("org", "late", now_s=1_000) is None and len(cache) == 0


def test_a_cache_needs_a_positive_ttl() -> None:
    with pytest.raises(ValueError, match="needs"):
        IdempotencyCache(1, -1.0)


def test_a_retried_body_is_the_same_whatever_the_order_of_its_keys() -> None:
    first = {"households": [{"name": "王某", "id": "1"}], "town": "370321001"}
    again = {"town": "370321001", "households": [{"id": "1", "name": "王某"}]}
    fp = Fingerprint.of("POST /v1/incidents", first, KEY)
    assert fp.differing(Fingerprint.of("POST /v1/incidents", again, KEY)) == []
    assert fp.fields == field_digests(again, KEY)


def test_at_most_fifty_differing_fields_are_named() -> None:
    first = Fingerprint.of("op", {f"f{i:02d}": 0 for i in range(60)}, KEY)
    other = Fingerprint.of("other op", {f"f{i:02d}": 1 for i in range(60)}, KEY)
    named = first.differing(other)
    assert len(named) == 50
    assert named[:3] == ["(operation)", "f00", "f01"] and named[-1] == "f48"


def test_a_cache_of_one_entry_or_of_a_short_ttl_is_a_cache() -> None:
    cache = IdempotencyCache(max_entries=1, ttl_s=0.5)
    cache.put("org", "k", Fingerprint.of("op", {}, KEY), OK, now_s=0)
    assert cache.get("org", "k", now_s=0.4) is not None
    assert cache.get("org", "k", now_s=0.5) is None


def test_an_idempotency_key_is_1_to_200_printable_ascii_characters() -> None:
    def taken(key: str) -> bool:
        return len(key) <= MAX_KEY_CHARS and re.fullmatch(KEY_PATTERN, key) is not None

    assert taken("k" * 200) and taken("~!") and taken("x")
    assert not taken("k" * 201) and not taken("") and not taken("a b") and not taken("键")


def test_an_empty_object_is_a_field_of_its_own_and_an_empty_body_has_none() -> None:
    assert Fingerprint.of("op", {}, KEY).fields == {}
    with_empty = Fingerprint.of("op", {"casualties": {}, "town": "370321001"}, KEY)
    without = Fingerprint.of("op", {"town": "370321001"}, KEY)
    assert with_empty.differing(without) == ["casualties"]
    assert without.differing(Fingerprint.of("op", {}, KEY)) == ["town"]


def test_field_digests_keep_their_spelling_so_stored_claims_stay_comparable() -> None:
    """Claims are kept in PostgreSQL across restarts and versions: a retry compares its
    digests with the stored ones, so the same value must give the same digest as before
    (golden values: keys sorted, text in UTF-8, 32 hex characters)."""
    body = {
        "reason": "房屋受损",
        "households": [{"name": "王某", "id": "1"}],
        "requested_fen": 80_000,
        "note": None,
        "vagrant": True,
        "casualties": {"dead": 0, "note": '"引号"\n'},
    }
    assert field_digests(body, KEY) == {
        "reason": "dece181850439c48074853cd8d393e89",
        "households": "ae38f011eb87c8fac39a302f1ab37c9b",
        "requested_fen": "e45cc92212f575d52ac33938c2c8eb07",
        "note": "4f8e50474859509655c607c2e2a73116",
        "vagrant": "59fb5f574ea421e74c9dd72c8d1e2539",
        "casualties.dead": "6da0de8af1c217489c4fee7c4d2692f3",
        "casualties.note": "ea9db5e2f00bf2569d4bec254c0ecb1e",
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_a_value_is_spelled_as_json_dumps_spells_it(value: Any) -> None:
    """The digests' text is json.dumps's with the canonical options, whatever the value
    (the short ways for a text, a whole number and null included)."""
    dumped = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(value) == dumped


NAMES = st.text(alphabet="ab王_", min_size=1, max_size=3)  # no dot: a path is unambiguous
BODIES = st.dictionaries(
    NAMES,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
        max_leaves=10,
    ),
    max_size=6,
)


@given(BODIES, st.binary(min_size=16))
def test_each_digest_is_the_keyed_hmac_of_the_value_spelled_canonically(
    body: dict[str, Any], key: bytes
) -> None:
    for name, digest in field_digests(body, key).items():
        value: Any = body
        for part in name.split("."):
            value = value[part]
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert digest == hmac.new(key, text.encode(), "sha256").hexdigest()[:32]


def test_another_route_is_named_whichever_way_it_sorts() -> None:
    cases = Fingerprint.of("POST /v1/cases", BODY, KEY)
    incidents = Fingerprint.of("POST /v1/incidents", BODY, KEY)
    assert cases.differing(incidents) == ["(operation)"]
    assert incidents.differing(cases) == ["(operation)"]
