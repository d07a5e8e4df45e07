"""Group commit: each caller gets its own result, batches grow under load, a failed flush
fails only its own batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from relief_platform.batching import Batcher


async def test_each_caller_gets_its_own_result_and_concurrent_callers_share_a_flush() -> None:
    flushes: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        flushes.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush, max_items=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(120)))
    assert results == [i * 10 for i in range(120)]
    assert sum(len(f) for f in flushes) == 120
    assert max(len(f) for f in flushes) == 50  # bounded
    assert len(flushes) <= 4  # 120 callers did not cost 120 flushes
    await batcher.close()


async def test_a_lone_caller_is_flushed_at_once() -> None:
    async def flush(items: Sequence[str]) -> list[str]:
        return [s.upper() for s in items]

    batcher: Batcher[str, str] = Batcher(flush)
    assert await asyncio.wait_for(batcher.submit("a"), 1) == "A"
    assert await asyncio.wait_for(batcher.submit("b"), 1) == "B"
    await batcher.close()


async def test_a_failed_flush_fails_its_batch_only() -> None:
    calls = 0

    async def flush(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
            raise ConnectionError("database away")
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the first flush starts with item 1 alone
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    with pytest.raises(ConnectionError, match="database away"):
        await first
    assert await asyncio.gather(*later) == [2, 3]
    await batcher.close()


async def test_a_flush_answering_the_wrong_number_of_results_fails_its_callers() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return [1]

    batcher: Batcher[int, int] = Batcher(flush)
    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))
    await batcher.close()


async def test_a_cancelled_caller_does_not_hold_up_the_others() -> None:
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        await gate.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()
    assert await first == 1
    assert await batcher.submit(3) == 3
    await batcher.close()


async def test_closed_refuses_new_callers_after_flushing_the_queue() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush)
    pending = asyncio.create_task(batcher.submit(7))
    await asyncio.sleep(0)
    await batcher.close()
    assert await pending == 7
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(8)
