"""Read sources: the casebook and the ledger over HTTP, or none (503 with a clear body).

Intake authorises the caller (its token, its town) and asks on its behalf with a
service token, naming the scope in every request: a case by (town, case id), a town's
deadlines, a submission for the caller's town or organisation. It reads no other
service's tables and imports none of their code.
"""

from __future__ import annotations

import logging
import uuid
from typing import TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.intake.domain.reads import (
    MAX_MOVEMENTS,
    CaseList,
    CaseView,
    DeadlineView,
    ReadNotAvailable,
    ReadScope,
    ReserveView,
    SubmissionView,
)

log = logging.getLogger("relief.intake.reads")
M = TypeVar("M", bound=BaseModel)

NOT_CONFIGURED = (
    "read side not configured: set RELIEF_CASEBOOK_URL (cases, deadlines, submissions) "
    "and RELIEF_LEDGER_URL (reserves), with their tokens"
)
DEFAULT_TIMEOUT_S = 5.0
_DEADLINES = TypeAdapter(list[DeadlineView])


class NoReadSource:
    """No read side configured: every read is 503 with NOT_CONFIGURED."""

    async def case(self, town: str, case_id: str) -> CaseView | None:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def deadlines(self, town: str) -> list[DeadlineView]:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def cases(
        self, town: str | None, statuses: list[str], incident_id: str | None, limit: int
    ) -> CaseList:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def submission(self, event_id: uuid.UUID, scope: ReadScope) -> SubmissionView:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def reserve(self, town: str, size_fen: int) -> ReserveView:
        raise ReadNotAvailable(NOT_CONFIGURED)

    async def close(self) -> None:
        return None


class _Service:
    """One HTTP service read with a bearer token; every failure is ReadNotAvailable."""

    def __init__(
        self,
        name: str,
        url: str,
        token: str,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        if self.url:
            self._client = httpx.AsyncClient(
                base_url=self.url,
                headers={"Authorization": f"Bearer {token}"} if token else {},
                timeout=httpx.Timeout(timeout_s),
                transport=transport,
            )

    async def get(
        self, path: str, params: dict[str, str] | httpx.QueryParams | None = None
    ) -> httpx.Response | None:
        """The answer (None for 404); ReadNotAvailable for anything but 200 and 404."""
        if self._client is None:
            raise ReadNotAvailable(NOT_CONFIGURED)
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
            raise ReadNotAvailable(f"the {self.name} does not answer: {problem}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            # a 401 here is intake's own misconfiguration, never the caller's fault
            log.warning("%s answered %d to %s", self.name, response.status_code, path)
            raise ReadNotAvailable(f"the {self.name} answered {response.status_code}")
        return response

    def parse(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ReadNotAvailable(f"the {self.name} answered something unreadable") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class HttpReadSource:
    """Cases, deadlines and submissions from the casebook; reserves from the ledger."""

    def __init__(
        self,
        *,
        casebook_url: str,
        casebook_token: str,
        ledger_url: str,
        ledger_token: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        casebook_transport: httpx.AsyncBaseTransport | None = None,
        ledger_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.casebook = _Service(
            "casebook", casebook_url, casebook_token, timeout_s, casebook_transport
        )
        self.ledger = _Service("ledger", ledger_url, ledger_token, timeout_s, ledger_transport)

    async def case(self, town: str, case_id: str) -> CaseView | None:
        response = await self.casebook.get(f"/v1/towns/{town}/cases/{case_id}")
        return None if response is None else self.casebook.parse(response, CaseView)

    async def deadlines(self, town: str) -> list[DeadlineView]:
        response = await self.casebook.get(f"/v1/towns/{town}/deadlines")
        if response is None:
            raise ReadNotAvailable("the casebook does not know this read")
        try:
            return _DEADLINES.validate_json(response.content)
        except ValidationError as exc:
            raise ReadNotAvailable("the casebook answered something unreadable") from exc

    async def cases(
        self, town: str | None, statuses: list[str], incident_id: str | None, limit: int
    ) -> CaseList:
        params = [("status", s) for s in statuses] + [("limit", str(limit))]
        if town is not None:
            params.append(("town", town))
        if incident_id is not None:
            params.append(("incident_id", incident_id))
        response = await self.casebook.get("/v1/cases", httpx.QueryParams(tuple(params)))
        if response is None:
            raise ReadNotAvailable("the casebook does not know this read")
        return self.casebook.parse(response, CaseList)

    async def submission(self, event_id: uuid.UUID, scope: ReadScope) -> SubmissionView:
        params = {k: v for k, v in (("town", scope.town), ("org", scope.org)) if v is not None}
        response = await self.casebook.get(f"/v1/submissions/{event_id}", params)
        if response is None:
            raise ReadNotAvailable("the casebook does not know this read")
        return self.casebook.parse(response, SubmissionView)

    async def reserve(self, town: str, size_fen: int) -> ReserveView:
        response = await self.ledger.get(
            f"/api/towns/{town}/reserve", {"movements": str(MAX_MOVEMENTS)}
        )
        if response is None:
            raise ReadNotAvailable("the ledger does not know this read")
        data = self.ledger.parse(response, _LedgerReserve)
        return ReserveView(
            town=town,
            size_fen=size_fen,
            available_fen=data.available_fen,
            held_fen=data.held_fen,
            paid_fen=data.paid_fen,
            movements=data.movements,
        )

    async def close(self) -> None:
        await self.casebook.close()
        await self.ledger.close()


class _LedgerReserve(ReserveView):
    """The ledger's answer: its balances and movements (the size is the county's)."""

    size_fen: int = 0
