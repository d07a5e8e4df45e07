"""The write routes made from the command table (domain/commands.py): one per command,
each taking its path parameters, its body and a caller whose role may give it, and
submitting one `Write` (service.submit). The audience routers (bureau.py, towns.py, ...)
say which commands are theirs and how the API reference shows them."""

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from schemas.intake import DISCLOSURE_PERIOD_PATTERN, MAX_HARDSHIP_ROWS
from services.intake.contract import WRITE_RESPONSES, Accepted
from services.intake.deps import (
    CaseIdInPath,
    IdemKey,
    TownInPath,
    bearer_scheme,
    intake_of,
    require,
)
from services.intake.domain import commands as cmd
from services.intake.domain.idempotency import KEY_PATTERN, MAX_KEY_CHARS
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


_IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=MAX_KEY_CHARS, pattern=KEY_PATTERN)]
)


def _invalid_at(where: tuple[str | int, ...], exc: ValidationError) -> RequestValidationError:
    """pydantic's errors, each placed where FastAPI would place it ("body", "path", ...)."""
    return RequestValidationError(
        [{**e, "loc": (*where, *e["loc"])} for e in exc.errors(include_url=False)]
    )


class CommandRoute(APIRoute):
    """A command's route as the API reference shows it (the endpoint's signature: its path
    parameters, its body, its caller, its Idempotency-Key), handled without FastAPI's
    dependency resolution, which cost more than the rest of the request put together
    (docs/benchmarks.md, "Where intake's time went"). The checks are the same and come in
    the same order: the token (401), the role's right to the action (403), then the path,
    the key and the body (422, each error placed as FastAPI places it)."""

    spec: ClassVar[cmd.Spec]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        spec = self.spec
        allowed = require(spec.action)

        async def handle(request: Request) -> Response:
            # the role check the other routes take as a dependency, called directly
            principal = await allowed(await bearer_scheme(request), request)
            try:
                # path parameters are text ("0" for a row): read as strings are read
                path = spec.path_model.model_validate_strings(request.path_params)
            except ValidationError as exc:
                raise _invalid_at(("path",), exc) from None
            key = request.headers.get("idempotency-key")
            if key is not None:
                try:
                    _IDEMPOTENCY_KEY.validate_python(key)
                except ValidationError as exc:
                    raise _invalid_at(("header", "Idempotency-Key"), exc) from None
            body = await _json_body(request)
            try:
                model = spec.model.model_validate_json(body)
            except ValidationError as exc:
                raise _invalid_at(("body",), exc) from None
            command = cmd.Write(spec, path, model)
            return respond(await intake_of(request).submit(command, principal, key))

        return handle


async def _json_body(request: Request) -> bytes:
    """The body, which must be JSON (as FastAPI takes a model's body: a JSON media type)."""
    body = await request.body()
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": f"expected a JSON body (Content-Type: application/json), "
                    f"not {media or 'none'}",
                    "input": None,
                }
            ]
        )
    return body


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
        idempotency_key: IdemKey = None,
    ) -> JSONResponse:
        raise AssertionError("CommandRoute handles it")  # the signature is the reference's

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
        route_class_override=type(f"{kind}_route", (CommandRoute,), {"spec": spec}),
    )
