"""What every lifecycle module of the rules shares: the rules' inputs, the two kinds of
failure, time, and the envelope of what the processor decides."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from schemas.claims import ClaimReleased
from schemas.decisions import (
    CaseFacts,
    DeadlineBreached,
    DeadlineKind,
    DeadlineMet,
    DeadlineWarned,
    Decision,
)
from schemas.envelope import Actor, Record, Role, derived_id, to_cst
from schemas.intake import ClaimVerdict, ReliefRequested
from schemas.policy import Policy
from schemas.towns import County
from services.emergency.domain.book import Book
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.state import Case, CaseStatus

PROCESSOR = Actor(role=Role.SYSTEM, org="relief-emergency")
# P5: a transitional-relief month, for the daily amount.
DAYS_PER_MONTH = 30


class RuleBroken(RuntimeError):
    """A state the rules never produce: a bug, never swallowed."""


class Refuse(Exception):
    """A record that cannot apply to the state: a dead letter with this reason, and the
    state exactly as it was before the record."""


@dataclasses.dataclass(frozen=True)
class Rules:
    """What the rules read besides state and record: the policy figures and the towns."""

    policy: Policy
    county: County


def at_of(record: Record) -> datetime:
    """The record's time: the broker's stamp; occurred_at only before it is stamped."""
    return record.recorded_at or record.occurred_at


def case_date(at: datetime) -> date:
    """The date a case is judged on (P4: the figure in force on the case's date), in CST."""
    return to_cst(at).date()


def envelope(cause: Record, kind: str, *parts: str, **overrides: Any) -> dict[str, Any]:
    fields = cause.envelope_for(kind, *parts)
    fields["actor"] = PROCESSOR
    fields.update(overrides)
    return fields


def facts(record: ReliefRequested) -> CaseFacts:
    """What a request registered, for the first decision of its case to carry."""
    return CaseFacts(
        household_ref=record.household_ref,
        public_name=record.public_name,  # P7: carried through as the request masked it
        category=record.category,
        urgency=record.urgency,
        incident_id=record.incident_id,
        requested_fen=record.requested_fen,
        persons=record.persons,
        member_refs=record.member_refs,
        claimed=claimed(record),
    )


def claimed(record: ReliefRequested) -> bool:
    """P6 across towns: the county's claims stage found the request free and marked it."""
    return record.claim is not None and record.claim.verdict is ClaimVerdict.FREE


def claim_released(case: Case, at: datetime, status: CaseStatus) -> list[BaseModel]:
    """P6 across towns: a claimed request ended without relief releases its marks in
    the county's claims stage (claims.py); nothing for a case the stage never marked."""
    if not case.claimed or not case.persons:
        return []
    return [
        ClaimReleased(
            event_id=derived_id(case.request_id, "claim_released"),
            town=case.town,
            case_id=case.case_id,
            request_id=case.request_id,
            cause_key=case.cause_key,
            persons=case.persons,
            released_at=at,
            reason=status.value,
        )
    ]


def open_case(book: Book, case_id: str) -> Case:
    case = book.case(case_id)
    if case is not None:
        return case
    mark = book.finished_case(case_id)
    if mark is not None:
        raise Refuse(f"case {case_id!r} is finished ({mark.status.value})")
    raise Refuse(f"no open case {case_id!r} in town {book.town}")


def store_case(book: Book, case: Case, at: datetime) -> None:
    """Keep an open case, or let a finished one leave the hot state (state.py)."""
    if case.finished(at):
        book.finish_case(case, at)
    else:
        book.put_case(case)


def deadline_decision(
    case: Case,
    deadline: Deadline,
    outcome: DeadlineState,
    cause: Record,
    status: CaseStatus | None = None,
) -> Decision:
    """Warned / met / breached. The id depends on the case and the deadline, not on the
    tick or payment that ended it: a deadline ends once, whatever ends it."""
    kind = DeadlineKind(deadline.kind)
    env = cause.envelope_for("deadline")
    env.update(
        event_id=derived_id(case.request_id, f"deadline_{outcome.value}", kind.value),
        actor=PROCESSOR,
        correlation_id=case.case_id,
        town=case.town,
    )
    rule = "R5" if kind is DeadlineKind.RELIEF_24H else "P1"
    figures: dict[str, int | str] = {
        "due_at": deadline.due_at.isoformat(),
        "judged_at": at_of(cause).isoformat(),
    }
    fields = {
        **env,
        "rule": rule,
        "figures": figures,
        "deadline": kind,
        "due_at": deadline.due_at,
        "case_status": status or case.status,
    }
    if outcome is DeadlineState.WARNED:
        return DeadlineWarned(**fields)
    if outcome is DeadlineState.MET:
        return DeadlineMet(**fields)
    if outcome is DeadlineState.BREACHED:
        return DeadlineBreached(**fields)
    raise RuleBroken(f"no decision for deadline outcome {outcome}")


def schedule_case(book: Book, case: Case) -> None:
    """Put the case's next moment on the wheel (R5, P1, P5; `Case.next_moment`)."""
    moment = case.next_moment()
    if moment is not None:
        book.schedule(moment, f"c:{case.case_id}")
