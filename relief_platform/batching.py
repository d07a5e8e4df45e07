"""Group commit for many concurrent callers: each awaits its own answer, one statement
answers them all.

Callers `submit` an item and await its result. One flusher task takes everything queued
(up to `max_items`), runs `flush(items)` once, and hands each caller its own outcome.
While a flush runs, the next callers queue: under load the batches grow by themselves,
at rest a lone caller is flushed at once (no timer, no added latency). A flush that
raises fails every caller of that batch with the same exception; the next batch is
tried afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("relief.batching")

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    def __init__(
        self,
        flush: Callable[[Sequence[In]], Awaitable[Sequence[Out]]],
        *,
        max_items: int = 500,
        name: str = "batch",
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self._max = max_items
        self._name = name
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: In) -> Out:
        if self._closed:
            raise RuntimeError(f"{self._name}: closed")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-flusher")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            live = [(item, f) for item, f in batch if not f.done()]  # a caller cancelled
            if not live:
                continue
            try:
                results = await self._flush([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(
                        f"{self._name}: {len(results)} results for {len(live)} items"
                    )
            except Exception as exc:  # every caller of this batch learns of it
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, future in live + self._queue:
                    if not future.done():
                        future.cancel()
                raise
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
