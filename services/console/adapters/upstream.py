"""The console's only way to the service: HTTP to intake (with the person's own token, so
intake authorises every write and read exactly as it does for the API and the CLI), to
the casebook (the public disclosure lists, P7, and the rows of departments' hardship
lists waiting for civil affairs, section 二, with the service token; the page checks the
person's role first) and to finance's
dashboard (with the person's token). It imports no other service's code.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx


class Unreachable(RuntimeError):
    """An upstream service does not answer."""


@dataclass(frozen=True)
class Me:
    role: str
    org: str
    town: str | None


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when it is not JSON
    content_type: str = "application/json"
    raw: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def detail(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("detail"), str):
            return str(self.body["detail"])
        return str(self.body)[:500]


def _answer(response: httpx.Response) -> Answer:
    kind = response.headers.get("content-type", "")
    body: Any
    if kind.startswith("application/json"):
        try:
            body = response.json()
        except ValueError:
            body = response.text
    else:
        body = response.text
    keep = tuple((k, v) for k, v in response.headers.items() if k.lower() == "content-disposition")
    return Answer(response.status_code, body, kind, response.content, keep)


class Upstream:
    def __init__(
        self,
        intake_url: str,
        casebook_url: str,
        casebook_token: str,
        dashboard_url: str,
        timeout_s: float,
        principal_ttl_s: float,
        principal_cache_max: int,
    ) -> None:
        timeout = httpx.Timeout(timeout_s)
        self.intake = httpx.AsyncClient(base_url=intake_url.rstrip("/"), timeout=timeout)
        self.casebook = httpx.AsyncClient(
            base_url=casebook_url.rstrip("/"),
            timeout=timeout,
            headers={"Authorization": f"Bearer {casebook_token}"} if casebook_token else {},
        )
        self.dashboard = httpx.AsyncClient(base_url=dashboard_url.rstrip("/"), timeout=timeout)
        self.ttl_s = principal_ttl_s
        self.cache_max = principal_cache_max
        # sha256(token) -> (who, until): never the token itself as a key
        self._who: OrderedDict[str, tuple[Me, float]] = OrderedDict()

    async def close(self) -> None:
        for client in (self.intake, self.casebook, self.dashboard):
            await client.aclose()

    async def _call(
        self, client: httpx.AsyncClient, name: str, method: str, path: str, **kw: Any
    ) -> Answer:
        try:
            return _answer(await client.request(method, path, **kw))
        except httpx.HTTPError as exc:
            raise Unreachable(f"{name} does not answer ({type(exc).__name__})") from exc

    @staticmethod
    def _auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def me(self, token: str) -> Me | None:
        """Who the token belongs to, as intake says; None for a token intake refuses."""
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        cached = self._who.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        answer = await self._call(self.intake, "intake", "GET", "/v1/me", headers=self._auth(token))
        if answer.status == 401:
            self._who.pop(key, None)
            return None
        if not answer.ok or not isinstance(answer.body, dict):
            raise Unreachable(f"intake answered {answer.status} to who the token is")
        who = Me(str(answer.body["role"]), str(answer.body["org"]), answer.body.get("town"))
        self._who[key] = (who, now + self.ttl_s)
        self._who.move_to_end(key)
        while len(self._who) > self.cache_max:
            self._who.popitem(last=False)
        return who

    async def read(self, token: str, path: str, params: Any = None) -> Answer:
        return await self._call(
            self.intake, "intake", "GET", path, params=params, headers=self._auth(token)
        )

    async def write(self, token: str, path: str, body: Any, key: str | None) -> Answer:
        headers = self._auth(token)
        if key:
            headers["Idempotency-Key"] = key
        return await self._call(self.intake, "intake", "POST", path, json=body, headers=headers)

    async def disclosure(
        self, town: str, period: str, csv: bool, scope_town: str | None = None
    ) -> Answer:
        """The casebook's public list (P7); `scope_town` names a town reader, whom the
        casebook refuses another town's list as well."""
        params = {"period": period, **({"format": "csv"} if csv else {})}
        if scope_town is not None:
            params["scope_town"] = scope_town
        return await self._call(
            self.casebook, "the casebook", "GET", f"/v1/disclosures/{town}", params=params
        )

    async def hardship_rows(self, state: str, limit: int) -> Answer:
        """Section 二: rows of departments' lists, `waiting` for a follow-up or
        `followed_up`, every town's (county civil affairs reads them all)."""
        return await self._call(
            self.casebook,
            "the casebook",
            "GET",
            "/v1/hardship-rows",
            params={"state": state, "limit": str(limit)},
        )

    async def snapshot(self, token: str) -> Answer:
        return await self._call(
            self.dashboard, "the dashboard", "GET", "/api/snapshot", headers=self._auth(token)
        )

    async def verify(self, token: str) -> Answer:
        return await self._call(
            self.dashboard, "the dashboard", "POST", "/api/verify", headers=self._auth(token)
        )

    async def statement(self, token: str, town: str, first: str, last: str) -> Answer:
        return await self._call(
            self.dashboard,
            "the dashboard",
            "GET",
            f"/api/towns/{town}/statement.csv",
            params={"from": first, "to": last},
            headers=self._auth(token),
        )
