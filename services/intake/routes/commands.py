"""The write routes made from the command table (domain/commands.py): one per command,
each taking its path parameters, its body and a caller whose role may give it, and
submitting one `Write` (service.submit). The audience routers (bureau.py, towns.py, ...)
say which commands are theirs and how the API reference shows them."""

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from schemas.intake import DISCLOSURE_PERIOD_PATTERN, MAX_HARDSHIP_ROWS
from services.intake.contract import WRITE_RESPONSES, Accepted
from services.intake.deps import CaseIdInPath, IdemKey, TownInPath, intake_of, require
from services.intake.domain import commands as cmd
from services.intake.domain.tokens import Principal
from services.intake.service import Submitted

# ---------------------------------------------------------------- path parameters
# FastAPI takes path parameters one by one; each command's path model is made from them.


async def no_path() -> cmd.NoPath:
    return cmd.NoPath()


async def case_path(case_id: CaseIdInPath) -> cmd.CasePath:
    return cmd.CasePath(case_id=case_id)


async def incident_path(incident_id: CaseIdInPath) -> cmd.IncidentPath:
    return cmd.IncidentPath(incident_id=incident_id)


async def town_path(town: TownInPath) -> cmd.TownPath:
    return cmd.TownPath(town=town)


async def disclosure_path(
    town: TownInPath,
    period: Annotated[
        str, PathParam(min_length=7, max_length=7, pattern=DISCLOSURE_PERIOD_PATTERN)
    ],
) -> cmd.DisclosurePath:
    return cmd.DisclosurePath(town=town, period=period)


async def follow_up_path(
    list_event_id: uuid.UUID, row: Annotated[int, PathParam(ge=0, lt=MAX_HARDSHIP_ROWS)]
) -> cmd.FollowUpPath:
    return cmd.FollowUpPath(list_event_id=list_event_id, row=row)


PATH_PARAMETERS: Mapping[type[BaseModel], Callable[..., Awaitable[BaseModel]]] = {
    cmd.NoPath: no_path,
    cmd.CasePath: case_path,
    cmd.IncidentPath: incident_path,
    cmd.TownPath: town_path,
    cmd.DisclosurePath: disclosure_path,
    cmd.FollowUpPath: follow_up_path,
}


# ---------------------------------------------------------------- the routes


def respond(submitted: Submitted) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if submitted.replayed else None
    return JSONResponse(submitted.answer.body, status_code=submitted.answer.status, headers=headers)


def add_command_route(
    router: APIRouter,
    kind: str,
    *,
    tags: Sequence[str],
    summary: str | None = None,
    doc: str | None = None,
    operation_id: str | None = None,
) -> None:
    """POST the command `kind` of the table at its route: 202 once Kafka holds it. `doc`
    is the endpoint's docstring (its description in the API reference); without
    `operation_id` the reference names it after `kind`, route and method."""
    spec = cmd.SPECS[kind]

    async def endpoint(
        path: Annotated[BaseModel, Depends(PATH_PARAMETERS[spec.path_model])],
        body: BaseModel,
        principal: Annotated[Principal, Depends(require(spec.action))],
        request: Request,
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        command = cmd.Write(spec, path, body)
        # the service from the request: one dependency less for FastAPI to resolve
        return respond(await intake_of(request).submit(command, principal, idempotency_key))

    # FastAPI reads the body's model from its annotation: the command's, known here
    endpoint.__annotations__["body"] = spec.model
    endpoint.__doc__ = doc
    router.add_api_route(
        spec.route,
        endpoint,
        methods=["POST"],
        name=kind,
        status_code=202,
        response_model=Accepted,
        responses=WRITE_RESPONSES,
        tags=list(tags),
        summary=summary,
        operation_id=operation_id,
    )
