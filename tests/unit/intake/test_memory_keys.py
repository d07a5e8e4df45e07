"""The in-process key store (no database): one request per key at a time, the first
answer kept, a released key claimed again."""

from __future__ import annotations

import asyncio

import pytest

from services.intake.adapters.idempotency_store import Answered, Claimed
from services.intake.adapters.memory_keys import MemoryKeys
from services.intake.domain.idempotency import Answer, Fingerprint, IdempotencyCache

FIRST = Fingerprint.of("POST /v1/cases", {"town": "370321101", "requested_fen": 80_000})
OK = Answer(202, {"event_id": "e-1"})


def keys() -> MemoryKeys:
    return MemoryKeys(IdempotencyCache(max_entries=10, ttl_s=60))


async def test_a_retry_waits_for_the_first_request_and_replays_its_answer() -> None:
    store = keys()
    assert isinstance(await store.claim("town-1", "k", FIRST), Claimed)
    retry = asyncio.create_task(store.claim("town-1", "k", FIRST))
    await asyncio.sleep(0.01)
    assert not retry.done()  # held: the retry neither produces nor answers yet
    await store.complete("town-1", "k", OK)
    assert await retry == Answered(FIRST, OK)


async def test_a_released_key_is_claimed_again_and_keeps_nothing() -> None:
    store = keys()
    await store.claim("town-1", "k", FIRST)
    retry = asyncio.create_task(store.claim("town-1", "k", FIRST))
    await store.release("town-1", "k")  # refused, or the outcome unknown
    assert isinstance(await retry, Claimed)
    assert len(store.cache) == 0


async def test_keys_are_per_organisation() -> None:
    store = keys()
    await store.claim("town-1", "k", FIRST)
    await store.complete("town-1", "k", OK)
    assert isinstance(await store.claim("town-2", "k", FIRST), Claimed)


async def test_many_keys_at_once_as_one_by_one() -> None:
    store = keys()
    assert await store.claim_many("dept", [("a", FIRST), ("b", FIRST)]) == [
        Claimed(),
        Claimed(),
    ]
    await store.complete_many("dept", [("a", OK)])
    await store.release_many("dept", ["b"])
    assert await store.claim_many("dept", [("a", FIRST), ("b", FIRST)]) == [
        Answered(FIRST, OK),
        Claimed(),
    ]


async def test_an_answer_for_a_key_not_claimed_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="not claimed"):
        await keys().complete("town-1", "k", OK)
