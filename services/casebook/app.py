"""Composition root of the casebook: settings, the PostgreSQL store, the Kafka consumer,
the progress watcher and the metrics of the `run` process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relief_platform.metrics_access import serve_metrics
from relief_platform.positioned import shard_of
from schemas.envelope import CST, to_cst
from schemas.policy import load_config
from schemas.workdays import WorkingCalendar, load_calendar
from services.casebook.adapters import postgres
from services.casebook.adapters.kafka import CasebookConsumer, Counts, ProgressWatcher
from services.casebook.adapters.postgres import RetryPolicy, Stored
from services.casebook.domain.disclosure import overdue
from services.casebook.settings import CasebookSettings

log = logging.getLogger("relief.casebook")


class RunMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "relief_casebook_decisions", "Decisions folded into the casebook", registry=r
        )
        self.duplicates = Counter(
            "relief_casebook_duplicates",
            "Decisions read again (a re-sent batch of the processor): stored once",
            registry=r,
        )
        self.submissions = Counter(
            "relief_casebook_submissions", "Intake records read as submissions", registry=r
        )
        self.rejections = Counter(
            "relief_casebook_rejections", "Dead letters of intake records read", registry=r
        )
        self.batches = Counter("relief_casebook_batches", "Batches committed", registry=r)
        # section 二: what departments pushed, and civil affairs' follow-ups of it
        self.hardship_rows = Counter(
            "relief_casebook_hardship_rows", "Rows of departments' hardship lists", registry=r
        )
        self.follow_ups = Counter(
            "relief_casebook_hardship_follow_ups",
            "Follow-ups of hardship rows: kept, or refused (no such row, or decided before)",
            ["result"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "relief_casebook_batch_seconds",
            "PostgreSQL transaction of one batch (rows and positions)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )

        # P7: expenditure-type cases past their publish-by date and not published
        self.disclosure_overdue = Gauge(
            "relief_casebook_disclosure_overdue_cases",
            "Approved expenditure-type cases past their publish-by date (approval + N "
            "working days, P7) and not published, by town",
            ["town"],
            registry=r,
        )
        self.disclosure_undated = Gauge(
            "relief_casebook_disclosure_undated_cases",
            "Unpublished approved expenditure-type cases whose publish-by date the "
            "working-day calendar does not cover, by town",
            ["town"],
            registry=r,
        )
        self.calendar_until = Gauge(
            "relief_casebook_workdays_calendar_until_timestamp_seconds",
            "The end (CST midnight after its last day) of the working-day calendar",
            registry=r,
        )

    def observe(self, stored: Stored, seconds: float) -> None:
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.decisions.inc(stored.decisions)
        self.duplicates.inc(stored.duplicates)
        self.submissions.inc(stored.submissions)
        self.rejections.inc(stored.rejections)
        self.hardship_rows.inc(stored.hardship_rows)
        self.follow_ups.labels("kept").inc(stored.follow_ups)
        self.follow_ups.labels("refused").inc(stored.follow_ups_refused)


class DisclosureWatcher:
    """Recomputes the P7 gauges every `interval_s`: today is the wall clock's date in
    CST (an observation for an alert, not a rule: nothing is decided on it)."""

    def __init__(
        self,
        pool: postgres.Pool,
        metrics: RunMetrics,
        settings: CasebookSettings,
    ) -> None:
        config = load_config(settings.policy_file)
        self.pool = pool
        self.metrics = metrics
        self.towns = config.county.codes()
        self.working_days = config.policy.disclosure_working_days
        self.calendar: WorkingCalendar = load_calendar(settings.workdays_file)
        self.interval_s = settings.casebook_disclosure_interval_s
        end = datetime.combine(self.calendar.last_day, time(0), CST).timestamp() + 86_400
        metrics.calendar_until.set(end)

    async def step(self, now: datetime | None = None) -> None:
        today = to_cst(now or datetime.now(UTC)).date()
        pending = await postgres.unpublished_approvals(self.pool)
        for town in sorted(set(self.towns) | set(pending)):
            found = overdue(pending.get(town, []), self.calendar, self.working_days, today)
            self.metrics.disclosure_overdue.labels(town).set(found.overdue)
            self.metrics.disclosure_undated.labels(town).set(found.undated)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: next time; the gauges stay
                log.info("disclosure gauges not recomputed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


def retry_policy(settings: CasebookSettings) -> RetryPolicy:
    return RetryPolicy(
        attempts_max=settings.casebook_pg_retry_attempts,
        backoff_base_s=settings.casebook_pg_retry_base_s,
        backoff_max_s=settings.casebook_pg_retry_max_s,
    )


def consumer_for(
    settings: CasebookSettings, pool: postgres.Pool, metrics: RunMetrics | None = None
) -> CasebookConsumer:
    return CasebookConsumer(
        postgres.CasebookStore(pool, settings.seal_sealer(), retry_policy(settings)),
        bootstrap=settings.kafka_bootstrap,
        intake_topic=settings.intake_topic,
        decisions_topic=settings.decisions_topic,
        rejected_topic=settings.rejected_topic,
        batch_max=settings.casebook_batch_max,
        poll_timeout_ms=settings.casebook_poll_timeout_ms,
        on_batch=None if metrics is None else metrics.observe,
        shard=shard_of(settings.casebook_shard),
    )


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def run(settings: CasebookSettings, stop: asyncio.Event | None = None) -> Counts:
    """Keep the casebook until `stop` (or SIGTERM / SIGINT)."""
    stop = stop or asyncio.Event()
    _on_signals(stop)
    metrics = RunMetrics()
    serve_metrics(
        settings.casebook_metrics_port, settings.metrics_host, metrics.registry, "casebook"
    )
    pool = await postgres.connect_pool(settings.database_url, settings.casebook_pool_max)
    try:
        consumer = consumer_for(settings, pool, metrics)
        tasks = [asyncio.create_task(consumer.run(stop))]
        if settings.casebook_progress_interval_s > 0:
            watcher = ProgressWatcher(
                consumer,
                group=settings.emergency_app_id,
                interval_s=settings.casebook_progress_interval_s,
                timeout_s=settings.casebook_kafka_timeout_s,
            )
            tasks.append(asyncio.create_task(watcher.run(stop)))
        shard = shard_of(settings.casebook_shard)
        # the disclosure gauges are the whole casebook's: one shard keeps them
        if settings.casebook_disclosure_interval_s > 0 and (shard is None or shard[0] == 0):
            gauges = DisclosureWatcher(pool, metrics, settings)
            tasks.append(asyncio.create_task(gauges.run(stop)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a consumer that failed fails the process: restarted
        finally:
            stop.set()
            for task in tasks:
                if not task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, 30)
        log.info("stopped: %s", consumer.counts)
        return consumer.counts
    finally:
        await pool.close()


async def rebuild(settings: CasebookSettings, stop: asyncio.Event | None = None) -> Counts:
    """Drop the casebook's schema, create it again and replay the topics up to their ends
    as they are now. A `run` that is running meanwhile fails on the missing schema and is
    restarted; the writers' lock keeps the two from folding the same decision twice."""
    stop = stop or asyncio.Event()
    _on_signals(stop)
    await postgres.drop(settings.database_owner_url)
    await postgres.migrate(settings.database_owner_url, settings.casebook_app_role)
    pool = await postgres.connect_pool(settings.database_url, settings.casebook_pool_max)
    try:
        consumer = consumer_for(settings, pool)
        await consumer.run(stop, until_caught_up=True)
        return consumer.counts
    finally:
        await pool.close()
