"""Random command sequences against the rules, every decision checked against a model.

A town with a small reserve (1,000 to 2,500 yuan, so escalation to the county fund and
the reserve-low alert come within a few steps) gets urgent requests, expenditure-type
and transitional relief, payments (whole, partial and 1 fen too many), cancellations,
county approvals either side of the cap, deliberations, reviews (confirmed, topped up,
ineligible, fraud with or without a fine), replenishments and clock ticks, in any order.
After every record:
- what the processor decided (granted or not, how much, from which fund, met or
  breached, dead-lettered) equals what the reference model (model.py, a second and
  simpler statement of the policy) says it should decide;
- the money is where the model says it is, in the processor's state and in the
  balances folded from the postings it emitted (a posting booked against the wrong
  hold shows here);
- no output id is emitted twice, a deadline ends at most once, every stored value is
  small, and the state folded back from the outputs equals what `decide` left
  (builders.Town).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timedelta

from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pydantic import BaseModel

from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import Record
from schemas.topics import RejectedRecord
from services.emergency.domain.state import MAX_VALUE_BYTES
from tests.unit.emergency.builders import (
    CONFIG,
    QIFENG,
    T0,
    TOWN,
    Town,
    cancelled,
    deliberated,
    expenditure,
    incident,
    paid,
    replenished,
    reviewed,
    rules_with_reserve,
    tick,
    urgent,
)
from tests.unit.emergency.model import Model, Outcome

_EXPENDITURE = (
    i.ReliefCategory.SERIOUS_ILLNESS,
    i.ReliefCategory.EDUCATION,
    i.ReliefCategory.TEMPORARY_HARDSHIP,
)
_AT_THE_CAP = 12 * 92_400  # R3: serious illness at exactly 12 x the urban minimum
_LIMIT = CONFIG.policy.town_approval_limit_fen  # P2: a town approves below it


def outcomes(records: list[BaseModel]) -> list[Outcome]:
    """What the processor decided, in the model's words (postings, warnings, paperwork
    deadlines and second-grant notes are left out: the money is compared separately)."""
    out: list[Outcome] = []
    for r in records:
        c = getattr(r, "correlation_id", None)
        match r:
            case d.AdvanceGranted():
                out.append(("advance", c, r.amount_fen, r.funded_by.value))
            case d.EscalatedToCountyFund():
                out.append(("escalated", c))
            case d.AdvanceRefused():
                out.append(("refused", c, r.reason.value))
            case d.ReliefApproved():
                out.append(("approved", c, r.amount_fen, r.approver_level.value))
            case d.ApprovalRequired():
                out.append(("approval_required", c, r.amount_fen))
            case d.DeliberationRequired():
                out.append(("deliberation", c, r.requested_fen))
            case d.ReliefRejected():
                out.append(("rejected", c))
            case d.ReliefPaid():
                out.append(("paid", c, r.amount_fen, r.funded_by.value))
            case d.AdvanceVoided():
                out.append(("voided", c, r.amount_fen))
            case d.DeadlineMet() | d.DeadlineBreached() if r.deadline is d.DeadlineKind.RELIEF_24H:
                out.append(("met" if isinstance(r, d.DeadlineMet) else "breached", c))
            case d.ReserveLow():
                out.append(("reserve_low",))
            case d.ReplenishmentRefused():
                out.append(("replenishment_refused",))
            case d.RecoveryClaimed():
                out.append(("recovery", c, r.amount_fen, r.fine_fen))
            case d.InstalmentDue():
                out.append(("instalment", c, r.instalment_no))
            case d.TransitionalInstalmentPaid():
                out.append(("instalment_paid", c, r.amount_fen))
            case RejectedRecord():
                out.append(("dead",))
    return sorted(out, key=repr)


class ReliefMachine(RuleBasedStateMachine):
    @initialize(size=st.sampled_from([100_000, 150_000, 250_000]))
    def open_town(self, size: int) -> None:
        self.town = Town(rules=rules_with_reserve(size))
        self.model = Model(CONFIG.policy, size)
        self.now = self.last_tick = T0
        self.n = 0
        self.requests: dict[str, i.ReliefRequested] = {}
        self.town(incident("flood-0720", at=self.now))

    def _later(self, minutes: int) -> datetime:
        if self.now - self.last_tick > timedelta(days=10):
            self._tick(self.now)  # the clock ticks on its own too (a tick walks <= 31 days)
        self.now += timedelta(minutes=minutes)
        return self.now

    def _tick(self, at: datetime) -> None:
        self.now = self.last_tick = at
        self._apply(tick(at), self.model.tick(at))

    def _apply(self, record: Record, expected: list[Outcome]) -> None:
        got = outcomes(self.town(record))
        for kind in {o[0] for o in got}:
            event(str(kind))  # --hypothesis-show-statistics: how often each branch is reached
        assert got == sorted(expected, key=repr), f"{record.type} {record.correlation_id}"

    def _cases(self, *statuses: str, kind: str | None = None) -> list[str]:
        return sorted(
            cid
            for cid, c in self.model.cases.items()
            if c.status in statuses and (kind is None or c.kind == kind)
        )

    def _new_case(self, prefix: str) -> tuple[str, int]:
        self.n += 1  # one household per case: P6 has its own examples (test_policy_fidelity)
        return f"{prefix}{self.n}", self.n

    @rule(amount=st.integers(1, 250_000), minutes=st.integers(0, 600))
    def request(self, amount: int, minutes: int) -> None:
        cid, household = self._new_case("c")
        record = urgent(cid, amount, at=self._later(minutes), household=household)
        self.requests[cid] = record
        self._apply(record, self.model.urgent(cid, amount, self.now))

    @rule(amount=st.integers(50_000, 100_000))
    def request_at_the_cap(self, amount: int) -> None:
        """Another urgent request soon after: in a flood they come in numbers (escalation)."""
        self.request(amount, 10)

    @precondition(lambda self: 0 < self.model.available < CONFIG.policy.advance_cap_fen)
    @rule(over=st.booleans())
    def request_what_is_available(self, over: bool) -> None:
        """R4's edge: exactly the available reserve (held on it) or 1 fen more (escalated)."""
        self.request(self.model.available + over, 1)

    @rule(
        amount=st.one_of(
            st.integers(1, 1_500_000),
            st.sampled_from([_AT_THE_CAP, _AT_THE_CAP + 1, _LIMIT - 1, _LIMIT]),
        ),
        category=st.sampled_from(_EXPENDITURE),
        by_town=st.booleans(),
    )
    def request_expenditure(self, amount: int, category: i.ReliefCategory, by_town: bool) -> None:
        cid, household = self._new_case("x")
        actor = {"actor": TOWN} if by_town else {}
        record = expenditure(cid, amount, category, self._later(3), household, **actor)
        self.requests[cid] = record
        self._apply(record, self.model.expenditure(cid, category.value, amount, by_town))

    @rule(persons=st.integers(1, 3), by_town=st.booleans())
    def request_transitional(self, persons: int, by_town: bool) -> None:
        cid, household = self._new_case("t")
        actor = {"actor": TOWN} if by_town else {}
        record = expenditure(
            cid, 1, i.ReliefCategory.TRANSITIONAL_LIVING, self._later(3), household,
            persons=persons, **actor,
        )  # fmt: skip
        self.requests[cid] = record
        self._apply(record, self.model.transitional(cid, persons, self.now, by_town))

    @precondition(lambda self: bool(self._cases("advanced", "approved")))
    @rule(data=st.data(), minutes=st.integers(0, 1_500))
    def pay(self, data: st.DataObject, minutes: int) -> None:
        """Whole, partial, or 1 fen above what is held (refused, nothing changes)."""
        cid = data.draw(st.sampled_from(self._cases("advanced", "approved")))
        most = self.model.cases[cid].granted
        amount = data.draw(st.one_of(st.integers(1, most), st.just(most), st.just(most + 1)))
        self._apply(
            paid(cid, amount, at=self._later(minutes)), self.model.pay(cid, amount, self.now)
        )

    @precondition(lambda self: bool(self._cases("transitional")))
    @rule(data=st.data())
    def pay_instalment(self, data: st.DataObject) -> None:
        """P5: the town pays an instalment due (or one not yet due: refused)."""
        cid = data.draw(st.sampled_from(self._cases("transitional")))
        most = self.model.cases[cid].instalment
        amount = data.draw(st.one_of(st.integers(1, most), st.just(most + 1)))
        self._apply(paid(cid, amount, at=self._later(10)), self.model.pay(cid, amount, self.now))

    @precondition(lambda self: bool(self._cases("advanced", "approved")))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self._cases("advanced", "approved")))
        self._apply(cancelled(cid, at=self._later(1)), self.model.cancel(cid))

    @precondition(lambda self: bool(self._cases("paid")))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(list(i.ReviewOutcome)),
        top_up=st.integers(1, 600_000),
        fine=st.integers(0, 4),
    )
    def review(self, data: st.DataObject, outcome: i.ReviewOutcome, top_up: int, fine: int) -> None:
        """Civil affairs after the fact: confirmed, topped up (either side of the cap),
        ineligible (recovered) or fraud (recovered, a fine of 0-4 x: 4 is outside P8)."""
        cid = data.draw(st.sampled_from(self._cases("paid")))
        paid_fen = self.model.cases[cid].paid
        more: dict[str, int] = {"approved_fen": paid_fen}
        if outcome is i.ReviewOutcome.TOP_UP:
            more = {"approved_fen": paid_fen + top_up, "top_up_fen": top_up}
        elif outcome in (i.ReviewOutcome.INELIGIBLE, i.ReviewOutcome.FRAUD):
            more = {"approved_fen": 0}
            if outcome is i.ReviewOutcome.FRAUD and fine:
                # P8: 1-3 x; 4 x is outside the band (fine_multiple refuses it at the door)
                more["fine_multiple" if fine <= 3 else "fine_fen"] = (
                    fine if fine <= 3 else fine * paid_fen
                )
        k = fine if outcome is i.ReviewOutcome.FRAUD else 0
        at = self._later(5)
        expected = self.model.review(cid, at, outcome.value, 0, top_up, k)
        self._apply(reviewed(cid, at, outcome, reasons="复核意见", **more), expected)

    @precondition(lambda self: bool(self._cases("awaiting")))
    @rule(data=st.data(), amount=st.integers(1, 1_500_000), confirmed=st.booleans())
    def county_approval(self, data: st.DataObject, amount: int, confirmed: bool) -> None:
        """Any amount, the cap's either side and exactly at it: the rules hold the band."""
        cid = data.draw(st.sampled_from(self._cases("awaiting")))
        c = self.model.cases[cid]
        edges = [amount, c.cap, c.cap + 1, c.floor, c.floor - 1, c.granted, c.granted + 1]
        amount = data.draw(st.sampled_from([a for a in edges if a > 0]))
        outcome = i.ReviewOutcome.CONFIRMED if confirmed else i.ReviewOutcome.INELIGIBLE
        at = self._later(5)
        expected = self.model.review(cid, at, outcome.value, amount if confirmed else 0)
        self._apply(
            reviewed(cid, at, outcome, approved_fen=amount if confirmed else 0, reasons="复核意见"),
            expected,
        )

    @precondition(lambda self: bool(self._cases("deliberation")))
    @rule(data=st.data(), amount=st.integers(1, 3_000_000), refused=st.booleans())
    def deliberate(self, data: st.DataObject, amount: int, refused: bool) -> None:
        cid = data.draw(st.sampled_from(self._cases("deliberation")))
        decision = {"refused": True} if refused else {"approved_fen": amount}
        expected = self.model.deliberate(cid, None if refused else amount)
        self._apply(deliberated(cid, self._later(5), **decision), expected)

    @rule(hours=st.integers(1, 48), exactly_due=st.booleans())
    def clock(self, hours: int, exactly_due: bool) -> None:
        """A tick some hours on, or at exactly an open advance's due time (still on time)."""
        dues = sorted(c.due for c in self.model.cases.values() if c.due and c.due > self.now)
        self._tick(dues[0] if exactly_due and dues else self.now + timedelta(hours=hours))

    @rule(amount=st.integers(1, 400_000))
    def replenish(self, amount: int) -> None:
        self._apply(replenished(amount, at=self._later(1)), self.model.replenish(amount))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """At-least-once delivery: an old request again (its case open or finished)
        changes nothing and emits nothing."""
        if not self.requests:
            return
        before = self.town.snapshot()
        case_id = data.draw(st.sampled_from(sorted(self.requests)))
        self._apply(self.requests[case_id], [])
        assert self.town.snapshot() == before

    # ------------------------------------------------------------ invariants

    @invariant()
    def the_money_is_where_the_model_says(self) -> None:
        """In the processor's state and in the balances of the postings it emitted."""
        m, s, b = self.model, self.town.s, self.town.balances()
        r = s.reserve
        assert (r.available_fen, r.held_fen, r.paid_fen) == (m.available, m.held, m.paid_town)
        assert s.county_held_fen == m.county_held
        assert b.get(f"town_reserve:{QIFENG}", 0) == m.available
        assert b.get(f"town_reserve_held:{QIFENG}", 0) == m.held
        assert b.get("county_held:county", 0) == m.county_held
        assert b.get(f"relief_paid:{QIFENG}", 0) == m.paid_all

    @invariant()
    def no_output_id_twice(self) -> None:
        ids = Counter(getattr(o.record, "event_id", None) for o in self.town.outputs)
        ids.pop(None, None)  # dead letters carry their source's position, not an id
        assert all(n == 1 for n in ids.values())

    @invariant()
    def a_deadline_ends_at_most_once(self) -> None:
        ends = Counter(
            (r.correlation_id, r.deadline)
            for r in self.town.records()
            if isinstance(r, d.DeadlineMet | d.DeadlineBreached)
        )
        assert all(n == 1 for n in ends.values())

    @invariant()
    def every_stored_value_is_small(self) -> None:
        for key, value in self.town.store.items():
            assert len(json.dumps(value, ensure_ascii=False).encode()) <= MAX_VALUE_BYTES, key

    def teardown(self) -> None:
        if not hasattr(self, "town"):
            return
        # Ten days at a time (a tick walks at most 31 days of the wheel: book.py) far into
        # the future: every open 24-hour deadline is judged and every instalment falls
        # due, as the model says.
        for _ in range(12):
            self._tick(self.now + timedelta(days=10))
        assert all(c.due is None for c in self.model.cases.values())


TestReliefMachine = ReliefMachine.TestCase
if os.environ.get("RELIEF_HYPOTHESIS_PROFILE") == "mutants":
    # ./run mutants: the same machine, fewer and reproducible runs per mutant
    TestReliefMachine.settings = settings(
        max_examples=40,
        stateful_step_count=50,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a kill needs no shrinking
    )
else:
    TestReliefMachine.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
