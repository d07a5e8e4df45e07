"""Prometheus metrics of the emergency processor (`/metrics` on RELIEF_EMERGENCY_METRICS_PORT).

Two sources, both already in hand after a batch has been acknowledged by Kafka:

- the **outputs** (decisions, postings, dead letters) -> counters and histograms;
- the **town states** the engine is about to store -> gauges (each town's reserve, and
  its open work as the rules count it: unpaid, warned and overdue urgent cases,
  deliberations and approvals pending).

Money is integer fen everywhere in the service; a gauge shows yuan (fen / 100 as a float)
because Prometheus and Grafana are for people looking, never for arithmetic that books
anything (docs/design.md "money is integer fen ... yuan only when shown to a person"). A `_fen`
twin of each reserve gauge keeps the exact figure.

Label sets are bounded (docs/design.md never a household or case id as a label): town codes
(configuration), decision types, refusal reasons, deadline kinds, posting kinds, topics and
a small set of dead-letter reason codes. Free text never becomes a label.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from relief_platform.metrics_access import serve_metrics
from schemas.decisions import (
    AdvanceGranted,
    AdvanceRefused,
    DeadlineBreached,
    DeadlineMet,
    DeadlineWarned,
    DeliberationRequired,
    EscalatedToCountyFund,
    RecoveryClaimed,
    ReserveLow,
)
from schemas.postings import Posting, PostingKind
from schemas.topics import RejectedRecord
from services.emergency.adapters.outputs import Output
from services.emergency.domain.book import Book
from services.emergency.domain.state import TownState

log = logging.getLogger("relief.emergency.metrics")

FEN_PER_YUAN = 100.0
# Buckets around the 24-hour line (R5): minutes for the advance itself, hours up to and
# past the deadline for the payment; 86,400 s is a bucket edge so "paid within 24 h" is
# exactly `le="86400"`.
_H = 3_600.0
TIME_TO_ADVANCE_BUCKETS_S = (1, 5, 30, 60, 300, 900, _H, 4 * _H, 12 * _H, 24 * _H, 48 * _H)
TIME_TO_PAYMENT_BUCKETS_S = (
    0.5 * _H, _H, 2 * _H, 4 * _H, 8 * _H, 12 * _H, 18 * _H, 20 * _H, 22 * _H,
    24 * _H, 26 * _H, 30 * _H, 36 * _H, 48 * _H, 72 * _H, 120 * _H,
)  # fmt: skip
_PAYMENT_KINDS = (PostingKind.PAYMENT_CONFIRMED.value, PostingKind.ESCALATED_PAID.value)


REJECTION_CODES = ("unknown_town", "key_mismatch", "not_applicable", "undecodable", "invalid")


def rejection_code(reason: str) -> str:
    """A dead letter's free-text reason as one of a few codes (a bounded label)."""
    text = reason.lower()
    if text.startswith("unknown town"):
        return "unknown_town"
    if text.startswith("key "):
        return "key_mismatch"
    if " for case " in text:
        return "not_applicable"  # a well-formed record the town's state cannot take
    if "json" in text or "decode" in text or "unknown record type" in text:
        return "undecodable"
    return "invalid"


def _keep_children(metric: Any) -> None:
    """Remember a labelled metric's children: prometheus_client's `labels()` checks its
    arguments and takes a lock on every call, which cost the worker more than the
    counting (a few calls a decision). The label sets are bounded (see above), and so is
    the memo."""
    metric.labels = functools.lru_cache(maxsize=8_192)(metric.labels)


