"""Idempotency keys in this process's memory: the store when no database is configured
(development, tests), behind the same interface as `PostgresKeys`, so the single and the
bulk write paths run one code path over either store.

A key is claimed by one request at a time: a second request with the same key waits for
the first to answer (then replays it) or give up (then claims it). Answers are kept in a
bounded, aged cache (domain/idempotency.py); only one process sees them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from services.intake.adapters.idempotency_store import Answered, Claimed
from services.intake.domain.idempotency import Answer, Fingerprint, IdempotencyCache


class MemoryKeys:
    def __init__(self, cache: IdempotencyCache) -> None:
        self.cache = cache
        # the keys being produced now, with the fingerprint their answer is kept under
        self._held: dict[tuple[str, str], tuple[asyncio.Event, Fingerprint]] = {}

    async def claim(self, org: str, key: str, fingerprint: Fingerprint) -> Claimed | Answered:
        """Hold the key, or the first request's answer (never busy: it waits)."""
        slot = (org, key)
        while (held := self._held.get(slot)) is not None:
            await held[0].wait()
        first = self.cache.get(org, key, time.monotonic())
        if first is not None:
            return Answered(first.fingerprint, first.answer)
        self._held[slot] = (asyncio.Event(), fingerprint)
        return Claimed()

    async def complete(self, org: str, key: str, answer: Answer) -> None:
        held = self._held.get((org, key))
        if held is None:
            raise RuntimeError(f"an answer for idempotency key {key!r}, which is not claimed")
        self.cache.put(org, key, held[1], answer, time.monotonic())
        await self.release(org, key)

    async def release(self, org: str, key: str) -> None:
        held = self._held.pop((org, key), None)
        if held is not None:
            held[0].set()

    async def claim_many(
        self, org: str, wanted: Sequence[tuple[str, Fingerprint]]
    ) -> list[Claimed | Answered | None]:
        return [await self.claim(org, key, fingerprint) for key, fingerprint in wanted]

    async def complete_many(self, org: str, answers: Sequence[tuple[str, Answer]]) -> None:
        for key, answer in answers:
            await self.complete(org, key, answer)

    async def release_many(self, org: str, keys: Sequence[str]) -> None:
        for key in keys:
            await self.release(org, key)
