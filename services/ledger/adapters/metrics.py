"""Prometheus metrics of the ledger, served on the dashboard's `/metrics`.

The ledger is append-only, so its own tables are exact counters: postings by kind and
reserve-guard alerts are read from PostgreSQL (whatever number of ledger workers wrote
them), balances are the book's, and `verify` reports on the hash chain. Consumer lag per
partition compares Kafka's end offsets with the positions the ledger stored with its
postings, and with the processor's committed group offsets.

Yuan gauges are fen / 100 as a float: for people looking, never for booking (docs/design.md).
Labels are bounded: towns, posting kinds, logical stream names, partitions, operations.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("relief.ledger.metrics")

FEN_PER_YUAN = 100.0
# PostgreSQL transactions: a batch commit of up to 20,000 postings, a snapshot, a verify.
PG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _BookCounters(Collector):
    """Counters whose value is a count of rows in the append-only book."""

    def __init__(self) -> None:
        self.postings: dict[str, int] = {}
        self.alerts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        postings = CounterMetricFamily(
            "relief_ledger_postings", "Postings stored in the ledger, by kind", labels=["kind"]
        )
        for kind, n in sorted(self.postings.items()):
            postings.add_metric([kind], n)
        yield postings
        alerts = CounterMetricFamily(
            "relief_ledger_alerts",
            "Postings the reserve guard refused (R4: a reserve never below zero)",
            labels=["town"],
        )
        for town, n in sorted(self.alerts.items()):
            alerts.add_metric([town], n)
        yield alerts


@dataclasses.dataclass(frozen=True)
class Lag:
    consumer: str  # "ledger" or "emergency"
    stream: str  # "postings", "intake", ...
    partition: int
    lag: int


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.book = _BookCounters()
        r.register(self.book)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("town",)) -> Gauge:
            return Gauge(name, doc, list(labels), registry=r)

        self.reserve_size = gauge("relief_ledger_reserve_size_yuan", "Configured reserve (R4)")
        self.available = gauge("relief_ledger_reserve_available_yuan", "town_reserve balance")
        self.held = gauge("relief_ledger_reserve_held_yuan", "town_reserve_held balance")
        self.paid = gauge("relief_ledger_relief_paid_yuan", "relief_paid balance")
        self.county_fund = gauge("relief_ledger_county_fund_yuan", "county_fund balance", ())
        self.county_held = gauge("relief_ledger_county_held_yuan", "county_held balance", ())
        self.entries = gauge("relief_ledger_entries", "Journal entries", ())
        self.open_advances = gauge(
            "relief_ledger_open_advances", "Urgent advances posted and not yet paid or voided"
        )
        self.open_overdue = gauge(
            "relief_ledger_open_advances_overdue",
            "Unpaid urgent advances whose 24-hour deadline was breached (R5)",
        )
        self.verify_ok = gauge("relief_ledger_verify_ok", "1: the last verify held", ())
        self.verify_at = gauge(
            "relief_ledger_verify_timestamp_seconds", "When the last verify finished", ()
        )
        self.verify_entries = gauge(
            "relief_ledger_verify_entries", "Entries the last verify checked", ()
        )
        self.verify_problems = gauge(
            "relief_ledger_verify_problems", "Disagreements the last verify found", ()
        )
        self.pg_seconds = Histogram(
            "relief_ledger_pg_transaction_seconds",
            "PostgreSQL transaction latency, by operation",
            ["operation"],
            buckets=PG_BUCKETS_S,
            registry=r,
        )
        self.batches = Counter(
            "relief_ledger_batches", "Batches the ledger consumer committed", registry=r
        )
        self.lag = gauge(
            "relief_consumer_lag",
            "Records not yet consumed, per partition",
            ("consumer", "stream", "partition"),
        )
        self.end_offset = gauge(
            "relief_kafka_end_offset",
            "Kafka's end offset (records ever produced) per partition",
            ("stream", "partition"),
        )
        self.lag_up = gauge("relief_kafka_lag_up", "1: the last lag read reached Kafka", ())
        self.clients = gauge("relief_dashboard_clients", "Dashboards connected (SSE)", ())
        self.snapshots = Counter(
            "relief_dashboard_snapshots", "Snapshots read for the dashboard", registry=r
        )
        for op in ("snapshot", "verify", "store_batch"):
            self.pg_seconds.labels(op)

    # ---------------------------------------------------------------- from a snapshot

    def observe_snapshot(self, snap: Mapping[str, Any], seconds: float) -> None:
        self.snapshots.inc()
        self.pg_seconds.labels("snapshot").observe(seconds)
        self.book.postings = dict(snap.get("kind_counts", {}))
        alerts: dict[str, int] = {}
        open_n: dict[str, int] = {}
        overdue_n: dict[str, int] = {}
        if snap.get("open_by_town"):
            # the casebook counts every open case, not only those listed on the page
            for town, counts in snap["open_by_town"].items():
                open_n[town] = counts["open"]
                overdue_n[town] = counts["breached"]
        else:
            for case in snap["open_cases"]:
                open_n[case["town"]] = open_n.get(case["town"], 0) + 1
                if case["breached"]:
                    overdue_n[case["town"]] = overdue_n.get(case["town"], 0) + 1
        for t in snap["towns"]:
            town = t["code"]
            self.reserve_size.labels(town).set(t["size"]["fen"] / FEN_PER_YUAN)
            self.available.labels(town).set(t["available"]["fen"] / FEN_PER_YUAN)
            self.held.labels(town).set(t["held"]["fen"] / FEN_PER_YUAN)
            self.paid.labels(town).set(t["paid"]["fen"] / FEN_PER_YUAN)
            self.open_advances.labels(town).set(open_n.get(town, 0))
            self.open_overdue.labels(town).set(overdue_n.get(town, 0))
            alerts[town] = int(t["alerts"])
        self.book.alerts = alerts
        self.county_fund.set(snap["county"]["fund"]["fen"] / FEN_PER_YUAN)
        self.county_held.set(snap["county"]["held"]["fen"] / FEN_PER_YUAN)
        self.entries.set(snap["entries"])

    def observe_verify(self, ok: bool, entries: int, problems: int, seconds: float) -> None:
        self.pg_seconds.labels("verify").observe(seconds)
        self.verify_ok.set(1 if ok else 0)
        self.verify_entries.set(entries)
        self.verify_problems.set(problems)
        self.verify_at.set(time.time())

    def observe_store_batch(self, seconds: float) -> None:
        """For the ledger consumer: one committed batch (postings + positions) took this."""
        self.batches.inc()
        self.pg_seconds.labels("store_batch").observe(seconds)

    def observe_lag(self, lags: list[Lag], end_offsets: Mapping[tuple[str, int], int]) -> None:
        self.lag_up.set(1)
        for item in lags:
            self.lag.labels(item.consumer, item.stream, str(item.partition)).set(item.lag)
        for (stream, partition), offset in end_offsets.items():
            self.end_offset.labels(stream, str(partition)).set(offset)

    def lag_failed(self) -> None:
        self.lag_up.set(0)


def lags_of(
    consumer: str,
    stream: str,
    end_offsets: Mapping[int, int],
    positions: Mapping[int, int],
) -> list[Lag]:
    """Per partition: end offset - the consumer's next offset (0 when it read nothing yet
    and nothing was written; the whole partition when it has no position)."""
    return [
        Lag(consumer, stream, p, max(end - positions.get(p, 0), 0))
        for p, end in sorted(end_offsets.items())
    ]
