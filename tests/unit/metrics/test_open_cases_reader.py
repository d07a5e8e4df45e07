"""The dashboard asks the casebook for open cases at most once per interval (counting them
reads every open case: at a million, asked every second, the reads piled up)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from services.ledger.web.casebook import OpenCasesReader


async def test_the_casebook_is_asked_at_most_once_per_interval() -> None:
    asked: list[int] = []

    async def open_cases(request: web.Request) -> web.Response:
        asked.append(1)
        return web.json_response({"total": len(asked), "cases": [], "by_town": {}})

    app = web.Application()
    app.router.add_get("/v1/open-cases", open_cases)
    async with TestServer(app) as server:
        url = str(server.make_url("/"))
        reader = OpenCasesReader(url, "token", 5.0, 10, min_interval_s=0.3)
        try:
            first = await reader.read()
            again = await reader.read()  # within the interval: the same answer, not asked
            assert first == again == {"total": 1, "cases": [], "by_town": {}}
            assert len(asked) == 1
            await asyncio.sleep(0.35)
            assert (await reader.read()) == {"total": 2, "cases": [], "by_town": {}}
            assert len(asked) == 2
        finally:
            await reader.close()

        every_time = OpenCasesReader(url, "token", 5.0, 10)  # 0: every refresh asks
        try:
            await every_time.read()
            await every_time.read()
            assert len(asked) == 4
        finally:
            await every_time.close()
