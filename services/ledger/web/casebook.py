"""The open cases the dashboard shows, read from the casebook over HTTP (its own service:
the ledger reads no other service's tables and imports none of its code)."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp

log = logging.getLogger("relief.ledger.web.casebook")


class OpenCasesReader:
    """GET /v1/open-cases with a service token; None when the casebook does not answer
    (the page then keeps what it showed, marked as not current)."""

    def __init__(
        self, url: str, token: str, timeout_s: float, limit: int, min_interval_s: float = 0.0
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.limit = limit
        self.min_interval_s = min_interval_s  # between two questions to the casebook
        self._session: aiohttp.ClientSession | None = None
        self._last: dict[str, Any] | None = None  # its last answer
        self._asked_at: float | None = None  # monotonic

    @property
    def configured(self) -> bool:
        return bool(self.url)

    async def read(self) -> dict[str, Any] | None:
        """The open cases; within `min_interval_s` of the last question, its answer again
        (None if that one went unanswered)."""
        if not self.url:
            return None
        now = time.monotonic()
        if self._asked_at is not None and now - self._asked_at < self.min_interval_s:
            return self._last
        self._asked_at = now
        self._last = await self._ask()
        return self._last

    async def _ask(self) -> dict[str, Any] | None:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(headers=headers, timeout=self.timeout)
        try:
            async with self._session.get(
                f"{self.url}/v1/open-cases", params={"limit": str(self.limit)}
            ) as response:
                if response.status != 200:
                    log.warning("the casebook answered %d to open-cases", response.status)
                    return None
                data: dict[str, Any] = await response.json()
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("open cases not read from the casebook: %s", exc)
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
