"""Deadlines judged on event time (docs/design.md "time is an event").

Two clocks run for an urgent case:
- relief within 24 hours of the request's `recorded_at` (policy R5): met by a payment
  confirmed before the due time, breached by a tick that passes it unpaid;
- paperwork within 5 days after the advance (P1): met by `PaperworkCompleted` before the
  due time, breached by a tick that passes it.

A warning goes out once, `warning_lead` before the due time. Every deadline ends exactly
once, met or breached (or void when its case is cancelled); nothing here reads a wall clock.

The due time itself is on time: "24 小时内" - Chinese legal usage counts 以内 inclusively
(以上、以下、以内 include the figure named), so a payment stamped at exactly 24:00:00
after the request meets the deadline, and a tick breaches it only once past it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class DeadlineState(StrEnum):
    OPEN = "open"
    WARNED = "warned"
    MET = "met"
    BREACHED = "breached"
    VOID = "void"


class Deadline(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str  # "relief_24h" (R5) or "paperwork_5d" (P1)
    due_at: datetime
    warn_at: datetime
    state: DeadlineState = DeadlineState.OPEN

    @classmethod
    def starting(cls, kind: str, start: datetime, period: timedelta, lead: timedelta) -> Deadline:
        due = start + period
        return cls(kind=kind, due_at=due, warn_at=max(start, due - lead))

    @property
    def is_open(self) -> bool:
        return self.state in (DeadlineState.OPEN, DeadlineState.WARNED)

    def on_tick(self, now: datetime) -> DeadlineState | None:
        """What a tick at `now` decides: a warning, a breach, or nothing."""
        if not self.is_open:
            return None
        if now > self.due_at:  # 以内: the due time itself is still on time
            return DeadlineState.BREACHED
        if self.state is DeadlineState.OPEN and now >= self.warn_at:
            return DeadlineState.WARNED
        return None

    def on_done(self, at: datetime) -> DeadlineState | None:
        """The awaited act happened at `at` (the broker's stamp): met, unless already judged."""
        if not self.is_open:
            return None
        return DeadlineState.MET if at <= self.due_at else DeadlineState.BREACHED
