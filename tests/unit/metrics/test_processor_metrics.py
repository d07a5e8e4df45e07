"""The processor's metrics reflect a story exactly, fed with the real rules' outputs."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry

from schemas.decisions import RefusalReason
from services.emergency.adapters.metrics import ProcessorMetrics, rejection_code
from services.emergency.domain.state import TownState
from tests.unit.emergency.builders import (
    QIFENG,
    T0,
    TIANZHUANG,
    Town,
    deliberated,
    expenditure,
    hours,
    incident,
    paid,
    tick,
    urgent,
)
from tests.unit.emergency.builders import i as intake


def _feed(metrics: ProcessorMetrics, town: Town, record: object, **kw: object) -> None:
    """One record as a batch of one: its outputs and the town's new state."""
    before = len(town.outputs)
    town(record)  # type: ignore[arg-type]
    assert town.state is not None
    metrics.observe(town.outputs[before:], {town.code: town.book()}, consumed=1, **kw)  # type: ignore[arg-type]


def value(metrics: ProcessorMetrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    assert got is not None, f"no sample {name} {labels}"
    return got


def test_three_advances_of_1000_yuan_leave_47000_available() -> None:
    m = ProcessorMetrics(CollectorRegistry())
    town = Town()
    _feed(m, town, incident("flood-0720"))
    for n in range(3):
        _feed(m, town, urgent(f"case-{n}", 100_000, household=n + 1, at=T0 + hours(1)),
              now=T0 + hours(1) + timedelta(seconds=2))  # fmt: skip
    assert value(m, "relief_reserve_available_yuan", town=QIFENG) == 47_000.0
    assert value(m, "relief_reserve_available_fen", town=QIFENG) == 4_700_000
    assert value(m, "relief_reserve_held_yuan", town=QIFENG) == 3_000.0
    assert value(m, "relief_reserve_size_yuan", town=QIFENG) == 50_000.0
    assert value(m, "relief_reserve_paid_yuan", town=QIFENG) == 0.0
    assert value(m, "relief_advances_granted_total", town=QIFENG, funded_by="town_reserve") == 3
    assert value(m, "relief_advances_granted_yuan_total", town=QIFENG) == 3_000.0
    assert value(m, "relief_decisions_total", town=QIFENG, type="AdvanceGranted") == 3
    assert value(m, "relief_urgent_cases_open", town=QIFENG) == 3
    assert value(m, "relief_urgent_cases_due_soon", town=QIFENG) == 0
    # the opening posting, then one hold per advance
    assert value(m, "relief_postings_produced_total", kind="reserve_funded") == 1
    assert value(m, "relief_postings_produced_total", kind="advance_granted") == 3
    assert value(m, "relief_records_produced_total", topic="relief.decisions.v1") == 3
    # the advance was out 2 s after the request's broker stamp
    assert value(m, "relief_time_to_advance_seconds_count", town=QIFENG) == 3
    assert value(m, "relief_time_to_advance_seconds_bucket", town=QIFENG, le="1.0") == 0
    assert value(m, "relief_time_to_advance_seconds_bucket", town=QIFENG, le="5.0") == 3
    assert value(m, "relief_processor_records_consumed_total") == 4
    # no town other than Qifeng got a label: nothing happened there
    assert (
        m.registry.get_sample_value("relief_reserve_available_yuan", {"town": TIANZHUANG}) is None
    )


def test_deadlines_payments_and_refusals_are_counted_with_bounded_labels() -> None:
    m = ProcessorMetrics(CollectorRegistry())
    town = Town()
    _feed(m, town, incident("flood-0720"))
    _feed(m, town, urgent("case-1", 80_000, household=1, at=T0))
    _feed(m, town, urgent("case-2", 50_000, household=2, at=T0))
    _feed(m, town, urgent("case-dup", 50_000, household=1, at=T0 + hours(1)))  # P6
    _feed(m, town, paid("case-1", 80_000, at=T0 + hours(3)))
    _feed(m, town, tick(T0 + hours(22)))
    assert value(m, "relief_urgent_cases_due_soon", town=QIFENG) == 1  # case-2, due at 24 h
    assert value(m, "relief_deadlines_total", town=QIFENG, deadline="relief_24h",
                 outcome="warned") == 1  # fmt: skip
    _feed(m, town, tick(T0 + hours(25)))
    assert value(m, "relief_advances_refused_total", town=QIFENG,
                 reason=RefusalReason.DUPLICATE.value) == 1  # fmt: skip
    assert value(m, "relief_deadlines_total", town=QIFENG, deadline="relief_24h",
                 outcome="met") == 1  # fmt: skip
    assert value(m, "relief_deadlines_total", town=QIFENG, deadline="relief_24h",
                 outcome="breached") == 1  # fmt: skip
    assert value(m, "relief_urgent_cases_overdue", town=QIFENG) == 1
    assert value(m, "relief_urgent_cases_due_soon", town=QIFENG) == 0
    assert value(m, "relief_paid_yuan_total", town=QIFENG) == 800.0
    assert value(m, "relief_reserve_paid_yuan", town=QIFENG) == 800.0
    # paid 3 h after the request: within the 4 h bucket, and well within 24 h
    assert value(m, "relief_time_to_payment_seconds_bucket", town=QIFENG, le="7200.0") == 0
    assert value(m, "relief_time_to_payment_seconds_bucket", town=QIFENG, le="14400.0") == 1
    assert value(m, "relief_time_to_payment_seconds_bucket", town=QIFENG, le="86400.0") == 1
    assert value(m, "relief_time_to_payment_seconds_count", town=QIFENG) == 1
    # a payment for a case the town does not know is a dead letter, counted by code only
    _feed(m, town, paid("no-such-case", 10_000, at=T0 + hours(26)))
    assert value(m, "relief_rejected_records_total", source_topic="relief.intake.v1",
                 reason="not_applicable") == 1  # fmt: skip
    for metric in m.registry.collect():
        for sample in metric.samples:
            assert not any("case" in v for v in sample.labels.values()), sample


def test_escalation_and_deliberation() -> None:
    m = ProcessorMetrics(CollectorRegistry())
    town = Town()
    _feed(m, town, incident("flood-0720"))
    for n in range(50):  # 50 x 1,000 yuan empties the 50,000-yuan reserve
        _feed(m, town, urgent(f"c-{n}", 100_000, household=n + 10, at=T0))
    assert value(m, "relief_reserve_available_yuan", town=QIFENG) == 0.0
    assert value(m, "relief_reserve_low", town=QIFENG) == 1
    assert value(m, "relief_reserve_low_alerts_total", town=QIFENG) == 1
    _feed(m, town, urgent("c-over", 100_000, household=99, at=T0))
    assert value(m, "relief_escalations_total", town=QIFENG) == 1
    assert value(m, "relief_escalated_yuan_total", town=QIFENG) == 1_000.0
    assert value(m, "relief_advances_granted_total", town=QIFENG, funded_by="county_fund") == 1
    assert value(m, "relief_county_held_yuan", town=QIFENG) == 1_000.0
    _feed(m, town, expenditure("big-1", 10_000_000, intake.ReliefCategory.SERIOUS_ILLNESS))
    assert value(m, "relief_deliberations_required_total", town=QIFENG) == 1
    assert value(m, "relief_deliberations_pending", town=QIFENG) == 1
    _feed(m, town, deliberated("big-1", T0 + hours(2), refused=True))
    assert value(m, "relief_deliberations_pending", town=QIFENG) == 0


def test_state_gauges_of_a_fresh_town() -> None:
    m = ProcessorMetrics(CollectorRegistry())
    m.set_town(TownState.new(TIANZHUANG, 5_000_000))
    assert value(m, "relief_reserve_available_yuan", town=TIANZHUANG) == 50_000.0
    assert value(m, "relief_urgent_cases_open", town=TIANZHUANG) == 0


def test_rejection_reasons_become_codes() -> None:
    assert rejection_code("unknown town '1': not in the county's configuration") == "unknown_town"
    assert rejection_code("key '370321101' is not the record's town '370321102'") == "key_mismatch"
    assert rejection_code("PaymentConfirmed for case 'x': no open case") == "not_applicable"
    assert rejection_code("not JSON: Expecting value") == "undecodable"
    assert rejection_code("something else entirely 440102199001011234") == "invalid"


def test_the_clocks_heartbeat_by_partition_never_goes_back() -> None:
    """ReliefClockStale watches the broker time of the latest tick each partition had;
    a partition read again after a restart replays older ticks, which leave it alone."""
    m = ProcessorMetrics(CollectorRegistry())
    town = Town()
    _feed(m, town, incident("flood-0720"), ticks={0: T0 + hours(1), 1: T0})
    _feed(m, town, tick(T0 + hours(2)), ticks={0: T0 + hours(2)})
    assert value(m, "relief_clock_tick_timestamp_seconds", partition="0") == (
        (T0 + hours(2)).timestamp()
    )
    _feed(m, town, tick(T0 + hours(3)), ticks={0: T0, 1: T0 + hours(3)})  # a replay of 0
    assert value(m, "relief_clock_tick_timestamp_seconds", partition="0") == (
        (T0 + hours(2)).timestamp()
    )
    assert value(m, "relief_clock_tick_timestamp_seconds", partition="1") == (
        (T0 + hours(3)).timestamp()
    )
