"""The casebook's fold: the processor's decisions, in log order, into rows — pure.

Every figure a row holds is one a decision states; nothing here applies a rule again:

- a case's `status` is the `case_status` of its latest decision that names one (a
  decision about a town, such as ReserveLow, names none and leaves the case as it was);
- what the request registered (category, urgency, amount requested, incident) is what
  the case's first decision carries (`opened`);
- amounts: what was granted (AdvanceGranted, ReliefApproved), paid (ReliefPaid,
  TransitionalInstalmentPaid) and claimed back (RecoveryClaimed), and who funds it;
- deadlines are due when the decisions say: AdvanceGranted.due_at for relief within
  24 hours (R5), AdvanceGranted.paperwork_due_at for the paperwork (P1; a grant written
  before that field existed opens no paperwork deadline here). DeadlineWarned marks one
  warned, DeadlineMet or DeadlineBreached ends it, AdvanceVoided voids what is still open.

Cases are keyed by (town, case id): a case id is unique only within its town.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum

from schemas.decisions import (
    AdvanceGranted,
    AdvanceVoided,
    DeadlineBreached,
    DeadlineKind,
    DeadlineMet,
    DeadlineWarned,
    Decision,
    EscalatedToCountyFund,
    RecoveryClaimed,
    ReliefApproved,
    ReliefPaid,
    TransitionalInstalmentPaid,
)
from services.casebook.domain.disclosure import period_of

CaseKey = tuple[str, str]  # (town, case id)
DeadlineKey = tuple[str, str, str]  # (town, case id, deadline kind)

# The status of a case whose decisions never named one (records written before
# `case_status` existed).
UNKNOWN_STATUS = "unknown"


class DeadlineState(StrEnum):
    OPEN = "open"
    WARNED = "warned"
    MET = "met"
    BREACHED = "breached"
    VOID = "void"


OPEN_STATES = (DeadlineState.OPEN, DeadlineState.WARNED)


@dataclasses.dataclass(frozen=True, slots=True)
class CaseRow:
    town: str
    case_id: str
    status: str
    opened_at: datetime  # the first decision's occurred_at
    updated_at: datetime  # the latest decision's occurred_at
    decisions: int  # how many decisions the case has
    last_type: str
    last_rule: str
    funded_by: str | None = None
    category: str | None = None
    urgency: str | None = None
    requested_fen: int | None = None
    incident_id: str | None = None
    granted_fen: int = 0
    paid_fen: int = 0
    recovery_fen: int = 0  # claimed back, fines included (P8)
    granted_at: datetime | None = None
    # P7: what the public list shows of an approved expenditure-type case
    public_name: str | None = None  # masked at intake's door ("张＊＊")
    approved_at: datetime | None = None  # the first approval
    approved_period: str | None = None  # its month in CST: the list it is on
    approver_level: str | None = None
    approved_fen: int | None = None

    @property
    def key(self) -> CaseKey:
        return (self.town, self.case_id)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadlineRow:
    town: str
    case_id: str
    kind: str  # DeadlineKind: relief_24h (R5) or paperwork_5d (P1)
    due_at: datetime
    state: DeadlineState
    opened_by: str  # the event id of the decision that set it
    closed_by: str | None = None  # the decision that ended it

    @property
    def key(self) -> DeadlineKey:
        return (self.town, self.case_id, self.kind)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclasses.dataclass(frozen=True)
class Folded:
    """The rows a run of decisions changed (each the latest version), to be written."""

    cases: dict[CaseKey, CaseRow]
    deadlines: dict[DeadlineKey, DeadlineRow]


def fold(
    cases: Mapping[CaseKey, CaseRow],
    deadlines: Mapping[DeadlineKey, DeadlineRow],
    decisions: Iterable[Decision],
) -> Folded:
    """Apply `decisions` (new ones only, in log order) to the current rows of the cases
    they touch; returns the rows that changed."""
    case_rows: dict[CaseKey, CaseRow] = dict(cases)
    deadline_rows: dict[DeadlineKey, DeadlineRow] = dict(deadlines)
    changed_cases: set[CaseKey] = set()
    changed_deadlines: set[DeadlineKey] = set()
    for decision in decisions:
        key = (decision.town, decision.correlation_id)
        row = _case(case_rows.get(key), decision)
        if row is not None:
            case_rows[key] = row
            changed_cases.add(key)
        for deadline in _deadlines(deadline_rows, decision):
            deadline_rows[deadline.key] = deadline
            changed_deadlines.add(deadline.key)
    return Folded(
        cases={k: case_rows[k] for k in changed_cases},
        deadlines={k: deadline_rows[k] for k in changed_deadlines},
    )


def _case(row: CaseRow | None, d: Decision) -> CaseRow | None:
    """The case after `d`; None when `d` is about the town, not a case (no case_status),
    and the case has no row yet."""
    status = d.case_status.value if d.case_status is not None else None
    if row is None:
        if status is None:
            return None
        row = CaseRow(
            town=d.town,
            case_id=d.correlation_id,
            status=status,
            opened_at=d.occurred_at,
            updated_at=d.occurred_at,
            decisions=0,
            last_type=d.type,
            last_rule=d.rule,
        )
    changes: dict[str, object] = {
        "status": status or row.status,
        "updated_at": max(row.updated_at, d.occurred_at),
        "decisions": row.decisions + 1,
        "last_type": d.type,
        "last_rule": d.rule,
    }
    if d.opened is not None:
        changes.update(
            category=d.opened.category.value,
            urgency=d.opened.urgency.value,
            requested_fen=d.opened.requested_fen,
            incident_id=d.opened.incident_id,
            public_name=d.opened.public_name,
        )
    match d:
        case AdvanceGranted():
            changes.update(
                granted_fen=d.amount_fen,
                funded_by=d.funded_by.value,
                granted_at=d.occurred_at,
            )
        case EscalatedToCountyFund():
            changes.update(funded_by="county_fund")
        case ReliefApproved():
            # P7: the first approval dates the case on the disclosure list
            first = row.approved_at or d.occurred_at
            changes.update(
                granted_fen=d.amount_fen,
                approved_at=first,
                approved_period=period_of(first),
                approver_level=d.approver_level.value,
                approved_fen=d.amount_fen,
            )
        case ReliefPaid():
            changes.update(paid_fen=row.paid_fen + d.amount_fen, funded_by=d.funded_by.value)
        case TransitionalInstalmentPaid():
            changes.update(paid_fen=row.paid_fen + d.amount_fen)
        case RecoveryClaimed():
            changes.update(recovery_fen=row.recovery_fen + d.amount_fen + d.fine_fen)
        case _:
            pass
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def _deadlines(rows: Mapping[DeadlineKey, DeadlineRow], d: Decision) -> list[DeadlineRow]:
    """The deadline rows `d` sets or moves."""
    town, case_id, event = d.town, d.correlation_id, str(d.event_id)
    match d:
        case AdvanceGranted():
            due = [(DeadlineKind.RELIEF_24H, d.due_at)]
            if d.paperwork_due_at is not None:
                due.append((DeadlineKind.PAPERWORK_5D, d.paperwork_due_at))
            return [
                DeadlineRow(town, case_id, kind.value, at, DeadlineState.OPEN, event)
                for kind, at in due
            ]
        case DeadlineWarned():
            row = rows.get((town, case_id, d.deadline.value))
            if row is not None and row.state is DeadlineState.OPEN:
                return [dataclasses.replace(row, state=DeadlineState.WARNED)]
            return []
        case DeadlineMet() | DeadlineBreached():
            state = DeadlineState.MET if isinstance(d, DeadlineMet) else DeadlineState.BREACHED
            row = rows.get((town, case_id, d.deadline.value))
            if row is None:
                # the grant was never seen (a topic that starts later): the end is stated
                # by the decision, with its due time
                row = DeadlineRow(town, case_id, d.deadline.value, d.due_at, state, event)
            if not row.is_open and row.closed_by is not None:
                return []  # ended once already: the first end stands
            return [dataclasses.replace(row, state=state, closed_by=event)]
        case AdvanceVoided():
            return [
                dataclasses.replace(row, state=DeadlineState.VOID, closed_by=event)
                for kind in DeadlineKind
                if (row := rows.get((town, case_id, kind.value))) is not None and row.is_open
            ]
        case _:
            return []
