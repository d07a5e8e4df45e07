"""Records for the processor's stories: a flood in Qifeng, the households it hit."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from schemas import decisions as d
from schemas import intake as i
from schemas import topics
from schemas.claims import ClaimReleased
from schemas.envelope import Actor, Record, Role
from schemas.policy import load_config
from schemas.postings import NORMAL_SIDE, Posting, Side, parse_account
from schemas.topics import RejectedRecord
from services.emergency.adapters.outputs import Output, rejected_record, to_output
from services.emergency.domain import claims
from services.emergency.domain.book import Book
from services.emergency.domain.common import Refuse
from services.emergency.domain.decide import Rules, decide
from services.emergency.domain.evolve import evolve
from services.emergency.domain.state import Case, TownState

CONFIG = load_config()
RULES = Rules(policy=CONFIG.policy, county=CONFIG.county)
QIFENG = "370321101"
TIANZHUANG = "370321102"
SIZE = 5_000_000
T0 = datetime(2026, 7, 20, 0, 0, tzinfo=UTC)  # 08:00 in Huantai

TOWN = Actor(role=Role.TOWN, org="起凤镇人民政府")
BUREAU = Actor(role=Role.EMERGENCY_BUREAU, org="桓台县应急管理局")
CIVIL = Actor(role=Role.CIVIL_AFFAIRS, org="桓台县民政局")
FINANCE = Actor(role=Role.FINANCE, org="桓台县财政局")
CLOCK = Actor(role=Role.SYSTEM, org="relief-clock")

_ids = itertools.count(1)


def rules_with_reserve(size_fen: int) -> Rules:
    """The county's rules with every town's reserve (R4) set to `size_fen`: a small
    reserve reaches escalation to the county fund and the reserve-low alert in a few steps."""
    towns = tuple(t.model_copy(update={"reserve_fen": size_fen}) for t in CONFIG.county.towns)
    return Rules(policy=CONFIG.policy, county=CONFIG.county.model_copy(update={"towns": towns}))


def hh(n: int) -> str:
    """A household_ref (the keyed hash the intake makes of an ID number)."""
    return f"h_{n:032x}"


def env(town: str, corr: str, at: datetime, actor: Actor) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=next(_ids)),
        "occurred_at": at,
        "recorded_at": at,
        "town": town,
        "actor": actor,
        "correlation_id": corr,
    }


def incident(inc: str, at: datetime = T0, town: str = QIFENG) -> i.IncidentReported:
    return i.IncidentReported(
        **env(town, inc, at, BUREAU),
        incident_id=inc,
        kind=i.IncidentKind.NATURAL_DISASTER,
        disaster_subtype=i.DisasterSubtype.FLOOD,
        household_refs=(hh(1), hh(2)),
    )


def urgent(
    case: str,
    amount_fen: int = 80_000,
    at: datetime = T0,
    household: int = 1,
    inc: str | None = "flood-0720",
    town: str = QIFENG,
    category: i.ReliefCategory = i.ReliefCategory.EMERGENCY,
    **more: Any,
) -> i.ReliefRequested:
    return i.ReliefRequested(
        **env(town, case, at, TOWN),
        urgency=i.Urgency.URGENT,
        category=category,
        household_ref=hh(household),
        incident_id=inc,
        requested_fen=amount_fen,
        reason="房屋进水，生活用品损毁",
        **more,
    )


def expenditure(
    case: str,
    amount_fen: int,
    category: i.ReliefCategory,
    at: datetime = T0,
    household: int = 7,
    actor: Actor = CIVIL,
    **more: Any,
) -> i.ReliefRequested:
    return i.ReliefRequested(
        **env(QIFENG, case, at, actor),
        urgency=i.Urgency.EXPENDITURE,
        category=category,
        household_ref=hh(household),
        requested_fen=amount_fen,
        reason="大病医疗支出过大",
        **more,
    )


def paid(case: str, amount_fen: int, at: datetime, town: str = QIFENG) -> i.PaymentConfirmed:
    return i.PaymentConfirmed(
        **env(town, case, at, TOWN), amount_fen=amount_fen, bank_reference=f"BANK-{case}"
    )


def cancelled(case: str, at: datetime) -> i.AdvanceCancelled:
    return i.AdvanceCancelled(**env(QIFENG, case, at, TOWN), reason="家属已获保险赔付")


def paperwork(case: str, at: datetime) -> i.PaperworkCompleted:
    return i.PaperworkCompleted(**env(QIFENG, case, at, TOWN))


def reviewed(case: str, at: datetime, outcome: i.ReviewOutcome, **more: Any) -> i.CaseReviewed:
    return i.CaseReviewed(**env(QIFENG, case, at, CIVIL), outcome=outcome, **more)


def deliberated(case: str, at: datetime, **more: Any) -> i.DeliberationDecided:
    return i.DeliberationDecided(
        **env(QIFENG, case, at, CIVIL), reasons="一事一议：家庭重大困难", **more
    )


def replenished(amount_fen: int, at: datetime, town: str = QIFENG) -> i.ReserveReplenished:
    return i.ReserveReplenished(**env(town, f"reserve:{town}", at, FINANCE), amount_fen=amount_fen)


def tick(at: datetime, partition: int = 0) -> i.ClockTick:
    return i.ClockTick(**env("__clock__", f"clock-p{partition}", at, CLOCK), partition=partition)


@dataclass
class Town:
    """The county's stored state (a dict standing for the worker's table) driven through
    `decide`, keeping every output in order. `code` is the town the properties look at.

    As in the running service, a request passes the county's claims stage first
    (`claims.check`, its own store: `claims_store`) and reaches its town with the claim;
    the releases the towns send back are applied to the stage and kept in
    `claim_outputs`, not among the records a call returns (they are not decisions)."""

    code: str = QIFENG
    store: dict[str, Any] = field(default_factory=dict)
    offset: int = 0
    outputs: list[Output] = field(default_factory=list)
    # the same state rebuilt by folding the outputs (and the incident facts) with `evolve`
    rebuilt: dict[str, Any] = field(default_factory=dict)
    check_rebuild: bool = True  # after every record: the fold equals what decide left
    rules: Rules = RULES  # e.g. `rules_with_reserve(...)`: small reserves reach escalation
    _facts_seen: set[str] = field(default_factory=set)
    claims_store: dict[str, Any] = field(default_factory=dict)
    claim_outputs: list[BaseModel] = field(default_factory=list)
    with_claims: bool = True  # False: straight to the town, as records written before it

    def claim(self, record: i.ReliefRequested) -> i.ReliefRequested | RejectedRecord:
        """The claims stage: the request as it is forwarded, or its dead letter."""
        book = claims.ClaimsBook(self.claims_store.get)
        book.begin()
        try:
            verdict = claims.check(book, record, RULES.county)
        except Refuse as exc:
            book.rollback()
            return RejectedRecord.of(topics.CLAIMS, 0, self.offset, str(exc), None)
        book.commit()
        self._store(self.claims_store, book)
        return claims.forwarded(record, verdict)

    def release(self, released: ClaimReleased) -> None:
        book = claims.ClaimsBook(self.claims_store.get)
        claims.release(book, released, released.released_at)
        self._store(self.claims_store, book)

    @staticmethod
    def _store(store: dict[str, Any], book: Book) -> None:
        for key, value in book.changes():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

    def __call__(self, record: Record) -> list[BaseModel]:
        if self.with_claims and isinstance(record, i.ReliefRequested) and record.claim is None:
            claimed = self.claim(record)
            if isinstance(claimed, RejectedRecord):
                self.offset += 1
                self.outputs.append(to_output(claimed))
                return [claimed]
            record = claimed
        if isinstance(record, i.ClockTick):
            towns = sorted({k.split("/")[1] for k in self.store if k.startswith("t/")})
        else:
            towns = [record.town]
        outs: list[Output] = []
        if isinstance(record, i.ClockTick):  # the wheel as the tick found it (`_tick_rebuilt`)
            wheel = {k: v for k, v in self.store.items() if k.startswith("w/")}
            clocks = {
                k: (v.get("clock"), v.get("wheel_minute"))
                for k, v in self.store.items()
                if k.startswith("t/")
            }
        for town in towns:
            book = Book(town, self.store.get)
            verdict = decide(book, record, self.rules)
            for key, value in book.changes():
                if value is None:
                    self.store.pop(key, None)
                else:
                    self.store[key] = value
            for r in verdict.records:
                if isinstance(r, ClaimReleased):
                    self.claim_outputs.append(r)
                    self.release(r)
                else:
                    outs.append(to_output(r))
            if verdict.refused is not None:
                outs.append(rejected_record(topics.INTAKE, 0, self.offset, verdict.refused, None))
        self.offset += 1
        self.outputs.extend(outs)
        self._fold(record, [o.record for o in outs])
        if isinstance(record, i.ClockTick):
            self._tick_rebuilt(record, wheel, clocks)
        if self.check_rebuild:
            assert self.business() == self.rebuilt_snapshot(), f"rebuilt differs after {record}"
        return [o.record for o in outs]

    def _fold(self, record: Record, outs: list[BaseModel]) -> None:
        events: list[BaseModel] = [o for o in outs if not isinstance(o, RejectedRecord)]
        refused = len(events) < len(outs)
        facts = (
            i.IncidentReported,
            i.IncidentClosed,
            i.EmergencyPeriodDeclared,
            i.EmergencyPeriodEnded,
        )
        if isinstance(record, facts) and not refused and not self._repeated(record):
            events.append(record)  # a fact the bureau reported, not a decision
        for event in events:
            town = getattr(event, "town", None)
            if town is None or town == "__clock__":
                continue
            book = Book(town, self.rebuilt.get)
            evolve(book, event, self.rules)
            for key, value in book.changes():
                if value is None:
                    self.rebuilt.pop(key, None)
                else:
                    self.rebuilt[key] = value

    def _tick_rebuilt(
        self,
        tick: i.ClockTick,
        wheel: dict[str, Any],
        clocks: dict[str, tuple[Any, Any]],
    ) -> None:
        """The rebuilt state gets the ticks too, as a worker rebuilt from the decisions
        would: having folded what the tick decided, the tick finds nothing more to decide
        there, and does only its housekeeping (marks whose retention ran out leave).

        It ticks on the wheel the live tick walked (the wheel is not rebuilt exactly: a
        rebuilt one may hold references the live one has passed, and a tick that walks at
        most a month at a time would then reach a case sooner); what is compared is the
        business state, not the wheel."""
        for key in [k for k in self.rebuilt if k.startswith("w/")]:
            del self.rebuilt[key]
        self.rebuilt.update(copy.deepcopy(wheel))
        for key, (clock, minute) in clocks.items():
            if key in self.rebuilt:
                self.rebuilt[key] = {**self.rebuilt[key], "clock": clock, "wheel_minute": minute}
        towns = sorted({k.split("/")[1] for k in self.rebuilt if k.startswith("t/")})
        for town in towns:
            book = Book(town, self.rebuilt.get)
            verdict = decide(book, tick, self.rules)
            assert verdict.records == [], f"a tick decided again on the rebuilt state: {verdict}"
            self._store(self.rebuilt, book)

    def _repeated(self, record: Record) -> bool:
        # a fact applied once by its event id (decide's applied marks): a retry is no fact
        seen = str(record.event_id) in self._facts_seen
        self._facts_seen.add(str(record.event_id))
        return seen

    def rebuilt_snapshot(self) -> dict[str, Any]:
        return _business(self.rebuilt)

    def run(self, records: Iterable[Record]) -> list[BaseModel]:
        return [r for rec in records for r in self(rec)]

    def book(self, town: str | None = None) -> Book:
        return Book(town or self.code, self.store.get)

    @property
    def state(self) -> TownState | None:
        return self.book().state

    @property
    def s(self) -> TownState:
        return self.book().s

    def case(self, case_id: str) -> Case | None:
        return self.book().case(case_id)

    def open_case(self, case_id: str) -> Case:
        case = self.case(case_id)
        assert case is not None, f"no open case {case_id}"
        return case

    def cases(self) -> dict[str, Case]:
        """Every open case of the town (a scan: for tests only; the rules never scan)."""
        prefix = f"c/{self.code}/"
        return {
            k[len(prefix) :]: Case.model_validate(v)
            for k, v in self.store.items()
            if k.startswith(prefix)
        }

    def refused(self, record: Record) -> str:
        """`record` is a dead letter and the state is as it was: the reason given."""
        before = self.snapshot()
        [dead] = self(record)
        assert isinstance(dead, RejectedRecord), dead
        assert self.snapshot() == before
        return dead.reason

    def snapshot(self) -> dict[str, Any]:
        """What the rules decide from, compared before and after a refused or repeated
        command: the town's figures (less the clock, which every record moves), the open
        cases, the grants and the incidents. Not compared: the marks of applied event ids,
        finished and refused cases, and the wheel that drops them later."""
        snap = copy.deepcopy({k: v for k, v in self.store.items() if k[0] in "tcgi"})
        for key, value in snap.items():
            if key.startswith("t/"):
                value.pop("clock", None)
        return snap

    def business(self) -> dict[str, Any]:
        return _business(self.store)

    def records(self) -> list[BaseModel]:
        return [o.record for o in self.outputs]

    def of(self, kind: type[BaseModel]) -> list[Any]:
        return [r for r in self.records() if isinstance(r, kind)]

    def balances(self) -> dict[str, int]:
        """Every account's balance on its normal side, folded from the postings emitted."""
        totals: dict[str, int] = defaultdict(int)
        for p in self.of(Posting):
            for line in p.lines:
                sign = 1 if line.side is Side.DEBIT else -1
                totals[line.account] += sign * line.amount_fen
        return {
            acct: (v if NORMAL_SIDE[parse_account(acct)[0]] is Side.DEBIT else -v)
            for acct, v in totals.items()
        }


def _business(store: dict[str, Any]) -> dict[str, Any]:
    """The state `evolve` rebuilds: towns (less their clock and wheel position), open
    cases, grants, incidents and finished cases; not the applied ids or the wheel."""
    snap = copy.deepcopy({k: v for k, v in store.items() if k[0] in "tcgid"})
    for key, value in snap.items():
        if key.startswith("t/"):
            value.pop("clock", None)
            value.pop("wheel_minute", None)
    return snap


def flooded() -> Town:
    """Qifeng with the flood reported: the town most stories start from."""
    town = Town()
    town(incident("flood-0720"))
    return town


def types(records: Iterable[BaseModel]) -> list[str]:
    return [type(r).__name__ for r in records]


def hours(h: float) -> timedelta:
    return timedelta(hours=h)


__all__ = ["d", "i"]
