"""The emergency-aid rules: `handle(state, record) -> (state, outputs)`, pure.

For each intake record, `handle` decides what follows (decisions, balanced postings, or
a dead letter when a record cannot apply) and returns the town's new state. It reads no
clock and does no I/O: time is the broker's stamp on the record (`recorded_at`), and
every output id is derived from its cause, so the same record against the same state
always gives the same outputs, byte for byte (DESIGN "rules are pure", "effectively once").

Two kinds of failure (STYLE): an expected business outcome — a duplicate, a reserve too
small, an amount above the cap — is a decision with its rule and figures; a broken
invariant raises (`reserve.ReserveInvariantBroken`, `RuleBroken`) and stops the worker.

Rules, by where they are applied:
  R5  relief first within 24 h ............ `_request_urgent`, `_on_tick`, `_payment`
  R4  the 50,000-yuan town reserve ........ `_request_urgent` (hold or escalate), `_settle`
  P3  advance cap for light cases ......... `_request_urgent`
  P6  same household, same cause .......... `_request`
  R3/R6 caps, deliberation ................ `_request_expenditure`, `_deliberation`
  P2  town approval authority ............. `_request_expenditure`
  P1  paperwork within 5 days ............. `_advance`, `_on_tick`, `_paperwork`
  P5  transitional living relief .......... `_request_transitional`, `_on_tick`
  P8  recovery and fines .................. `_review`
  P11 settlement replenishes the reserve .. `_review`, `_replenish`
  R7  vagrants referred to origin ......... `_request`
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schemas import topics
from schemas.decisions import (
    AdvanceGranted,
    AdvanceRefused,
    AdvanceVoided,
    ApprovalRequired,
    ApproverLevel,
    DeadlineBreached,
    DeadlineKind,
    DeadlineMet,
    DeadlineWarned,
    Decision,
    DeliberationRequired,
    EscalatedToCountyFund,
    FundedBy,
    RecoveryClaimed,
    ReferredToOriginCounty,
    RefusalReason,
    ReliefApproved,
    ReliefRejected,
    ReplenishmentRefused,
    ReserveLow,
    TransitionalInstalmentPaid,
)
from schemas.envelope import Actor, Record, Role, derived_id, to_cst
from schemas.intake import (
    AdvanceCancelled,
    CaseReviewed,
    ClockTick,
    DeliberationDecided,
    HardshipListPushed,
    IncidentClosed,
    IncidentReported,
    IncidentUpdated,
    PaperworkCompleted,
    PaymentConfirmed,
    ReliefCategory,
    ReliefRequested,
    ReserveFunded,
    ReserveReplenished,
    ReviewOutcome,
    TransitionalReliefExtended,
    Urgency,
)
from schemas.policy import Policy
from schemas.postings import COUNTY_SCOPE, AccountKind, Posting, PostingKind, account, transfer
from schemas.registry import encode
from schemas.topics import RejectedRecord
from schemas.towns import County, UnknownTown
from services.emergency.domain.caps import CapOutcome, judge_expenditure
from services.emergency.domain.deadlines import Deadline, DeadlineState
from services.emergency.domain.state import Case, CaseStatus, TownState

# P6: "one grant per cause per year in some counties": how long a grant blocks another.
DUPLICATE_WINDOW = timedelta(days=365)
# P5: a transitional-relief month, for the daily amount.
DAYS_PER_MONTH = 30
MAX_CASES_PER_TOWN = 100_000  # a limit on everything (STYLE); a bug long before a real count
MAX_INCIDENTS_PER_TOWN = 10_000
PROCESSOR = Actor(role=Role.SYSTEM, org="relief-emergency")


class RuleBroken(RuntimeError):
    """A state the rules never produce: a bug, never swallowed."""


@dataclasses.dataclass(frozen=True)
class Rules:
    """What the rules read besides state and record: the policy figures and the towns."""

    policy: Policy
    county: County


@dataclasses.dataclass(frozen=True)
class Output:
    """One record to emit, ready for Kafka: its topic, key (the town) and bytes."""

    topic: str
    key: str
    value: bytes
    record: BaseModel


def to_output(record: BaseModel) -> Output:
    if isinstance(record, Posting):
        return Output(topics.POSTINGS, record.town, encode(record), record)
    if isinstance(record, RejectedRecord):
        return Output(topics.REJECTED, record.source_topic, encode(record), record)
    if isinstance(record, Record):
        return Output(topics.DECISIONS, record.town, encode(record), record)
    raise RuleBroken(f"no topic for {type(record).__name__}")


def rejected_record(
    topic: str, partition: int, offset: int, reason: str, raw: bytes | None
) -> Output:
    return to_output(RejectedRecord.of(topic, partition, offset, reason, raw))


class _Refuse(Exception):
    """A record that cannot apply to the state: becomes a dead letter with this reason."""


# ======================================================================= entry point


def handle(
    state: TownState | None,
    record: Record,
    rules: Rules,
    *,
    offset: int,
    partition: int = -1,
    raw: bytes | None = None,
) -> tuple[TownState | None, list[Output]]:
    """Decide one intake record for one town. Returns the new state (None: the town has
    no state and gets none) and the outputs, in order."""
    if isinstance(record, ClockTick):
        if state is None:
            return None, []
        new_state, judged = _on_tick(state, record, rules)
        return new_state.model_copy(update={"last_offset": offset}), [to_output(r) for r in judged]

    try:
        town = rules.county.town(record.town)
    except UnknownTown:
        reason = f"unknown town {record.town!r}: not in the county's configuration"
        return state, [rejected_record(topics.INTAKE, max(partition, 0), offset, reason, raw)]

    records: list[BaseModel] = []
    if state is None:
        state = TownState.new(town.code, town.reserve_fen)
        records.append(_opening_posting(state, record))
        state = state.model_copy(update={"opened": True})

    at = _at(record)
    state = state.model_copy(update={"clock": max(state.clock or at, at)})
    try:
        state, decided = _decide(state, record, rules)
    except _Refuse as exc:
        # Nothing changes but the applied offset (and the opening, if this was the first).
        reason = f"{record.type} for case {record.correlation_id!r}: {exc}"
        decided = [RejectedRecord.of(topics.INTAKE, max(partition, 0), offset, reason, raw)]
    records.extend(decided)
    state = state.model_copy(update={"last_offset": offset})
    return state, [to_output(r) for r in records]


def _decide(
    state: TownState, record: Record, rules: Rules
) -> tuple[TownState, Sequence[BaseModel]]:
    match record:
        case ReliefRequested():
            return _request(state, record, rules)
        case PaymentConfirmed():
            return _payment(state, record, rules)
        case AdvanceCancelled():
            return _cancel(state, record)
        case PaperworkCompleted():
            return _paperwork(state, record)
        case CaseReviewed():
            return _review(state, record, rules)
        case DeliberationDecided():
            return _deliberation(state, record, rules)
        case TransitionalReliefExtended():
            return _extend_transitional(state, record, rules)
        case ReserveFunded() | ReserveReplenished():
            return _replenish(state, record, rules)
        case IncidentReported():
            return _incident_reported(state, record)
        case IncidentUpdated():
            if record.incident_id not in state.incidents:
                raise _Refuse(f"unknown incident {record.incident_id!r} in this town")
            return state, []
        case IncidentClosed():
            if record.incident_id not in state.incidents:
                raise _Refuse(f"unknown incident {record.incident_id!r} in this town")
            return _with_incident(state, record.incident_id, "closed"), []
        case HardshipListPushed():
            # Section 二: lists for civil affairs to follow up; no money moves here.
            return state, []
        case _:
            raise _Refuse(f"the processor does not take {record.type} records")


# ======================================================================= helpers


def _at(record: Record) -> datetime:
    """The record's time: the broker's stamp; occurred_at only before it is stamped."""
    return record.recorded_at or record.occurred_at


def _case_date(at: datetime) -> date:
    """The date a case is judged on (P4: the figure in force on the case's date), in CST."""
    return to_cst(at).date()


def _envelope(cause: Record, kind: str, *parts: str, **overrides: Any) -> dict[str, Any]:
    fields = cause.envelope_for(kind, *parts)
    fields["actor"] = PROCESSOR
    fields.update(overrides)
    return fields


def _posting(
    cause: Record,
    kind: PostingKind,
    lines: Sequence[Any],
    memo: str,
    *,
    part: str = "",
    **overrides: Any,
) -> Posting:
    env = _envelope(cause, f"posting:{kind.value}", part, **overrides)
    return Posting(
        **env, posting_id=env["event_id"], kind=kind.value, memo=memo, lines=tuple(lines)
    )


def _reserve(town: str) -> str:
    return account(AccountKind.TOWN_RESERVE, town)


def _held(town: str) -> str:
    return account(AccountKind.TOWN_RESERVE_HELD, town)


def _county(kind: AccountKind) -> str:
    return account(kind, COUNTY_SCOPE)


def _opening_posting(state: TownState, cause: Record) -> Posting:
    """R4: the first record of a town opens its reserve at its configured size. The id
    depends only on the town, so every replay opens it once."""
    opening_id = derived_id(f"town-opening:{state.town}", "reserve_funded")
    return Posting(
        event_id=opening_id,
        posting_id=opening_id,
        occurred_at=_at(cause),
        town=state.town,
        actor=PROCESSOR,
        correlation_id=f"reserve:{state.town}",
        causation_id=cause.event_id,
        kind=PostingKind.RESERVE_FUNDED.value,
        memo="R4: town relief reserve opened at its configured size",
        lines=transfer(
            _reserve(state.town), _county(AccountKind.COUNTY_FUND), state.reserve.size_fen
        ),
    )


def _case(state: TownState, case_id: str) -> Case:
    case = state.cases.get(case_id)
    if case is None:
        raise _Refuse(f"no open case {case_id!r} in town {state.town}")
    return case


def _put(state: TownState, case: Case, cause: Record) -> TownState:
    case = case.model_copy(update={"applied_ids": case.with_applied(str(cause.event_id))})
    return state.model_copy(update={"cases": {**state.cases, case.case_id: case}})


def _with_incident(state: TownState, incident_id: str, status: str) -> TownState:
    return state.model_copy(update={"incidents": {**state.incidents, incident_id: status}})


def _deadline_decision(
    case: Case, deadline: Deadline, outcome: DeadlineState, cause: Record
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
        "judged_at": _at(cause).isoformat(),
    }
    if outcome is DeadlineState.WARNED:
        return DeadlineWarned(
            **env, rule=rule, figures=figures, deadline=kind, due_at=deadline.due_at
        )
    if outcome is DeadlineState.MET:
        return DeadlineMet(**env, rule=rule, figures=figures, deadline=kind, due_at=deadline.due_at)
    if outcome is DeadlineState.BREACHED:
        return DeadlineBreached(
            **env, rule=rule, figures=figures, deadline=kind, due_at=deadline.due_at
        )
    raise RuleBroken(f"no decision for deadline outcome {outcome}")


# ======================================================================= incidents


def _incident_reported(
    state: TownState, record: IncidentReported
) -> tuple[TownState, list[BaseModel]]:
    if record.incident_id in state.incidents:
        return state, []  # the bureau reported it again: nothing new
    if len(state.incidents) >= MAX_INCIDENTS_PER_TOWN:
        raise _Refuse(f"town already tracks {MAX_INCIDENTS_PER_TOWN} incidents")
    return _with_incident(state, record.incident_id, "open"), []


# ======================================================================= requests


def _request(
    state: TownState, record: ReliefRequested, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    case_id = record.case_id
    existing = state.cases.get(case_id)
    if existing is not None:
        if existing.remembers(str(record.event_id)):
            return state, []  # the same request again: already decided
        raise _Refuse("a case with this id is already registered")
    if len(state.cases) >= MAX_CASES_PER_TOWN:
        raise RuleBroken(f"town {state.town} holds {MAX_CASES_PER_TOWN} open cases")

    figures: dict[str, int | str] = {"requested_fen": record.requested_fen}

    def refuse(
        reason: RefusalReason, rule: str, **more: int | str
    ) -> tuple[TownState, list[BaseModel]]:
        decision = AdvanceRefused(
            **_envelope(record, "refused"), rule=rule, figures={**figures, **more}, reason=reason
        )
        return state, [decision]

    # R7: vagrants whose origin is known are placed by that county.
    if record.vagrant and record.origin_county is not None:
        referral = ReferredToOriginCounty(
            **_envelope(record, "referred"),
            rule="R7",
            figures={"origin_county": record.origin_county},
            origin_county=record.origin_county,
        )
        return state, [referral]

    if record.incident_id is not None:
        status = state.incidents.get(record.incident_id)
        if status is None:
            return refuse(RefusalReason.UNKNOWN_INCIDENT, "R1", incident_id=record.incident_id)
        if status == "closed":
            return refuse(RefusalReason.INCIDENT_CLOSED, "R1", incident_id=record.incident_id)

    # P6: same household, same cause -> no second grant within the window.
    at = _at(record)
    cause_key = f"{record.household_ref}|{record.incident_id or record.category.value}"
    previous = state.grants.get(cause_key)
    if previous is not None and _case_date(at) - previous < DUPLICATE_WINDOW:
        return refuse(RefusalReason.DUPLICATE, "P6", previous_grant_on=previous.isoformat())

    if record.category is ReliefCategory.TRANSITIONAL_LIVING:
        return _request_transitional(state, record, rules, cause_key)
    if record.urgency is Urgency.URGENT:
        return _request_urgent(state, record, rules, cause_key)
    return _request_expenditure(state, record, rules, cause_key)


def _new_case(record: ReliefRequested, cause_key: str, status: CaseStatus, **fields: Any) -> Case:
    return Case(
        case_id=record.case_id,
        request_id=str(record.event_id),
        town=record.town,
        household_ref=record.household_ref,
        category=record.category.value,
        urgency=record.urgency.value,
        cause_key=cause_key,
        requested_fen=record.requested_fen,
        status=status,
        received_at=_at(record),
        **fields,
    )


def _granted(state: TownState, cause_key: str, at: datetime) -> TownState:
    grants = {**state.grants, cause_key: _case_date(at)}
    return state.model_copy(update={"grants": grants})


def _request_urgent(
    state: TownState, record: ReliefRequested, rules: Rules, cause_key: str
) -> tuple[TownState, list[BaseModel]]:
    """R5: relief first, within 24 hours: an advance at once, as a hold on the reserve."""
    policy = rules.policy
    at = _at(record)
    # P3: a light urgent case gets up to the advance cap now; anything above it is for the
    # county's review (a top-up), not a reason to make the family wait.
    amount = min(record.requested_fen, policy.advance_cap_fen)
    due_at = at + policy.relief_deadline
    figures: dict[str, int | str] = {
        "requested_fen": record.requested_fen,
        "advance_cap_fen": policy.advance_cap_fen,
        "amount_fen": amount,
        "reserve_available_fen": state.reserve.available_fen,
        "received_at": at.isoformat(),
    }
    relief = Deadline.starting(
        DeadlineKind.RELIEF_24H.value, at, policy.relief_deadline, policy.relief_warning_lead
    )
    paperwork = Deadline.starting(
        DeadlineKind.PAPERWORK_5D.value,
        at,
        policy.paperwork_deadline,
        policy.paperwork_warning_lead,
    )
    # R4: the town's own reserve holds it when it covers it whole; otherwise (DESIGN rule
    # 2) the county fund pays at once, so the 24-hour promise still holds, and finance is
    # alerted.
    on_reserve = state.reserve.covers(amount)
    funded_by = FundedBy.TOWN_RESERVE if on_reserve else FundedBy.COUNTY_FUND
    out: list[BaseModel] = [
        AdvanceGranted(
            **_envelope(record, "advance"),
            rule="R5+P3" if on_reserve else "R5+R4",
            figures=figures,
            amount_fen=amount,
            due_at=due_at,
            funded_by=funded_by,
        )
    ]
    if not on_reserve:
        out.append(
            EscalatedToCountyFund(
                **_envelope(record, "escalated"),
                rule="R4+R5",
                figures=figures,
                amount_fen=amount,
                due_at=due_at,
                available_fen=state.reserve.available_fen,
            )
        )
    state, hold = _hold(
        state,
        record,
        amount,
        funded_by,
        "R5: advance held on the town reserve"
        if on_reserve
        else "R4: advance escalated to the county fund",
    )
    out.append(hold)
    case = _new_case(
        record,
        cause_key,
        CaseStatus.ADVANCED if funded_by is FundedBy.TOWN_RESERVE else CaseStatus.ESCALATED,
        granted_fen=amount,
        funded_by=funded_by.value,
        relief_deadline=relief,
        paperwork_deadline=paperwork,
    )
    state = _granted(_put(state, case, record), cause_key, at)
    state, low = _reserve_low(state, record, rules)
    return state, out + low


def _hold(
    state: TownState, cause: Record, amount: int, funded_by: FundedBy, memo: str
) -> tuple[TownState, Posting]:
    """Hold money for a granted or approved case until the town confirms payment: on the
    town's reserve (R4) or on the county fund."""
    if funded_by is FundedBy.TOWN_RESERVE:
        lines = transfer(_held(state.town), _reserve(state.town), amount)
        posting = _posting(cause, PostingKind.ADVANCE_GRANTED, lines, memo)
        return state.model_copy(update={"reserve": state.reserve.hold(amount)}), posting
    lines = transfer(_county(AccountKind.COUNTY_HELD), _county(AccountKind.COUNTY_FUND), amount)
    posting = _posting(cause, PostingKind.ESCALATED_ADVANCE, lines, memo)
    return state.model_copy(update={"county_held_fen": state.county_held_fen + amount}), posting


def _reserve_low(
    state: TownState, cause: Record, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    threshold = rules.policy.reserve_low_threshold_fen(state.reserve.size_fen)
    if state.reserve.is_low(threshold) and not state.low_alerted and threshold > 0:
        decision = ReserveLow(
            **_envelope(cause, "reserve_low"),
            rule="R4+P11",
            figures={
                "available_fen": state.reserve.available_fen,
                "threshold_fen": threshold,
                "size_fen": state.reserve.size_fen,
            },
            available_fen=state.reserve.available_fen,
            threshold_fen=threshold,
        )
        return state.model_copy(update={"low_alerted": True}), [decision]
    if not state.reserve.is_low(threshold) and state.low_alerted:
        return state.model_copy(update={"low_alerted": False}), []
    return state, []


def _request_expenditure(
    state: TownState, record: ReliefRequested, rules: Rules, cause_key: str
) -> tuple[TownState, list[BaseModel]]:
    """R3: expenditure-type relief within the bands; R6 above them; P2 who approves."""
    policy = rules.policy
    at = _at(record)
    figures: dict[str, int | str] = {"requested_fen": record.requested_fen}
    amount = record.requested_fen
    rule = "P2"
    if record.category in (ReliefCategory.SERIOUS_ILLNESS, ReliefCategory.EDUCATION):
        band = policy.band_for(record.category)
        minimum = policy.urban_minimum_on(_case_date(at))
        judged = judge_expenditure(record.requested_fen, minimum, band.min, band.max)
        figures.update(
            urban_minimum_fen=minimum,
            min_multiple=band.min,
            max_multiple=band.max,
            floor_fen=judged.floor_fen,
            cap_fen=judged.cap_fen,
            case_date=_case_date(at).isoformat(),
        )
        if judged.outcome is CapOutcome.ABOVE_CAP:
            decision = DeliberationRequired(
                **_envelope(record, "deliberation"),
                rule="R3+R6",
                figures=figures,
                requested_fen=record.requested_fen,
                cap_fen=judged.cap_fen,
            )
            case = _new_case(record, cause_key, CaseStatus.DELIBERATION)
            return _put(state, case, record), [decision]
        amount = judged.amount_fen  # below the floor -> the floor (R3)
        rule = "R3+P2"
    figures["amount_fen"] = amount
    figures["town_approval_limit_fen"] = policy.town_approval_limit_fen
    if amount < policy.town_approval_limit_fen:
        # P2: within the town's authority; paid from its reserve when it covers it.
        return _approve(state, record, rules, cause_key, amount, ApproverLevel.TOWN, rule, figures)
    required = ApprovalRequired(
        **_envelope(record, "approval_required"),
        rule=rule,
        figures=figures,
        amount_fen=amount,
        approver_level=ApproverLevel.COUNTY,
    )
    case = _new_case(record, cause_key, CaseStatus.AWAITING_APPROVAL, granted_fen=amount)
    return _put(state, case, record), [required]


def _approve(
    state: TownState,
    cause: Record,
    rules: Rules,
    cause_key: str,
    amount: int,
    level: ApproverLevel,
    rule: str,
    figures: dict[str, int | str],
) -> tuple[TownState, list[BaseModel]]:
    """Approved relief is held until the town confirms payment: from the town's reserve
    when it is the town's approval and the reserve covers it, else from the county fund."""
    out: list[BaseModel] = [
        ReliefApproved(
            **_envelope(cause, "approved"),
            rule=rule,
            figures=figures,
            amount_fen=amount,
            approver_level=level,
        )
    ]
    case = state.cases.get(cause.correlation_id)
    on_reserve = level is ApproverLevel.TOWN and state.reserve.covers(amount)
    funded_by = FundedBy.TOWN_RESERVE if on_reserve else FundedBy.COUNTY_FUND
    state, hold = _hold(
        state,
        cause,
        amount,
        funded_by,
        "P2: relief approved by the town, held on its reserve"
        if on_reserve
        else "relief approved, held on the county fund",
    )
    out.append(hold)
    if case is None:
        if not isinstance(cause, ReliefRequested):
            raise RuleBroken("approval without a case")
        case = _new_case(
            cause, cause_key, CaseStatus.APPROVED, granted_fen=amount, funded_by=funded_by.value
        )
    else:
        case = case.model_copy(
            update={
                "status": CaseStatus.APPROVED,
                "granted_fen": amount,
                "funded_by": funded_by.value,
            }
        )
    state = _granted(_put(state, case, cause), cause_key, case.received_at)
    state, low = _reserve_low(state, cause, rules)
    return state, out + low


def _request_transitional(
    state: TownState, record: ReliefRequested, rules: Rules, cause_key: str
) -> tuple[TownState, list[BaseModel]]:
    """P5: a daily amount per person, paid monthly for 3 months (extendable to 6), from
    the county fund; the first instalment at once, the next ones when ticks reach them."""
    policy = rules.policy
    at = _at(record)
    instalment = policy.transitional_daily_fen_per_person * record.persons * DAYS_PER_MONTH
    months = policy.transitional_period_months
    figures: dict[str, int | str] = {
        "daily_fen_per_person": policy.transitional_daily_fen_per_person,
        "persons": record.persons,
        "days_per_month": DAYS_PER_MONTH,
        "instalment_fen": instalment,
        "months": months,
    }
    approved = ReliefApproved(
        **_envelope(record, "approved"),
        rule="P5",
        figures=figures,
        amount_fen=instalment * months,
        approver_level=ApproverLevel.COUNTY,
    )
    case = _new_case(
        record,
        cause_key,
        CaseStatus.TRANSITIONAL,
        granted_fen=instalment * months,
        funded_by=FundedBy.COUNTY_FUND.value,
        instalment_fen=instalment,
        instalments_total=months,
        instalments_paid=0,
        next_instalment_at=at,
    )
    state = _granted(_put(state, case, record), cause_key, at)
    state, paid = _pay_instalments(state, state.cases[case.case_id], record, at)
    return state, [approved, *paid]


def _pay_instalments(
    state: TownState, case: Case, cause: Record, now: datetime
) -> tuple[TownState, list[BaseModel]]:
    out: list[BaseModel] = []
    while (
        case.next_instalment_at is not None
        and case.next_instalment_at <= now
        and case.instalments_paid < case.instalments_total
    ):
        n = case.instalments_paid + 1
        env = cause.envelope_for("instalment")
        env.update(
            event_id=derived_id(case.request_id, "instalment", str(n)),
            actor=PROCESSOR,
            correlation_id=case.case_id,
            town=case.town,
        )
        out.append(
            TransitionalInstalmentPaid(
                **env,
                rule="P5",
                figures={
                    "instalment_no": n,
                    "of": case.instalments_total,
                    "amount_fen": case.instalment_fen,
                },
                instalment_no=n,
                amount_fen=case.instalment_fen,
            )
        )
        pid = derived_id(case.request_id, "posting:transitional_instalment", str(n))
        out.append(
            Posting(
                **{**env, "event_id": pid},
                posting_id=pid,
                kind=PostingKind.TRANSITIONAL_INSTALMENT.value,
                memo=f"P5: transitional living relief, instalment {n}",
                lines=transfer(
                    account(AccountKind.RELIEF_PAID, case.town),
                    _county(AccountKind.COUNTY_FUND),
                    case.instalment_fen,
                ),
            )
        )
        more = n < case.instalments_total
        case = case.model_copy(
            update={
                "instalments_paid": n,
                "paid_fen": case.paid_fen + case.instalment_fen,
                "next_instalment_at": case.next_instalment_at + timedelta(days=DAYS_PER_MONTH)
                if more
                else None,
            }
        )
    if out:
        state = state.model_copy(
            update={
                "cases": {**state.cases, case.case_id: case},
                "county_paid_fen": state.county_paid_fen
                + sum(r.amount_fen for r in out if isinstance(r, TransitionalInstalmentPaid)),
            }
        )
    return state, out


def _extend_transitional(
    state: TownState, record: TransitionalReliefExtended, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    case = _case(state, record.case_id)
    if case.status is not CaseStatus.TRANSITIONAL:
        raise _Refuse("only transitional living relief can be extended (P5)")
    months = record.extended_to_months
    if months > rules.policy.transitional_max_months or months <= case.instalments_total:
        raise _Refuse(
            f"extension to {months} months must be above the current {case.instalments_total} "
            f"and at most {rules.policy.transitional_max_months} (P5)"
        )
    next_at = case.next_instalment_at
    if next_at is None:  # the schedule had ended: it resumes a month after the last one
        next_at = case.received_at + timedelta(days=DAYS_PER_MONTH * case.instalments_paid)
    case = case.model_copy(
        update={
            "instalments_total": months,
            "next_instalment_at": next_at,
            "granted_fen": case.instalment_fen * months,
        }
    )
    approved = ReliefApproved(
        **_envelope(record, "approved"),
        rule="P5",
        figures={"months": months, "instalment_fen": case.instalment_fen},
        amount_fen=case.instalment_fen * months,
        approver_level=ApproverLevel.COUNTY,
    )
    state = _put(state, case, record)
    state, paid = _pay_instalments(state, state.cases[case.case_id], record, _at(record))
    return state, [approved, *paid]


# ======================================================================= payments, cancellations


def _payment(
    state: TownState, record: PaymentConfirmed, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    case = _case(state, record.case_id)
    if case.remembers(str(record.event_id)):
        return state, []
    if case.status not in (CaseStatus.ADVANCED, CaseStatus.ESCALATED, CaseStatus.APPROVED):
        raise _Refuse(f"case is {case.status.value}: nothing is held to pay")
    if record.amount_fen > case.granted_fen:
        raise _Refuse(
            f"payment of {record.amount_fen} fen is above the {case.granted_fen} fen granted"
        )
    paid, unpaid = record.amount_fen, case.granted_fen - record.amount_fen
    lines: list[Any] = []
    if case.funded_by == FundedBy.TOWN_RESERVE.value:
        lines += transfer(account(AccountKind.RELIEF_PAID, state.town), _held(state.town), paid)
        if unpaid:
            lines += transfer(_reserve(state.town), _held(state.town), unpaid)
        state = state.model_copy(update={"reserve": state.reserve.pay(case.granted_fen, paid)})
    else:
        lines += transfer(
            account(AccountKind.RELIEF_PAID, state.town), _county(AccountKind.COUNTY_HELD), paid
        )
        if unpaid:
            lines += transfer(
                _county(AccountKind.COUNTY_FUND), _county(AccountKind.COUNTY_HELD), unpaid
            )
        state = state.model_copy(
            update={
                "county_held_fen": state.county_held_fen - case.granted_fen,
                "county_paid_fen": state.county_paid_fen + paid,
            }
        )
    out: list[BaseModel] = [
        _posting(
            record,
            PostingKind.PAYMENT_CONFIRMED
            if case.funded_by == FundedBy.TOWN_RESERVE.value
            else PostingKind.ESCALATED_PAID,
            lines,
            "relief paid to the household",
        )
    ]
    updates: dict[str, Any] = {"status": CaseStatus.PAID, "paid_fen": paid}
    if case.relief_deadline is not None:
        outcome = case.relief_deadline.on_done(_at(record))
        if outcome is not None:
            out.append(_deadline_decision(case, case.relief_deadline, outcome, record))
            updates["relief_deadline"] = case.relief_deadline.model_copy(update={"state": outcome})
    state = _put(state, case.model_copy(update=updates), record)
    state, low = _reserve_low(state, record, rules)
    return state, out + low


def _cancel(state: TownState, record: AdvanceCancelled) -> tuple[TownState, list[BaseModel]]:
    case = _case(state, record.case_id)
    if case.remembers(str(record.event_id)):
        return state, []
    if case.status not in (CaseStatus.ADVANCED, CaseStatus.ESCALATED, CaseStatus.APPROVED):
        raise _Refuse(f"case is {case.status.value}: no unpaid advance to cancel")
    amount = case.granted_fen
    if case.funded_by == FundedBy.TOWN_RESERVE.value:
        lines = transfer(_reserve(state.town), _held(state.town), amount)
        state = state.model_copy(update={"reserve": state.reserve.release(amount)})
    else:
        lines = transfer(_county(AccountKind.COUNTY_FUND), _county(AccountKind.COUNTY_HELD), amount)
        state = state.model_copy(update={"county_held_fen": state.county_held_fen - amount})
    voided = AdvanceVoided(
        **_envelope(record, "voided"),
        rule="R5",
        figures={"amount_fen": amount, "funded_by": case.funded_by},
        amount_fen=amount,
        reasons=record.reason,
    )
    void = [
        d.model_copy(update={"state": DeadlineState.VOID}) if d is not None else None
        for d in (case.relief_deadline, case.paperwork_deadline)
    ]
    case = case.model_copy(
        update={
            "status": CaseStatus.CANCELLED,
            "relief_deadline": void[0],
            "paperwork_deadline": void[1],
        }
    )
    # P6: a cancelled grant no longer blocks the household's next request.
    grants = {k: v for k, v in state.grants.items() if k != case.cause_key}
    state = _put(state.model_copy(update={"grants": grants}), case, record)
    posting = _posting(
        record, PostingKind.ADVANCE_VOIDED, lines, "advance cancelled before payment"
    )
    return state, [voided, posting]


def _paperwork(state: TownState, record: PaperworkCompleted) -> tuple[TownState, list[BaseModel]]:
    case = _case(state, record.case_id)
    if case.remembers(str(record.event_id)):
        return state, []
    deadline = case.paperwork_deadline
    if deadline is None:
        raise _Refuse("the case has no paperwork deadline (only urgent advances do, P1)")
    outcome = deadline.on_done(_at(record))
    if outcome is None:
        raise _Refuse(f"paperwork deadline already {deadline.state.value}")
    decision = _deadline_decision(case, deadline, outcome, record)
    case = case.model_copy(
        update={"paperwork_deadline": deadline.model_copy(update={"state": outcome})}
    )
    return _put(state, case, record), [decision]


# ======================================================================= review, deliberation


def _review(
    state: TownState, record: CaseReviewed, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    """DESIGN rule 4: civil affairs reviews every advance after the fact, and approves
    expenditure-type relief above the town's authority (P2)."""
    case = _case(state, record.case_id)
    if case.remembers(str(record.event_id)):
        return state, []
    if case.status is CaseStatus.AWAITING_APPROVAL:
        if record.outcome in (ReviewOutcome.INELIGIBLE, ReviewOutcome.FRAUD):
            return _reject(state, case, record, record.reasons or "found ineligible on review")
        if record.outcome is not ReviewOutcome.CONFIRMED:
            raise _Refuse("an application awaiting approval is confirmed or found ineligible")
        figures: dict[str, int | str] = {
            "approved_fen": record.approved_fen,
            "requested_fen": case.requested_fen,
        }
        return _approve(
            state,
            record,
            rules,
            case.cause_key,
            record.approved_fen,
            ApproverLevel.COUNTY,
            "P2",
            figures,
        )
    if case.status is not CaseStatus.PAID:
        raise _Refuse(f"case is {case.status.value}: only a paid advance is reviewed")

    out: list[BaseModel] = []
    figures = {
        "paid_fen": case.paid_fen,
        "approved_fen": record.approved_fen,
        "outcome": record.outcome.value,
    }
    if record.outcome is ReviewOutcome.CONFIRMED:
        out.append(
            ReliefApproved(
                **_envelope(record, "approved"),
                rule="R5",
                figures=figures,
                amount_fen=case.paid_fen,
                approver_level=ApproverLevel.COUNTY,
            )
        )
    elif record.outcome is ReviewOutcome.TOP_UP:
        top_up = record.top_up_fen or 0
        out.append(
            ReliefApproved(
                **_envelope(record, "approved"),
                rule="R5+R3",
                figures={**figures, "top_up_fen": top_up},
                amount_fen=case.paid_fen + top_up,
                approver_level=ApproverLevel.COUNTY,
            )
        )
        out.append(
            _posting(
                record,
                PostingKind.TOP_UP,
                transfer(
                    account(AccountKind.RELIEF_PAID, state.town),
                    _county(AccountKind.COUNTY_FUND),
                    top_up,
                ),
                "review: topped up from the county fund",
            )
        )
        state = state.model_copy(update={"county_paid_fen": state.county_paid_fen + top_up})
    else:
        # P8: ineligible -> recover the amount; fraud -> recover it plus a fine of 1-3 x.
        multiple = record.fine_multiple or 0
        fine = case.paid_fen * multiple
        out.append(
            RecoveryClaimed(
                **_envelope(record, "recovery"),
                rule="P8",
                figures={**figures, "fine_multiple": multiple, "fine_fen": fine},
                amount_fen=case.paid_fen,
                fine_fen=fine,
            )
        )
        out.append(
            _posting(
                record,
                PostingKind.RECOVERY_CLAIMED,
                transfer(
                    account(AccountKind.RECOVERY_RECEIVABLE, state.town),
                    account(AccountKind.RECOVERED, state.town),
                    case.paid_fen + fine,
                ),
                "P8: recovery claimed",
            )
        )
    state, settled = _settle(state, record, case)
    out.extend(settled)
    case = case.model_copy(update={"status": CaseStatus.REVIEWED})
    return _put(state, case, record), out


def _settle(state: TownState, cause: Record, case: Case) -> tuple[TownState, list[BaseModel]]:
    """P11: settlement of a reviewed advance paid from the town's reserve tops the
    reserve back up by that amount (never above its size)."""
    if case.funded_by != FundedBy.TOWN_RESERVE.value:
        return state, []
    amount = min(case.paid_fen, state.reserve.shortfall_fen)
    if amount <= 0:
        return state, []
    posting = _posting(
        cause,
        PostingKind.RESERVE_REPLENISHED,
        transfer(_reserve(state.town), _county(AccountKind.COUNTY_FUND), amount),
        "P11: settlement replenishes the town reserve",
    )
    return state.model_copy(update={"reserve": state.reserve.replenish(amount)}), [posting]


def _reject(
    state: TownState, case: Case, record: Record, reasons: str
) -> tuple[TownState, list[BaseModel]]:
    decision = ReliefRejected(
        **_envelope(record, "rejected"),
        rule="P9",
        figures={"requested_fen": case.requested_fen},
        reasons=reasons,
    )
    grants = {k: v for k, v in state.grants.items() if k != case.cause_key}
    state = state.model_copy(update={"grants": grants})
    return _put(state, case.model_copy(update={"status": CaseStatus.REJECTED}), record), [decision]


def _deliberation(
    state: TownState, record: DeliberationDecided, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    """R6: county civil affairs decides a case above the cap, with reasons."""
    case = _case(state, record.case_id)
    if case.remembers(str(record.event_id)):
        return state, []
    if case.status is not CaseStatus.DELIBERATION:
        raise _Refuse(f"case is {case.status.value}: no deliberation is pending")
    if record.refused or record.approved_fen is None:
        return _reject(state, case, record, record.reasons)
    figures: dict[str, int | str] = {
        "approved_fen": record.approved_fen,
        "requested_fen": case.requested_fen,
    }
    return _approve(
        state,
        record,
        rules,
        case.cause_key,
        record.approved_fen,
        ApproverLevel.COUNTY,
        "R6",
        figures,
    )


# ======================================================================= reserves


def _replenish(
    state: TownState, record: ReserveFunded | ReserveReplenished, rules: Rules
) -> tuple[TownState, list[BaseModel]]:
    """P11: finance tops a reserve back up towards its size, never above it (R4)."""
    shortfall = state.reserve.shortfall_fen
    figures: dict[str, int | str] = {
        "amount_fen": record.amount_fen,
        "shortfall_fen": shortfall,
        "size_fen": state.reserve.size_fen,
    }
    if record.amount_fen > shortfall:
        refused = ReplenishmentRefused(
            **_envelope(record, "replenishment_refused"),
            rule="R4+P11",
            figures=figures,
            amount_fen=record.amount_fen,
            shortfall_fen=shortfall,
        )
        return state, [refused]
    posting = _posting(
        record,
        PostingKind.RESERVE_REPLENISHED,
        transfer(_reserve(state.town), _county(AccountKind.COUNTY_FUND), record.amount_fen),
        "P11: reserve replenished by county finance",
    )
    state = state.model_copy(update={"reserve": state.reserve.replenish(record.amount_fen)})
    state, low = _reserve_low(state, record, rules)
    return state, [posting, *low]


# ======================================================================= time


def _on_tick(state: TownState, tick: ClockTick, rules: Rules) -> tuple[TownState, list[BaseModel]]:
    """Judge every open deadline of the town against the tick's broker time (R5, P1),
    and pay transitional instalments that fell due (P5)."""
    now = _at(tick)
    if state.clock is not None and now < state.clock:
        now = state.clock  # the partition's time never goes back
    state = state.model_copy(update={"clock": now})
    out: list[BaseModel] = []
    cases = dict(state.cases)
    for case_id in sorted(cases):
        case = cases[case_id]
        updates: dict[str, Any] = {}
        for field in ("relief_deadline", "paperwork_deadline"):
            deadline: Deadline | None = getattr(case, field)
            if deadline is None:
                continue
            outcome = deadline.on_tick(now)
            if outcome is None:
                continue
            # (a clock that was away through the warning time goes straight to the breach)
            out.append(_deadline_decision(case, deadline, outcome, tick))
            updates[field] = deadline.model_copy(update={"state": outcome})
        if updates:
            cases[case_id] = case.model_copy(update=updates)
    state = state.model_copy(update={"cases": cases})
    for case_id in sorted(state.cases):
        case = state.cases[case_id]
        if case.status is CaseStatus.TRANSITIONAL:
            state, paid = _pay_instalments(state, case, tick, now)
            out.extend(paid)
    return state, out
