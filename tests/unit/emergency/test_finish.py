"""A batch runs to its end when the agent is cancelled meanwhile (a SIGTERM): Faust
acknowledges the batch's records as the agent leaves its loop, so a batch cut short
there would be skipped for good."""

from __future__ import annotations

import asyncio

import pytest

from services.emergency.adapters.faust_app import finish


async def test_a_cancelled_agent_finishes_its_batch_then_stops() -> None:
    stored: list[str] = []
    started = asyncio.Event()

    async def batch() -> None:
        started.set()
        await asyncio.sleep(0.05)  # sending outputs, storing state...
        stored.append("batch")

    agent = asyncio.create_task(finish(batch()))
    await started.wait()
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    assert stored == ["batch"]


async def test_cancelled_twice_still_finishes() -> None:
    stored: list[str] = []
    started = asyncio.Event()

    async def batch() -> None:
        started.set()
        await asyncio.sleep(0.05)
        stored.append("batch")

    agent = asyncio.create_task(finish(batch()))
    await started.wait()
    agent.cancel()
    await asyncio.sleep(0.01)
    agent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await agent
    assert stored == ["batch"]


async def test_a_batch_that_fails_raises_its_error() -> None:
    async def batch() -> None:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await finish(batch())


async def test_an_uncancelled_batch_returns_normally() -> None:
    stored: list[str] = []

    async def batch() -> None:
        stored.append("batch")

    await finish(batch())
    assert stored == ["batch"]
