"""What the routes take through FastAPI's `Depends`: the service, the caller (a bearer token,
then the role's right to the action, both before the body is read: 401 and 403 come
before 422), and the path and header parameters the routes share."""

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Annotated, cast

from fastapi import Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.intake.contract import Refused
from services.intake.domain import requests as rq
from services.intake.domain.authz import Action, check, may
from services.intake.domain.commands import CASE_ID_PATTERN
from services.intake.domain.idempotency import KEY_PATTERN, MAX_KEY_CHARS
from services.intake.domain.tokens import Principal
from services.intake.service import Intake


# async: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per
# request for work that never blocks
def intake_of(request: Request) -> Intake:
    return cast(Intake, request.app.state.intake)


async def service(request: Request) -> Intake:
    return intake_of(request)


IntakeDep = Annotated[Intake, Depends(service)]

bearer_scheme = HTTPBearer(auto_error=False, description="an intake token")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _principal(credentials: HTTPAuthorizationCredentials | None, request: Request) -> Principal:
    if credentials is None:
        raise Refused(401, "missing bearer token (Authorization: Bearer <token>)")
    # the request, not IntakeDep: every call pays for each dependency FastAPI resolves
    principal = intake_of(request).tokens.table().lookup(credentials.credentials)
    if principal is None:
        raise Refused(401, "unknown token")
    return principal


async def authenticated(credentials: Credentials, request: Request) -> Principal:
    return _principal(credentials, request)


Authenticated = Annotated[Principal, Depends(authenticated)]


@cache
def require(action: Action) -> Callable[..., Awaitable[Principal]]:
    """The dependency that lets through a caller whose role may do `action` (403 else);
    where it may do it (its town) is the command's own check (service.submit). The token
    is read here, not through `authenticated`: FastAPI's resolution of each dependency
    costs a request more than the check itself (docs/benchmarks.md)."""

    async def allowed(credentials: Credentials, request: Request) -> Principal:
        principal = _principal(credentials, request)
        check(may(principal, action))
        return principal

    return allowed


IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=MAX_KEY_CHARS,
        pattern=KEY_PATTERN,
        description="a retry with the same key returns the first answer, produces nothing",
    ),
]
CaseIdInPath = Annotated[str, PathParam(min_length=1, max_length=64, pattern=CASE_ID_PATTERN)]
TownInPath = Annotated[str, PathParam(min_length=6, max_length=12, pattern=rq.TOWN_PATTERN)]
