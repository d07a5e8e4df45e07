"""One valid sample of every record type, telling a small story: a flood in Qifeng,
the Wang household's urgent request, its advance, payment, paperwork and review."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import Actor, Record, Role, derived_id
from schemas.identity import check_char, household_ref
from schemas.postings import COUNTY_SCOPE, AccountKind, Posting, account, transfer

KEY = b"unit-test-key-0123456789abcdef"
QIFENG = "370321101"
T0 = datetime(2024, 7, 10, 6, 30, tzinfo=UTC)
INCIDENT = "inc-2024-0710-qifeng-flood"
CASE = "case-2024-0001"


def make_id(region: str = "370321", born: date = date(1980, 5, 17), seq: str = "123") -> str:
    first17 = f"{region}{born:%Y%m%d}{seq}"
    return first17 + check_char(first17)


WANG_ID = make_id()
WANG = household_ref(WANG_ID, KEY)
LI = household_ref(make_id(seq="456"), KEY)

TOWN_CLERK = Actor(role=Role.TOWN, org="起凤镇人民政府")
BUREAU = Actor(role=Role.EMERGENCY_BUREAU, org="桓台县应急管理局")
CIVIL = Actor(role=Role.CIVIL_AFFAIRS, org="桓台县民政局")
FINANCE = Actor(role=Role.FINANCE, org="桓台县财政局")
SYSTEM = Actor(role=Role.SYSTEM, org="relief-emergency")

REQUEST_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def env(actor: Actor = TOWN_CLERK, corr: str = CASE, n: int = 1) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=n),
        "occurred_at": T0 + timedelta(minutes=n),
        "town": QIFENG,
        "actor": actor,
        "correlation_id": corr,
    }


def derived(kind: str, rule: str, **figures: int | str) -> dict[str, Any]:
    return {
        "event_id": derived_id(REQUEST_ID, kind),
        "occurred_at": T0 + timedelta(minutes=5),
        "recorded_at": T0 + timedelta(minutes=5),
        "town": QIFENG,
        "actor": SYSTEM,
        "correlation_id": CASE,
        "causation_id": REQUEST_ID,
        "rule": rule,
        "figures": dict(figures),
    }


def relief_requested() -> i.ReliefRequested:
    return i.ReliefRequested(
        **{**env(), "event_id": REQUEST_ID},
        urgency=i.Urgency.URGENT,
        category=i.ReliefCategory.EMERGENCY,
        household_ref=WANG,
        incident_id=INCIDENT,
        requested_fen=80_000,
        reason="房屋进水，生活用品损毁",
        persons=3,
    )


def intake_samples() -> list[Record]:
    due = T0 + timedelta(hours=24)
    return [
        i.IncidentReported(
            **env(BUREAU, INCIDENT, 10),
            incident_id=INCIDENT,
            kind=i.IncidentKind.NATURAL_DISASTER,
            disaster_subtype=i.DisasterSubtype.FLOOD,
            description="暴雨致乌河漫溢",
            casualties=i.Casualties(dead=0, injured=2),
            household_refs=(WANG, LI),
        ),
        i.IncidentUpdated(
            **env(BUREAU, INCIDENT, 11),
            incident_id=INCIDENT,
            casualties=i.Casualties(dead=1, injured=2),
            household_refs_added=(LI,),
        ),
        i.IncidentClosed(**env(BUREAU, INCIDENT, 12), incident_id=INCIDENT, note="水已退"),
        i.EmergencyPeriodDeclared(
            **env(BUREAU, INCIDENT, 16),
            incident_id=INCIDENT,
            until=T0 + timedelta(days=7),
            reason="启动IV级应急响应",
        ),
        i.EmergencyPeriodEnded(**env(BUREAU, INCIDENT, 17), incident_id=INCIDENT, note="响应终止"),
        relief_requested(),
        i.AdvanceCancelled(**env(n=13), reason="duplicate registration"),
        i.PaymentConfirmed(**env(n=14), amount_fen=80_000, bank_reference="ICBC-20240710-77"),
        i.PaperworkCompleted(**env(n=15), note="signed"),
        i.CaseReviewed(
            **env(CIVIL, n=16),
            outcome=i.ReviewOutcome.TOP_UP,
            approved_fen=120_000,
            top_up_fen=40_000,
        ),
        i.TransitionalReliefExtended(**env(CIVIL, n=17), extended_to_months=6, reason="房屋未修复"),
        i.DeliberationDecided(**env(CIVIL, n=18), approved_fen=1_500_000, reasons="重大困难"),
        i.ReserveFunded(**env(FINANCE, "reserve-370321101", 19), amount_fen=5_000_000),
        i.ReserveReplenished(**env(FINANCE, "settle-2024-07", 20), amount_fen=80_000),
        i.HardshipListPushed(
            **env(Actor(role=Role.DEPARTMENT, org="医保局"), "push-2024-07", 21),
            department="县医疗保障局",
            rows=(i.HardshipRow(household_ref=LI, category=i.HardshipCategory.DISABLED),),
        ),
        i.DisclosurePublished(
            **env(TOWN_CLERK, "disclosure-2024-07", 23), period="2024-07", note="镇政务公开栏"
        ),
        i.HardshipFollowedUp(
            **env(CIVIL, i.hardship_row_correlation(uuid.UUID(int=21), 0), 24),
            list_event_id=uuid.UUID(int=21),
            row=0,
            outcome=i.HardshipOutcome.CASE_OPENED,
            case_id="exp-2024-0031",
            reasons="入户核实：长期卧床，医疗支出大，已登记支出型救助",
            decided_by="民政局社会救助科 王科长",
        ),
        i.ClockTick(
            event_id=uuid.UUID(int=22),
            occurred_at=due,
            recorded_at=due,
            town="__clock__",
            actor=Actor(role=Role.SYSTEM, org="relief-clock"),
            correlation_id="clock-p3",
            partition=3,
        ),
    ]


def decision_samples() -> list[Record]:
    due = T0 + timedelta(hours=24)
    return [
        d.AdvanceGranted(
            **derived("advance", "R5", cap_fen=100_000), amount_fen=80_000, due_at=due
        ),
        d.ReliefPaid(
            **derived("paid", "R5", paid_fen=70_000),
            amount_fen=70_000,
            released_fen=10_000,
            funded_by=d.FundedBy.TOWN_RESERVE,
            case_status=d.CaseStatus.PAID,
        ),
        d.AdvanceRefused(
            **derived("refused", "P6", earlier_case="case-2024-0000"),
            reason=d.RefusalReason.DUPLICATE,
        ),
        d.AdvanceVoided(
            **derived("voided", "R5", amount_fen=80_000), amount_fen=80_000, reasons="重复登记"
        ),
        d.ApprovalRequired(
            **derived("approval_required", "P2", amount_fen=500_000),
            amount_fen=500_000,
            approver_level=d.ApproverLevel.COUNTY,
        ),
        d.ReplenishmentRefused(
            **derived("replenishment_refused", "R4+P11"), amount_fen=90_000, shortfall_fen=0
        ),
        d.EscalatedToCountyFund(
            **derived("escalated", "R4", available_fen=10_000),
            amount_fen=80_000,
            due_at=due,
            available_fen=10_000,
        ),
        d.DeliberationRequired(
            **derived("deliberation", "R3+R6"), requested_fen=2_000_000, cap_fen=1_108_800
        ),
        d.ReliefApproved(
            **derived("approved", "P2"), amount_fen=250_000, approver_level=d.ApproverLevel.TOWN
        ),
        d.ReliefRejected(**derived("rejected", "P9"), reasons="收入超过标准"),
        d.DeadlineWarned(**derived("warn", "R5"), deadline=d.DeadlineKind.RELIEF_24H, due_at=due),
        d.DeadlineMet(**derived("met", "R5"), deadline=d.DeadlineKind.RELIEF_24H, due_at=due),
        d.DeadlineBreached(
            **derived("breach", "P1"),
            deadline=d.DeadlineKind.PAPERWORK_5D,
            due_at=due + timedelta(days=4),
        ),
        d.RecoveryClaimed(
            **derived("recovery", "P8", multiple=2), amount_fen=80_000, fine_fen=160_000
        ),
        d.ReferredToOriginCounty(**derived("referred", "R7"), origin_county="河北省某县"),
        d.SecondGrantAllowed(
            **derived("second_grant", "P6", previous_case_id="case-2024-0001"),
            previous_case_id="case-2024-0001",
            reasons="房屋二次倒塌",
            decided_by=Actor(role=Role.CIVIL_AFFAIRS, org="桓台县民政局"),
        ),
        d.ReserveLow(
            **derived("low", "R4", pct=20), available_fen=900_000, threshold_fen=1_000_000
        ),
        d.InstalmentDue(
            **derived("instalment", "P5", n=2), instalment_no=2, amount_fen=180_000, due_at=due
        ),
        d.TransitionalInstalmentPaid(**derived("paid", "P5"), instalment_no=1, amount_fen=180_000),
    ]


def advance_posting(amount_fen: int = 80_000) -> Posting:
    pid = derived_id(REQUEST_ID, "posting:advance_granted")
    return Posting(
        event_id=pid,
        posting_id=pid,
        occurred_at=T0,
        town=QIFENG,
        actor=SYSTEM,
        correlation_id=CASE,
        causation_id=REQUEST_ID,
        kind="advance_granted",
        memo="advance, R5",
        lines=transfer(
            account(AccountKind.TOWN_RESERVE_HELD, QIFENG),
            account(AccountKind.TOWN_RESERVE, QIFENG),
            amount_fen,
        ),
    )


def funding_posting() -> Posting:
    pid = derived_id(uuid.UUID(int=19), "posting:reserve_funded")
    return Posting(
        event_id=pid,
        posting_id=pid,
        occurred_at=T0,
        town=QIFENG,
        actor=SYSTEM,
        correlation_id="reserve-370321101",
        kind="reserve_funded",
        lines=transfer(
            account(AccountKind.TOWN_RESERVE, QIFENG),
            account(AccountKind.COUNTY_FUND, COUNTY_SCOPE),
            5_000_000,
        ),
    )


def all_samples() -> list[Record]:
    return [*intake_samples(), *decision_samples(), advance_posting()]