class ProcessorMetrics:
    """Every metric of the processor, on a registry of its own (tests get a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._now = datetime.now(UTC)
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        town = ["town"]

        def gauge(name: str, doc: str, labels: Sequence[str] = town) -> Gauge:
            return Gauge(name, doc, list(labels), registry=r)

        # ------------------------------------------------ per-town gauges (from state)
        self.reserve_yuan = {
            part: gauge(f"relief_reserve_{part}_yuan", f"Town reserve, {part} (yuan)")
            for part in ("size", "available", "held", "paid", "replenished")
        }
        self.reserve_fen = {
            part: gauge(f"relief_reserve_{part}_fen", f"Town reserve, {part} (fen, exact)")
            for part in ("size", "available", "held", "paid", "replenished")
        }
        self.county_held_yuan = gauge(
            "relief_county_held_yuan", "County fund held for escalated advances of the town"
        )
        self.county_paid_yuan = gauge(
            "relief_county_paid_yuan", "Relief of the town paid from the county fund"
        )
        self.open_urgent = gauge(
            "relief_urgent_cases_open", "Urgent cases advanced and not yet paid"
        )
        self.due_soon = gauge(
            "relief_urgent_cases_due_soon",
            "Unpaid urgent cases warned of their 24-hour deadline (R5 warning lead, event time)",
        )
        self.overdue = gauge(
            "relief_urgent_cases_overdue", "Unpaid urgent cases past their 24-hour deadline"
        )
        self.deliberations_pending = gauge(
            "relief_deliberations_pending", "Cases above the cap awaiting deliberation (R6)"
        )
        self.approvals_pending = gauge(
            "relief_approvals_pending", "Expenditure cases awaiting county approval (P2)"
        )
        self.reserve_low = gauge(
            "relief_reserve_low", "1 while the town's reserve is below its low threshold"
        )
        self.town_clock = gauge(
            "relief_town_clock_timestamp_seconds", "Latest broker time seen for the town"
        )
        # The clock's heartbeat as the processor sees it (docs/design.md "time is an
        # event"): a town's own requests move its clock too, so only ticks tell that the
        # clock service is alive; alerted on by ReliefClockStale.
        self.tick_clock = Gauge(
            "relief_clock_tick_timestamp_seconds",
            "Broker time (LogAppendTime) of the latest clock tick decided, by intake partition",
            ["partition"],
            registry=r,
        )
        self._ticks: dict[int, float] = {}

        # ------------------------------------------------ counters (from outputs)
        self.decisions = Counter(
            "relief_decisions", "Decisions emitted, by type", ["town", "type"], registry=r
        )
        self.advances = Counter(
            "relief_advances_granted", "Advances granted (R5)", ["town", "funded_by"], registry=r
        )
        self.advanced_yuan = Counter(
            "relief_advances_granted_yuan", "Yuan granted as advances", ["town"], registry=r
        )
        self.refusals = Counter(
            "relief_advances_refused", "Advances refused, by reason", ["town", "reason"],
            registry=r,
        )  # fmt: skip
        self.escalations = Counter(
            "relief_escalations", "Advances escalated to the county fund", ["town"], registry=r
        )
        self.escalated_yuan = Counter(
            "relief_escalated_yuan", "Yuan of advances escalated to the county fund", ["town"],
            registry=r,
        )  # fmt: skip
        self.deadlines = Counter(
            "relief_deadlines",
            "Deadlines warned, met, breached (relief_24h: R5, paperwork_5d: P1)",
            ["town", "deadline", "outcome"],
            registry=r,
        )
        self.deliberations = Counter(
            "relief_deliberations_required", "Cases sent to deliberation", ["town"], registry=r
        )
        self.recoveries = Counter(
            "relief_recoveries", "Recoveries claimed (P8)", ["town"], registry=r
        )
        self.recovered_yuan = Counter(
            "relief_recoveries_yuan", "Yuan claimed back, fines included", ["town"], registry=r
        )
        self.reserve_low_events = Counter(
            "relief_reserve_low_alerts", "Reserve-low decisions (R4+P11)", ["town"], registry=r
        )
        self.postings = Counter(
            "relief_postings_produced", "Postings produced, by kind", ["kind"], registry=r
        )
        self.paid_yuan = Counter(
            "relief_paid_yuan", "Relief paid to households (yuan)", ["town"], registry=r
        )
        self.records = Counter(
            "relief_records_produced", "Records produced, by topic", ["topic"], registry=r
        )
        self.rejected = Counter(
            "relief_rejected_records",
            "Dead letters produced, by source topic and reason code",
            ["source_topic", "reason"],
            registry=r,
        )
        self.batches = Counter(
            "relief_processor_batches", "Batches decided and acknowledged", registry=r
        )
        self.batch_stage = Histogram(
            "relief_processor_batch_stage_seconds",
            "Time of each stage of a batch: decide, send (outputs acknowledged), store "
            "(journal and state), flush (changelog acknowledged)",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.consumed = Counter(
            "relief_processor_records_consumed", "Intake records decided", registry=r
        )
        self.time_to_advance = Histogram(
            "relief_time_to_advance_seconds",
            "From the request's broker stamp to its advance acknowledged by Kafka (wall clock)",
            ["town"],
            buckets=TIME_TO_ADVANCE_BUCKETS_S,
            registry=r,
        )
        self.time_to_payment = Histogram(
            "relief_time_to_payment_seconds",
            "From the request's broker stamp to the confirmed payment (event time)",
            ["town"],
            buckets=TIME_TO_PAYMENT_BUCKETS_S,
            registry=r,
        )
        for value in list(vars(self).values()):
            for metric in value.values() if isinstance(value, dict) else (value,):
                if getattr(metric, "_labelnames", None):
                    _keep_children(metric)

    def init_towns(self, towns: Iterable[str]) -> None:
        """Create every labelled counter at 0 for the configured towns, so that the first
        breach or refusal is an *increase* Prometheus can see (a series born at 1 is not)."""
        from schemas.decisions import DeadlineKind, FundedBy, RefusalReason
        from schemas.topics import INTAKE

        for town in towns:
            for funded in FundedBy:
                self.advances.labels(town, funded.value)
            for reason in RefusalReason:
                self.refusals.labels(town, reason.value)
            for kind in DeadlineKind:
                for outcome in ("warned", "met", "breached"):
                    self.deadlines.labels(town, kind.value, outcome)
            for counter in (
                self.advanced_yuan, self.escalations, self.escalated_yuan, self.deliberations,
                self.recoveries, self.recovered_yuan, self.reserve_low_events, self.paid_yuan,
            ):  # fmt: skip
                counter.labels(town)
        for code in REJECTION_CODES:
            self.rejected.labels(INTAKE, code)

    # ---------------------------------------------------------------- feeding

    def observe(
        self,
        outputs: Sequence[Output],
        books: Mapping[str, Book],
        *,
        consumed: int | None = None,
        now: datetime | None = None,
        ticks: Mapping[int, datetime] | None = None,
    ) -> None:
        """Account for one acknowledged batch: its outputs, then the towns' new states
        (as the books the batch was decided in hold them), and the broker time of the
        latest tick it held in each partition (`ticks`).
        `now` is when Kafka acknowledged the outputs (the advance exists from then on)."""
        self._now = now or datetime.now(UTC)
        self.batches.inc()
        for partition, stamp in (ticks or {}).items():
            # never backwards: a partition read again after a restart replays old ticks
            latest = max(stamp.timestamp(), self._ticks.get(partition, 0.0))
            self._ticks[partition] = latest
            self.tick_clock.labels(str(partition)).set(latest)
        if consumed:
            self.consumed.inc(consumed)
        for out in outputs:
            self.records.labels(out.topic).inc()
            self._record(out.record, books)
        for book in books.values():
            if book.state is not None:
                self.set_town(book.state)

    def _record(self, record: BaseModel, books: Mapping[str, Book]) -> None:
        if isinstance(record, RejectedRecord):
            self.rejected.labels(record.source_topic, rejection_code(record.reason)).inc()
            return
        if isinstance(record, Posting):
            self.postings.labels(record.kind).inc()
            if record.kind in _PAYMENT_KINDS:
                self._payment(record, books)
            return
        town = getattr(record, "town", None)
        if not isinstance(town, str):
            return
        self.decisions.labels(town, type(record).__name__).inc()
        match record:
            case AdvanceGranted():
                self.advances.labels(town, record.funded_by.value).inc()
                self.advanced_yuan.labels(town).inc(record.amount_fen / FEN_PER_YUAN)
                received = record.figures.get("received_at")
                if isinstance(received, str):
                    waited = self._now - datetime.fromisoformat(received)
                    self.time_to_advance.labels(town).observe(max(waited.total_seconds(), 0.0))
            case AdvanceRefused():
                self.refusals.labels(town, record.reason.value).inc()
            case EscalatedToCountyFund():
                self.escalations.labels(town).inc()
                self.escalated_yuan.labels(town).inc(record.amount_fen / FEN_PER_YUAN)
            case DeadlineWarned() | DeadlineMet() | DeadlineBreached():
                outcome = {
                    DeadlineWarned: "warned",
                    DeadlineMet: "met",
                    DeadlineBreached: "breached",
                }[type(record)]
                self.deadlines.labels(town, record.deadline.value, outcome).inc()
            case DeliberationRequired():
                self.deliberations.labels(town).inc()
            case RecoveryClaimed():
                self.recoveries.labels(town).inc()
                self.recovered_yuan.labels(town).inc(
                    (record.amount_fen + record.fine_fen) / FEN_PER_YUAN
                )
            case ReserveLow():
                self.reserve_low_events.labels(town).inc()
            case _:
                pass

    def _payment(self, posting: Posting, books: Mapping[str, Book]) -> None:
        town = posting.town
        paid_fen = sum(
            ln.amount_fen
            for ln in posting.lines
            if ln.side == "debit" and ln.account.startswith("relief_paid:")
        )
        self.paid_yuan.labels(town).inc(paid_fen / FEN_PER_YUAN)
        book = books.get(town)
        case = None if book is None else book.case(posting.correlation_id)
        if case is not None and case.relief_deadline is not None:
            # R5: request (broker stamp) -> payment confirmed (its broker stamp)
            waited = posting.occurred_at - case.received_at
            self.time_to_payment.labels(town).observe(max(waited.total_seconds(), 0.0))

    def set_town(self, state: TownState) -> None:
        town = state.town
        r = state.reserve
        for part, fen in (
            ("size", r.size_fen),
            ("available", r.available_fen),
            ("held", r.held_fen),
            ("paid", r.paid_fen),
            ("replenished", r.replenished_fen),
        ):
            self.reserve_fen[part].labels(town).set(fen)
            self.reserve_yuan[part].labels(town).set(fen / FEN_PER_YUAN)
        self.county_held_yuan.labels(town).set(state.county_held_fen / FEN_PER_YUAN)
        self.county_paid_yuan.labels(town).set(state.county_paid_fen / FEN_PER_YUAN)
        self.reserve_low.labels(town).set(1 if state.low_alerted else 0)
        if state.clock is not None:
            self.town_clock.labels(town).set(state.clock.timestamp())
        # counted by the rules as cases come and go: no scan of the open cases
        counts = state.counts
        self.open_urgent.labels(town).set(counts.urgent_unpaid)
        self.due_soon.labels(town).set(counts.urgent_warned)
        self.overdue.labels(town).set(counts.urgent_overdue)
        self.deliberations_pending.labels(town).set(counts.in_deliberation)
        self.approvals_pending.labels(town).set(counts.awaiting_approval)


# ---------------------------------------------------------------- the process's instance

_default: ProcessorMetrics | None = None
_served_on: int | None = None


def default() -> ProcessorMetrics:
    """The worker's metrics, on the process-wide registry that `/metrics` serves."""
    global _default
    if _default is None:
        _default = ProcessorMetrics(REGISTRY)
    return _default


def observe(
    outputs: Sequence[Output],
    books: Mapping[str, Book],
    *,
    consumed: int | None = None,
    ticks: Mapping[int, datetime] | None = None,
) -> None:
    try:
        default().observe(outputs, books, consumed=consumed, ticks=ticks)
    except Exception:  # metrics never stop relief; the batch is already acknowledged
        log.exception("metrics of a batch could not be recorded")


def stage_timer(stage: str) -> Any:
    """Time one stage of a batch (a context manager)."""
    return default().batch_stage.labels(stage).time()


def serve(
    port: int,
    towns: Iterable[str] = (),
    host: str = "127.0.0.1",
) -> None:
    """Start the `/metrics` endpoint once per process; 0 turns it off. A port already
    taken (a second worker on the same machine) is logged, not fatal: metrics never stop
    relief."""
    global _served_on
    if port == 0 or _served_on is not None:
        return
    default().init_towns(towns)
    if not serve_metrics(port, host, what="the processor"):
        return
    _served_on = port
    log.info("metrics on http://%s:%d/metrics", host, port)
