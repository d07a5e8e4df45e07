"""Is the processor consuming what intake accepts? A judgement over readings of offsets.

A 202 from intake means Kafka holds the record; it is a promise only while the processor
(the consumer group `RELIEF_EMERGENCY_APP_ID`) reads the intake topic. Each reading holds
the topic's end offsets and the group's committed offsets; between readings we remember
when the group last made *progress*: its committed offsets moved forward, or nothing (or
no more than `max_lag` records) waited. The clock writes a tick into every partition every
30 s, so the lag is rarely zero for long; progress is what counts.

Degraded: more than `max_lag` records wait and there has been no progress for `stall_s`
(the group never committed at all counts the same way). The first reading starts the
clock, so a processor that is just starting gets `stall_s` to commit.

Pure: the adapter (`adapters/processor.py`) reads Kafka and keeps the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Offsets:
    """One reading of the intake topic and the processor's group, by partition."""

    ends: Mapping[int, int]  # the next offset to be written
    starts: Mapping[int, int]  # the log start: where a group without a commit begins
    committed: Mapping[int, int]  # the next offset the group will read; absent: never

    def lag_by_partition(self) -> dict[int, int]:
        return {
            p: max(0, end - self.committed.get(p, self.starts.get(p, 0)))
            for p, end in sorted(self.ends.items())
        }

    def lag(self) -> int:
        return sum(self.lag_by_partition().values())


@dataclass(frozen=True)
class Limits:
    max_lag: int  # this many waiting records or fewer: caught up
    stall_s: float  # no progress for this long while records wait: degraded


@dataclass(frozen=True)
class Progress:
    """What is remembered between readings."""

    committed: Mapping[int, int]
    progress_at_s: float  # the last progress (or the first reading)
    advanced_at_s: float | None  # the last time a committed offset moved forward


def observe(previous: Progress | None, reading: Offsets, now_s: float, limits: Limits) -> Progress:
    if previous is None:
        return Progress(dict(reading.committed), now_s, None)
    advanced = any(
        offset > previous.committed.get(p, -1) for p, offset in reading.committed.items()
    )
    caught_up = reading.lag() <= limits.max_lag
    return Progress(
        committed=dict(reading.committed),
        progress_at_s=now_s if advanced or caught_up else previous.progress_at_s,
        advanced_at_s=now_s if advanced else previous.advanced_at_s,
    )


@dataclass(frozen=True)
class Verdict:
    consuming: bool
    lag: int
    lag_by_partition: dict[int, int]
    committed_advancing: bool  # a committed offset moved forward within the last stall_s
    seconds_since_progress: float
    has_committed_offsets: bool
    reason: str | None


def judge(progress: Progress, reading: Offsets, now_s: float, limits: Limits) -> Verdict:
    lag = reading.lag()
    since_s = max(0.0, now_s - progress.progress_at_s)
    advancing = (
        progress.advanced_at_s is not None and now_s - progress.advanced_at_s < limits.stall_s
    )
    stalled = lag > limits.max_lag and since_s >= limits.stall_s
    reason = None
    if stalled and not reading.committed:
        reason = f"the group has no committed offsets while {lag} records wait"
    elif stalled:
        reason = f"{lag} records wait and the committed offsets have not advanced"
    return Verdict(
        consuming=not stalled,
        lag=lag,
        lag_by_partition=reading.lag_by_partition(),
        committed_advancing=advancing,
        seconds_since_progress=round(since_s, 1),
        has_committed_offsets=bool(reading.committed),
        reason=reason,
    )


# ---------------------------------------------------------------- what /healthz answers


class ProcessorView(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str = Field(description="the processor's consumer group (RELIEF_EMERGENCY_APP_ID)")
    topic: str
    lag: int | None = Field(description="records on the topic the group has not committed")
    lag_by_partition: dict[int, int]
    committed_advancing: bool
    seconds_since_progress: float | None = Field(
        description="since the committed offsets last advanced or nothing waited"
    )
    has_committed_offsets: bool
    max_lag: int
    stall_after_s: float
    reason: str | None = Field(description="why degraded, when it is")


class KafkaView(BaseModel):
    model_config = ConfigDict(frozen=True)

    reachable: bool = Field(description="the last reading of offsets succeeded")
    seconds_since_reading: float | None = Field(description="age of the last good reading")
    error: str | None


class HealthView(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded"]
    processor: ProcessorView
    kafka: KafkaView
