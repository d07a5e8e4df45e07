"""Reads, answered from the casebook and the ledger over HTTP once the caller's token is
checked: a case, a town's cases, deadlines and reserve, a submission, and who a token is.
A town's token reads only its own town."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from schemas.decisions import CaseStatus
from services.intake.contract import READ_RESPONSES, Me, Refused
from services.intake.deps import Authenticated, CaseIdInPath, IntakeDep, TownInPath, require
from services.intake.domain import requests as rq
from services.intake.domain.authz import Action, check, may_list_cases, submission_scope
from services.intake.domain.commands import CASE_ID_PATTERN
from services.intake.domain.reads import (
    MAX_CASE_LIST,
    CaseList,
    CaseView,
    DeadlineView,
    ReadScope,
    ReserveView,
    SubmissionView,
)
from services.intake.domain.tokens import Principal

router = APIRouter(tags=["reads"], responses=READ_RESPONSES)
Reader = Annotated[Principal, Depends(require(Action.READ))]


@router.get("/v1/towns/{town}/cases/{case_id}", response_model=CaseView)
async def read_case(
    town: TownInPath, case_id: CaseIdInPath, principal: Reader, intake: IntakeDep
) -> CaseView:
    """A case of a town: where it stands, its money, its deadlines and every decision
    with its rule, figures and reasons, as the processor decided them (town: own town
    only). A case id is unique only within its town."""
    intake.place(principal, Action.READ, town, ("path", "town"))
    view = await intake.reads.case(town, case_id)
    if view is None:
        raise Refused(404, f"town {town} has no case {case_id} (yet)")
    return view


@router.get("/v1/cases", response_model=CaseList)
async def list_cases(
    principal: Authenticated,
    intake: IntakeDep,
    town: Annotated[str | None, Query(min_length=6, max_length=12, pattern=rq.TOWN_PATTERN)] = None,
    status: Annotated[list[CaseStatus] | None, Query()] = None,
    incident_id: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=CASE_ID_PATTERN)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CASE_LIST)] = 100,
) -> CaseList:
    """Cases by town, status (repeatable) and incident, the most recently decided
    first, each with its 24-hour deadline and its latest decision's rule and figures.
    A town lists its own town's; the emergency bureau the cases of an incident; civil
    affairs, finance and auditors any town's."""
    if town is not None:
        rq.check_town(intake.county, town, ("query", "town"))
    check(may_list_cases(principal, town, incident_id))
    statuses = [s.value for s in dict.fromkeys(status or [])]
    return await intake.reads.cases(town, statuses, incident_id, limit)


@router.get("/v1/me", response_model=Me)
async def me(principal: Authenticated) -> Me:
    """Who this token belongs to: role, organisation and, for a town, its town."""
    return Me(role=principal.role.value, org=principal.org, town=principal.town)


@router.get("/v1/submissions/{event_id}", response_model=SubmissionView)
async def read_submission(
    event_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require(Action.READ_SUBMISSION))],
    intake: IntakeDep,
) -> SubmissionView:
    """What became of a record this API accepted (the `event_id` of its 202):
    `pending` (not decided yet, or not known yet), `decided` with the decisions it
    caused, or `rejected` with the reason. A town's token sees its own town's, the
    bureau's and a department's their own organisation's; anything else reads as
    pending."""
    town, org = submission_scope(principal)
    return await intake.reads.submission(event_id, ReadScope(town=town, org=org))


@router.get("/v1/towns/{town}/reserve", response_model=ReserveView)
async def read_reserve(town: TownInPath, principal: Reader, intake: IntakeDep) -> ReserveView:
    """A town's reserve: size, available, held, last movements (R4)."""
    intake.place(principal, Action.READ, town, ("path", "town"))
    return await intake.reads.reserve(town, intake.county.town(town).reserve_fen)


@router.get("/v1/towns/{town}/deadlines", response_model=list[DeadlineView])
async def read_deadlines(
    town: TownInPath, principal: Reader, intake: IntakeDep
) -> list[DeadlineView]:
    """Open deadlines of a town's cases (R5: 24 h, P1: 5 days), due as the processor's
    grants state them."""
    intake.place(principal, Action.READ, town, ("path", "town"))
    return await intake.reads.deadlines(town)
