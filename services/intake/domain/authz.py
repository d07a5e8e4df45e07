"""Who may do what, and for which town: pure decisions, each with its reason.

Roles come from docs/contracts.md: the emergency bureau reports incidents; a town
registers urgent cases, confirms payments, completes paperwork and cancels advances for
its own town only; county civil affairs registers expenditure-type cases, reviews and
decides deliberations; finance reads everything and moves money only by funding and
replenishing reserves (P10); departments push hardship lists; auditors read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schemas.envelope import Role
from schemas.intake import Urgency
from services.intake.domain.tokens import Principal


class Action(StrEnum):
    REPORT_INCIDENT = "report_incident"
    UPDATE_INCIDENT = "update_incident"
    CLOSE_INCIDENT = "close_incident"
    REGISTER_CASE = "register_case"
    CONFIRM_PAYMENT = "confirm_payment"
    COMPLETE_PAPERWORK = "complete_paperwork"
    CANCEL_ADVANCE = "cancel_advance"
    REVIEW_CASE = "review_case"
    DECIDE_DELIBERATION = "decide_deliberation"
    DECLARE_EMERGENCY_PERIOD = "declare_emergency_period"
    FUND_RESERVE = "fund_reserve"
    REPLENISH_RESERVE = "replenish_reserve"
    PUSH_HARDSHIP_LIST = "push_hardship_list"
    FOLLOW_UP_HARDSHIP = "follow_up_hardship"
    PUBLISH_DISCLOSURE = "publish_disclosure"
    READ = "read"
    READ_SUBMISSION = "read_submission"


ALLOWED: dict[Action, frozenset[Role]] = {
    # R1: the emergency bureau posts accidents and disasters with the households hit
    Action.REPORT_INCIDENT: frozenset({Role.EMERGENCY_BUREAU}),
    Action.UPDATE_INCIDENT: frozenset({Role.EMERGENCY_BUREAU}),
    Action.CLOSE_INCIDENT: frozenset({Role.EMERGENCY_BUREAU}),
    # R2: the bureau declares (and ends) an emergency period
    Action.DECLARE_EMERGENCY_PERIOD: frozenset({Role.EMERGENCY_BUREAU}),
    # section 八: towns accept, review and approve (urgent R5 and expenditure-type R3);
    # county civil affairs registers too (and alone grants a second time, P6)
    Action.REGISTER_CASE: frozenset({Role.TOWN, Role.CIVIL_AFFAIRS}),
    # R5, P9: the town that paid confirms; P1: the town completes paperwork
    Action.CONFIRM_PAYMENT: frozenset({Role.TOWN}),
    Action.COMPLETE_PAPERWORK: frozenset({Role.TOWN}),
    Action.CANCEL_ADVANCE: frozenset({Role.TOWN}),
    # docs/design.md rule 4 reviews; R6 deliberations (一事一议)
    Action.REVIEW_CASE: frozenset({Role.CIVIL_AFFAIRS}),
    Action.DECIDE_DELIBERATION: frozenset({Role.CIVIL_AFFAIRS}),
    # P10, P11: finance alone moves county money into reserves
    Action.FUND_RESERVE: frozenset({Role.FINANCE}),
    Action.REPLENISH_RESERVE: frozenset({Role.FINANCE}),
    # section 二: departments push lists of suspected hardship cases
    Action.PUSH_HARDSHIP_LIST: frozenset({Role.DEPARTMENT}),
    # section 二, P9: county civil affairs follows each row up with a written decision
    Action.FOLLOW_UP_HARDSHIP: frozenset({Role.CIVIL_AFFAIRS}),
    # P7, section 十: a town publishes its own list; civil affairs any town's
    Action.PUBLISH_DISCLOSURE: frozenset({Role.TOWN, Role.CIVIL_AFFAIRS}),
    # section 十: supervision reads everything; a town reads its own town
    Action.READ: frozenset({Role.TOWN, Role.CIVIL_AFFAIRS, Role.FINANCE, Role.AUDITOR}),
    # whoever writes may see what became of what it wrote (scoped: submission_scope)
    Action.READ_SUBMISSION: frozenset(
        {
            Role.TOWN,
            Role.CIVIL_AFFAIRS,
            Role.FINANCE,
            Role.AUDITOR,
            Role.EMERGENCY_BUREAU,
            Role.DEPARTMENT,
        }
    ),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


class Forbidden(Exception):
    """403: the principal may not do this, and why (the reason is the answer's detail)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check(decision: Decision) -> None:
    """Raise Forbidden unless the decision allows."""
    if not decision.allowed:
        raise Forbidden(decision.reason)


def may(principal: Principal, action: Action) -> Decision:
    """The role check alone (before the request's town is known)."""
    if principal.role not in ALLOWED[action]:
        if principal.role is Role.FINANCE:
            # P10: finance reads everything but moves money only into reserves
            return Decision(
                False,
                f"finance is read-only except funding and replenishing "
                f"reserves; it may not {action.value}",
            )
        return Decision(False, f"role {principal.role.value} may not {action.value}")
    return ALLOW


def may_for_town(principal: Principal, action: Action, town: str) -> Decision:
    """The role check and the place check: a town acts (and reads) only for itself."""
    by_role = may(principal, action)
    if not by_role.allowed:
        return by_role
    if principal.role is Role.TOWN and principal.town != town:
        return Decision(False, f"town {principal.town} may act only for its own town, not {town}")
    return ALLOW


def may_register(
    principal: Principal, town: str, urgency: Urgency, second_grant: bool = False
) -> Decision:
    """Section 八 gives towns 申请受理、审核审批、资金发放: a town registers urgent (R5) and
    expenditure-type (R3) cases for itself, and approves them within its authority (P2,
    decided by the processor on the amount). County civil affairs registers any case, and
    alone grants a household a second time for the same cause (P6)."""
    decision = may_for_town(principal, Action.REGISTER_CASE, town)
    if not decision.allowed:
        return decision
    del urgency  # (both kinds, both roles: section 八)
    if second_grant and principal.role is not Role.CIVIL_AFFAIRS:
        return Decision(
            False, "only county civil affairs grants a household a second time for one cause (P6)"
        )
    return ALLOW


def may_list_cases(principal: Principal, town: str | None, incident_id: str | None) -> Decision:
    """A town lists its own town's cases; the bureau the cases of an incident (R1: it
    reported it, and sees its cases and money by town); county staff who read everything,
    any town's."""
    if principal.role is Role.EMERGENCY_BUREAU:
        if incident_id is None:
            return Decision(False, "the emergency bureau lists the cases of an incident")
        return ALLOW
    if town is None:
        if principal.role is Role.TOWN:
            return Decision(False, "a town lists its own town's cases: name the town")
        return may(principal, Action.READ)
    return may_for_town(principal, Action.READ, town)


def submission_scope(principal: Principal) -> tuple[str | None, str | None]:
    """(town, org) a principal's submission reads are limited to: a town sees its own
    town's, the bureau and departments their own organisation's; county staff who read
    everything (civil affairs, finance, auditors) see every town's."""
    if principal.role is Role.TOWN:
        return principal.town, None
    if principal.role in ALLOWED[Action.READ]:
        return None, None
    return None, principal.org
