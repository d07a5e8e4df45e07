"""A second statement of the policy, deliberately simple: what each command should decide.

It shares no code with `services/emergency/domain`: it reads the figures of the policy
file (`schemas/config/huantai.toml`) and says, from docs/policy.md and docs/design.md
"the rules the processor enforces", who gets what, from which fund, and whether the 24
hours were kept. The stateful test (test_stateful.py) compares every decision of the
processor against it, and the money it says is where with the processor's state and the
ledger's balances. Outcomes are tuples: ("advance", case, fen, fund), ("paid", case,
fen, fund), ("met"|"breached", case), ("dead",) for a record refused as a dead letter ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.policy import Policy

TOWN, COUNTY = "town_reserve", "county_fund"
Outcome = tuple[object, ...]


@dataclass
class Case:
    kind: str  # urgent | expenditure | transitional
    cap: int  # R3 / configured ceiling: above it only a deliberation decides (R6)
    floor: int = 0
    status: str = "open"  # advanced | awaiting | deliberation | approved | paid | done
    granted: int = 0
    fund: str = COUNTY
    paid: int = 0
    due: datetime | None = None  # R5: the 24 hours, for urgent advances only
    instalment: int = 0  # P5
    due_n: int = 0
    paid_n: int = 0
    next_at: datetime | None = None


@dataclass
class Model:
    p: Policy
    size: int
    available: int = 0
    held: int = 0
    paid_town: int = 0  # paid from the town's reserve
    county_held: int = 0
    paid_all: int = 0  # every fen paid to households, whichever fund
    low: bool = False
    cases: dict[str, Case] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.available = self.size

    def ceiling(self, category: str) -> tuple[int, int]:
        m = self.p.urban_minimum_monthly[-1].amount_fen  # P4: in force in 2026
        bands = {
            "serious_illness": self.p.illness_multiples,
            "education": self.p.education_multiples,
        }
        if category in bands:  # R3: 3-12 x, 3-6 x the urban monthly minimum
            return bands[category].min * m, bands[category].max * m
        return 0, self.p.emergency_ceiling_fen  # emergency, temporary hardship: configured

    def hold(self, c: Case, amount: int, on_town: bool) -> str:
        """R4: on the town's reserve only if its available part covers it whole."""
        c.granted = amount
        c.fund = TOWN if on_town and 0 < amount <= self.available else COUNTY
        if c.fund == TOWN:
            self.available -= amount
            self.held += amount
        else:
            self.county_held += amount
        return c.fund

    def alert(self) -> list[Outcome]:
        """R4 + P11: alerted once below 20 % of the size, again only after recovering."""
        below = self.available < self.size * self.p.reserve_low_threshold_pct // 100
        out: list[Outcome] = [("reserve_low",)] if below and not self.low else []
        self.low = below
        return out

    def urgent(self, cid: str, requested: int, at: datetime) -> list[Outcome]:
        c = self.cases[cid] = Case("urgent", self.ceiling("emergency")[1], status="advanced")
        amount = min(requested, self.p.advance_cap_fen)  # P3: up to the cap now
        c.due = at + timedelta(hours=self.p.relief_deadline_h)  # R5
        fund = self.hold(c, amount, on_town=True)
        out: list[Outcome] = [("advance", cid, amount, fund)]
        return out + ([("escalated", cid)] if fund == COUNTY else []) + self.alert()

    def approve(self, cid: str, amount: int, level: str) -> list[Outcome]:
        c = self.cases[cid]
        c.status = "approved"
        self.hold(c, amount, on_town=level == "town")
        return [("approved", cid, amount, level), *self.alert()]

    def deliberation(self, cid: str, asked: int) -> list[Outcome]:
        self.cases[cid].status = "deliberation"
        return [("deliberation", cid, asked)]

    def expenditure(self, cid: str, category: str, requested: int, by_town: bool) -> list[Outcome]:
        floor, cap = self.ceiling(category)
        c = self.cases[cid] = Case("expenditure", cap, floor)
        if requested > cap:
            return self.deliberation(cid, requested)  # R6
        amount = max(requested, floor)  # R3: below the floor, the floor
        if amount < self.p.town_approval_limit_fen:  # P2: below 3,000 yuan
            return self.approve(cid, amount, "town" if by_town else "county")
        c.status, c.granted = "awaiting", amount
        return [("approval_required", cid, amount)]

    def transitional(self, cid: str, persons: int, at: datetime, by_town: bool) -> list[Outcome]:
        inst = self.p.transitional_daily_fen_per_person * persons * 30  # P5: a month
        total = inst * self.p.transitional_period_months
        c = self.cases[cid] = Case("transitional", 0, granted=total, instalment=inst)
        if by_town and total >= self.p.town_approval_limit_fen:
            c.status = "awaiting"
            return [("approval_required", cid, total)]
        return self.schedule(cid, at, "town" if by_town else "county")

    def schedule(self, cid: str, at: datetime, level: str) -> list[Outcome]:
        c = self.cases[cid]
        c.status, c.next_at = "transitional", at
        return [("approved", cid, c.granted, level), *self.instalments(cid, at)]

    def instalments(self, cid: str, now: datetime) -> list[Outcome]:
        c, out = self.cases[cid], list[Outcome]()
        while c.next_at is not None and c.next_at <= now:
            c.due_n += 1
            self.county_held += c.instalment  # held on the county fund for the town to pay
            out.append(("instalment", cid, c.due_n))
            more = c.due_n < self.p.transitional_period_months
            c.next_at = c.next_at + timedelta(days=30) if more else None
        return out

    def pay(self, cid: str, amount: int, at: datetime) -> list[Outcome]:
        c = self.cases[cid]
        if c.kind == "transitional":
            if c.paid_n >= c.due_n or amount > c.instalment:
                return [("dead",)]
            c.paid_n += 1
            self.county_held -= c.instalment
            self.paid_all += amount
            return [("instalment_paid", cid, amount)]
        if c.status not in ("advanced", "approved") or amount > c.granted:
            return [("dead",)]
        if c.fund == TOWN:
            self.held -= c.granted
            self.available += c.granted - amount  # the unpaid rest goes back
            self.paid_town += amount
        else:
            self.county_held -= c.granted
        self.paid_all += amount
        c.status, c.paid = "paid", amount
        out: list[Outcome] = [("paid", cid, amount, c.fund)]
        if c.due is not None:  # R5: 24 小时内 - the due time itself is on time
            out.append(("met" if at <= c.due else "breached", cid))
            c.due = None
        return out + self.alert()

    def cancel(self, cid: str) -> list[Outcome]:
        c = self.cases[cid]
        if c.status not in ("advanced", "approved"):
            return [("dead",)]
        if c.fund == TOWN:
            self.held -= c.granted
            self.available += c.granted
        else:
            self.county_held -= c.granted
        c.status, c.due = "done", None
        return [("voided", cid, c.granted), *self.alert()]

    def tick(self, now: datetime) -> list[Outcome]:
        out: list[Outcome] = []
        for cid, c in self.cases.items():
            if c.due is not None and now > c.due:  # R5: breached once past the due time
                out.append(("breached", cid))
                c.due = None
            if c.status == "transitional":
                out += self.instalments(cid, now)
        return out

    def settle(self, c: Case) -> None:
        """P11: a reviewed advance from the reserve tops it back up, never above its size."""
        if c.fund == TOWN:
            self.available += min(c.paid, self.size - self.available - self.held)

    def review(
        self, cid: str, at: datetime, outcome: str, approved: int, top_up: int = 0, fine_k: int = 0
    ) -> list[Outcome]:
        c = self.cases[cid]
        if c.status == "awaiting":  # P2: the county approves above the town's authority
            if outcome in ("ineligible", "fraud"):
                c.status = "done"
                return [("rejected", cid)]
            if outcome != "confirmed":
                return [("dead",)]
            if c.kind == "transitional":  # P5: the schedule is approved whole
                return [("dead",)] if approved != c.granted else self.schedule(cid, at, "county")
            if approved > c.cap:
                return self.deliberation(cid, approved)
            return [("dead",)] if approved < c.floor else self.approve(cid, approved, "county")
        if c.status != "paid":
            return [("dead",)]
        if outcome == "top_up" and c.paid + top_up > c.cap:
            return self.deliberation(cid, c.paid + top_up)  # R3 + R6 on the top-up too
        out: list[Outcome]
        if outcome == "confirmed":
            out = [("approved", cid, c.paid, "county")]
        elif outcome == "top_up":
            self.paid_all += top_up  # from the county fund
            out = [("approved", cid, c.paid + top_up, "county")]
        else:  # P8: recovered, and fraud fined 1-3 x if the reviewer decided so
            band = self.p.fraud_fine_multiples
            if fine_k and not band.min <= fine_k <= band.max:
                return [("dead",)]
            out = [("recovery", cid, c.paid, fine_k * c.paid)]
        self.settle(c)
        c.status = "done"
        return out + self.alert()

    def deliberate(self, cid: str, approved: int | None) -> list[Outcome]:
        """R6: civil affairs decides above the cap, with reasons."""
        c = self.cases[cid]
        if c.status != "deliberation":
            return [("dead",)]
        if c.paid == 0:
            if approved is None:
                c.status = "done"
                return [("rejected", cid)]
            return self.approve(cid, approved, "county")
        total = c.paid if approved is None else approved
        if total < c.paid:
            return [("dead",)]  # taking money back is a review's (P8)
        self.paid_all += total - c.paid
        self.settle(c)
        c.status = "done"
        return [("approved", cid, total, "county"), *self.alert()]

    def replenish(self, amount: int) -> list[Outcome]:
        if amount > self.size - self.available - self.held:  # P11: never above its size
            return [("replenishment_refused",)]
        self.available += amount
        return self.alert()
