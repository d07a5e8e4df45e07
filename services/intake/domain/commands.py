"""Every write intake takes, whatever door it comes through (a single endpoint or a bulk
line): its role, body and path models, route, who may give it where, and its records.

`SPECS` is the table of the commands that produce one record, keyed by the single
endpoints' operation ids (docs/openapi.json), so a bulk line names its command as the API
reference does; the routes (services/intake/routes/) are made from the same table. A
`Write` is one of them with its path parameters and body; a `HardshipUpload` is a
department's list (section 二), which produces a record per town and chunk.

Pure: the principal, county and stamp are passed in. A refusal is `rq.RequestInvalid`
(422, what was wrong where) or `authz.Forbidden` (403, why).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Record
from schemas.intake import DISCLOSURE_PERIOD_PATTERN, MAX_HARDSHIP_ROWS
from schemas.towns import County
from services.intake.domain import requests as rq
from services.intake.domain.authz import Action, check, may_for_town, may_register
from services.intake.domain.hardship_csv import ValidatedList, records_for
from services.intake.domain.idempotency import event_id_for
from services.intake.domain.tokens import Principal

CASE_ID_PATTERN = r"^[0-9A-Za-z_.:\-]+$"  # a case's or an incident's id in a path
HARDSHIP_PATH = "/v1/hardship-lists"


class Command(Protocol):
    """A write as intake takes it: the operation and fields its Idempotency-Key is
    fingerprinted on, who may give it where, and the records it produces."""

    @property
    def operation(self) -> str:
        """The method and route, with the path parameters filled in."""
        ...

    def fields(self) -> dict[str, Any]:
        """The body as JSON: what the fingerprint covers."""
        ...

    def authorize(self, principal: Principal, county: County) -> None:
        """The checks that need the body: a town the county has (422), and the principal
        may act there (403). The role alone is checked before the body is read."""
        ...

    def records(self, stamp: rq.Stamp) -> Sequence[Record]:
        """What goes to Kafka; raises RequestInvalid (an ID number that does not check)."""
        ...


def event_id(command: Command, fields: Mapping[str, Any], org: str, key: str) -> uuid.UUID:
    """The event id a key gives a command, the same through every door (so a key used on
    a single endpoint and in a bulk line is one key: domain/idempotency.py)."""
    return event_id_for(command.operation, fields.get("town"), org, key)


# ---------------------------------------------------------------- path parameters

_PathModelConfig = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
CaseIdText = Annotated[str, Field(min_length=1, max_length=64, pattern=CASE_ID_PATTERN)]
TownText = Annotated[str, Field(min_length=6, max_length=12, pattern=rq.TOWN_PATTERN)]
PeriodText = Annotated[str, Field(min_length=7, max_length=7, pattern=DISCLOSURE_PERIOD_PATTERN)]
RowIndex = Annotated[int, Field(ge=0, lt=MAX_HARDSHIP_ROWS, strict=True)]


class NoPath(BaseModel):
    model_config = _PathModelConfig


class CasePath(BaseModel):
    model_config = _PathModelConfig
    case_id: CaseIdText


class IncidentPath(BaseModel):
    model_config = _PathModelConfig
    incident_id: CaseIdText


class TownPath(BaseModel):
    model_config = _PathModelConfig
    town: TownText


class DisclosurePath(BaseModel):
    model_config = _PathModelConfig
    town: TownText
    period: PeriodText


class FollowUpPath(BaseModel):
    model_config = _PathModelConfig
    list_event_id: uuid.UUID
    row: RowIndex


# ---------------------------------------------------------------- who may, where

Authorize = Callable[[Principal, County, Any, Any], None]


def _body_town(action: Action) -> Authorize:
    """The town the body names: one the county has, where the principal may act (a town
    only for itself)."""

    def authorize(principal: Principal, county: County, path: Any, body: Any) -> None:
        del path
        rq.check_town(county, body.town, ("body", "town"))
        check(may_for_town(principal, action, body.town))

    return authorize


def _path_town(action: Action) -> Authorize:
    """The same for the town the path names."""

    def authorize(principal: Principal, county: County, path: Any, body: Any) -> None:
        del body
        rq.check_town(county, path.town, ("path", "town"))
        check(may_for_town(principal, action, path.town))

    return authorize


def _register(principal: Principal, county: County, path: Any, body: Any) -> None:
    del path
    req: rq.RegisterCase = body
    rq.check_town(county, req.town)
    # section 八: a town registers for itself; P6: a second grant by civil affairs only
    check(may_register(principal, req.town, req.urgency, req.second_grant_reason is not None))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Spec:
    """One command kind as its single endpoint takes it."""

    action: Action
    model: type[BaseModel]
    path_model: type[BaseModel]
    route: str  # the single endpoint's path template
    build: Callable[[Any, Any, rq.Stamp], Record]
    authorize: Authorize

    def operation(self, path: BaseModel) -> str:
        # the model's own dict of its fields: `dict(path)` costs a request more
        return "POST " + self.route.format_map(path.__dict__)


def _case(suffix: str, action: Action, model: type[BaseModel], mapper: Any) -> Spec:
    return Spec(
        action,
        model,
        CasePath,
        f"/v1/cases/{{case_id}}/{suffix}",
        lambda p, b, s: mapper(p.case_id, b, s),
        _body_town(action),
    )


def _incident(suffix: str, action: Action, model: type[BaseModel], mapper: Any) -> Spec:
    return Spec(
        action,
        model,
        IncidentPath,
        f"/v1/incidents/{{incident_id}}/{suffix}",
        lambda p, b, s: mapper(p.incident_id, b, s),
        _body_town(action),
    )


def _reserve(suffix: str, action: Action, mapper: Any) -> Spec:
    return Spec(
        action,
        rq.MoveReserve,
        TownPath,
        f"/v1/towns/{{town}}/reserve/{suffix}",
        lambda p, b, s: mapper(p.town, b, s),
        _path_town(action),
    )


SPECS: Mapping[str, Spec] = {
    "report_incident": Spec(
        Action.REPORT_INCIDENT,
        rq.ReportIncident,
        NoPath,
        "/v1/incidents",
        lambda p, b, s: rq.report_incident(b, s),
        _body_town(Action.REPORT_INCIDENT),
    ),
    "update_incident": _incident(
        "updates", Action.UPDATE_INCIDENT, rq.UpdateIncident, rq.update_incident
    ),
    "close_incident": _incident(
        "close", Action.CLOSE_INCIDENT, rq.CloseIncident, rq.close_incident
    ),
    "emergency_period_emergency_period": _incident(
        "emergency-period",
        Action.DECLARE_EMERGENCY_PERIOD,
        rq.DeclareEmergencyPeriod,
        rq.declare_emergency_period,
    ),
    "emergency_period_end": _incident(
        "emergency-period/end",
        Action.DECLARE_EMERGENCY_PERIOD,
        rq.EndEmergencyPeriod,
        rq.end_emergency_period,
    ),
    "register_case": Spec(
        Action.REGISTER_CASE,
        rq.RegisterCase,
        NoPath,
        "/v1/cases",
        lambda p, b, s: rq.register_case(b, s),
        _register,
    ),
    "confirm_payment": _case(
        "payments", Action.CONFIRM_PAYMENT, rq.ConfirmPayment, rq.confirm_payment
    ),
    "complete_paperwork": _case(
        "paperwork", Action.COMPLETE_PAPERWORK, rq.CompletePaperwork, rq.complete_paperwork
    ),
    "cancel_advance": _case(
        "cancellation", Action.CANCEL_ADVANCE, rq.CancelAdvance, rq.cancel_advance
    ),
    "review_case": _case("reviews", Action.REVIEW_CASE, rq.ReviewCase, rq.review_case),
    "decide_deliberation": _case(
        "deliberations", Action.DECIDE_DELIBERATION, rq.DecideDeliberation, rq.decide_deliberation
    ),
    "replenish_reserve": _reserve("replenishments", Action.REPLENISH_RESERVE, rq.replenish_reserve),
    "fund_reserve": _reserve("fundings", Action.FUND_RESERVE, rq.fund_reserve),
    "publish_disclosure": Spec(
        Action.PUBLISH_DISCLOSURE,
        rq.PublishDisclosure,
        DisclosurePath,
        "/v1/towns/{town}/disclosures/{period}/published",
        lambda p, b, s: rq.publish_disclosure(p.town, p.period, b, s),
        _path_town(Action.PUBLISH_DISCLOSURE),
    ),
    "follow_up_hardship": Spec(
        Action.FOLLOW_UP_HARDSHIP,
        rq.FollowUpHardship,
        FollowUpPath,
        HARDSHIP_PATH + "/{list_event_id}/rows/{row}/follow-ups",
        lambda p, b, s: rq.follow_up_hardship(p.list_event_id, p.row, b, s),
        _body_town(Action.FOLLOW_UP_HARDSHIP),
    ),
}
KINDS = tuple(SPECS)


# ---------------------------------------------------------------- the commands


@dataclass(frozen=True)
class Write:
    """A command of the table with its path parameters and body."""

    spec: Spec
    path: BaseModel
    body: BaseModel

    @cached_property  # the fingerprint and the event id both read it
    def operation(self) -> str:
        return self.spec.operation(self.path)

    def fields(self) -> dict[str, Any]:
        return self.body.model_dump(mode="json")

    def authorize(self, principal: Principal, county: County) -> None:
        self.spec.authorize(principal, county, self.path, self.body)

    def records(self, stamp: rq.Stamp) -> Sequence[Record]:
        return [self.spec.build(self.path, self.body, stamp)]


@dataclass(frozen=True)
class HardshipUpload:
    """A department's list of suspected hardship cases (section 二), its rows already
    validated one by one; the fingerprint covers the file as sent."""

    validated: ValidatedList
    csv_text: str
    department: str  # the pushing organisation, named on every record
    operation: str = f"POST {HARDSHIP_PATH}"

    def fields(self) -> dict[str, Any]:
        return {"csv": self.csv_text}

    def authorize(self, principal: Principal, county: County) -> None:
        # the role is all there is to check: a department pushes rows of any town, and
        # each row's town was checked with the row
        del principal, county

    def records(self, stamp: rq.Stamp) -> Sequence[Record]:
        # one record per town and chunk, ids derived from the upload's event id
        return records_for(
            self.validated, stamp.event_id, self.department, stamp.actor, stamp.now.isoformat()
        )
