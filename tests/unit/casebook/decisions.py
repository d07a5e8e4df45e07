"""Decisions as the processor writes them, made directly from the schemas, for the
casebook's stories: two towns, the same case id in each."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import decisions as d
from schemas.envelope import Actor, Role, derived_id
from schemas.intake import ReliefCategory, Urgency

QIFENG = "370321101"
TIANZHUANG = "370321102"
T0 = datetime(2026, 7, 20, 0, 0, tzinfo=UTC)
PROCESSOR = Actor(role=Role.SYSTEM, org="relief-emergency")
DAY = timedelta(days=1)

_ids = itertools.count(1)


def command_id() -> uuid.UUID:
    """The event id of a command intake accepted (a decision's causation)."""
    return uuid.UUID(int=next(_ids))


def _env(town: str, case: str, at: datetime, cause: uuid.UUID, kind: str) -> dict[str, Any]:
    return {
        "event_id": derived_id(cause, kind),
        "occurred_at": at,
        "recorded_at": at,
        "town": town,
        "actor": PROCESSOR,
        "correlation_id": case,
        "causation_id": cause,
    }


def granted(
    case: str,
    amount_fen: int = 80_000,
    at: datetime = T0,
    town: str = QIFENG,
    cause: uuid.UUID | None = None,
    county: bool = False,
    paperwork: bool = True,
) -> d.AdvanceGranted:
    return d.AdvanceGranted(
        **_env(town, case, at, cause or command_id(), "advance"),
        rule="R5+R4" if county else "R5+P3",
        figures={"requested_fen": amount_fen, "amount_fen": amount_fen},
        amount_fen=amount_fen,
        # due as the processor states it; deliberately not at + 24 h, so a reader that
        # re-derives the deadline is caught
        due_at=at + timedelta(hours=23),
        funded_by=d.FundedBy.COUNTY_FUND if county else d.FundedBy.TOWN_RESERVE,
        paperwork_due_at=at + timedelta(days=4, hours=1) if paperwork else None,
        case_status=d.CaseStatus.ESCALATED if county else d.CaseStatus.ADVANCED,
        opened=d.CaseFacts(
            household_ref="h_" + "0" * 31 + "7",
            category=ReliefCategory.EMERGENCY,
            urgency=Urgency.URGENT,
            incident_id="flood-0720",
            requested_fen=amount_fen + 1,
        ),
    )


def escalated(case: str, amount_fen: int, at: datetime, cause: uuid.UUID) -> d.Decision:
    return d.EscalatedToCountyFund(
        **_env(QIFENG, case, at, cause, "escalated"),
        rule="R4+R5",
        amount_fen=amount_fen,
        due_at=at + timedelta(hours=23),
        available_fen=0,
        case_status=d.CaseStatus.ESCALATED,
    )


def paid(
    case: str,
    amount_fen: int,
    at: datetime,
    town: str = QIFENG,
    cause: uuid.UUID | None = None,
) -> d.ReliefPaid:
    return d.ReliefPaid(
        **_env(town, case, at, cause or command_id(), "paid"),
        rule="R5",
        figures={"paid_fen": amount_fen},
        amount_fen=amount_fen,
        funded_by=d.FundedBy.TOWN_RESERVE,
        case_status=d.CaseStatus.PAID,
    )


def ended(
    case: str,
    kind: d.DeadlineKind,
    due_at: datetime,
    at: datetime,
    met: bool = True,
    town: str = QIFENG,
    cause: uuid.UUID | None = None,
    status: d.CaseStatus = d.CaseStatus.PAID,
) -> d.Decision:
    cls = d.DeadlineMet if met else d.DeadlineBreached
    return cls(
        **_env(town, case, at, cause or command_id(), f"deadline_{kind.value}"),
        rule="R5" if kind is d.DeadlineKind.RELIEF_24H else "P1",
        deadline=kind,
        due_at=due_at,
        case_status=status,
    )


def warned(case: str, kind: d.DeadlineKind, due_at: datetime, at: datetime) -> d.DeadlineWarned:
    return d.DeadlineWarned(
        **_env(QIFENG, case, at, command_id(), f"warned_{kind.value}"),
        rule="R5",
        deadline=kind,
        due_at=due_at,
        case_status=d.CaseStatus.ADVANCED,
    )


def voided(case: str, amount_fen: int, at: datetime, cause: uuid.UUID | None = None) -> d.Decision:
    return d.AdvanceVoided(
        **_env(QIFENG, case, at, cause or command_id(), "voided"),
        rule="R5",
        amount_fen=amount_fen,
        reasons="家属已获保险赔付",
        case_status=d.CaseStatus.CANCELLED,
    )


def refused(case: str, at: datetime, cause: uuid.UUID | None = None) -> d.AdvanceRefused:
    return d.AdvanceRefused(
        **_env(QIFENG, case, at, cause or command_id(), "refused"),
        rule="P6",
        figures={"previous_grant_on": "2026-07-20"},
        reason=d.RefusalReason.DUPLICATE,
        case_status=d.CaseStatus.REFUSED,
    )


def reserve_low(case: str, at: datetime, cause: uuid.UUID) -> d.ReserveLow:
    return d.ReserveLow(
        **_env(QIFENG, case, at, cause, "reserve_low"),
        rule="R4+P11",
        available_fen=500_000,
        threshold_fen=1_000_000,
    )
