"""Submissions: what became of each record intake accepted (its 202 names its event id).

- `decided`: the processor decided something on it — the decisions whose causation_id
  is the record's event id (a payment's ReliefPaid and DeadlineMet, a request's grant or
  refusal) — or it was read and decided nothing (an incident reported, a hardship list:
  facts the processor keeps, with no decision to announce);
- `rejected`: the processor refused it (a payment for a case the town does not have):
  the reason from relief.rejected.v1;
- `pending`: not decided yet, or unknown (the casebook has not read it yet).

Clock ticks are not submissions: nobody submits them, and the deadlines they decide are
the case's, not a request's answer.

A dead letter names where its record was (topic, partition, offset) and carries the
start of the raw record, already masked; the record's event id is read back from that
excerpt. The encoding writes the envelope first (fields in declaration order), and every
field before `event_id` is bounded, so an intake record's event id is always within the
excerpt.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from schemas.envelope import CLOCK_TOWN
from schemas.identity import scrub_ids

MAX_TYPE_CHARS = 64
MAX_ORG_CHARS = 100
MAX_REASON_CHARS = 1_000

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Inside a JSON string every quote is escaped, so these match top-level keys only (and
# the envelope's keys are unique to the envelope).
_EVENT_ID = re.compile(rf'"event_id":"({_UUID})"')
_TOWN = re.compile(r'"town":"([0-9]{6,12})"')
_TYPE = re.compile(r'"type":"([A-Za-z]{1,64})"')


class SubmissionStatus(StrEnum):
    PENDING = "pending"
    DECIDED = "decided"
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True, slots=True)
class Submitted:
    """A record intake wrote, as the casebook read it from the intake topic."""

    event_id: uuid.UUID
    type: str
    town: str
    correlation_id: str
    org: str
    partition: int
    offset: int


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """A dead letter of the intake topic, tied back to its record's event id."""

    rejected_id: uuid.UUID
    source_event_id: uuid.UUID | None
    source_type: str | None
    town: str | None
    reason: str
    source_partition: int
    source_offset: int


class NotASubmission(ValueError):
    """An intake record that is not one (a clock tick) or cannot be read."""


def submitted(value: bytes, partition: int, offset: int) -> Submitted:
    """The envelope of an intake record (its body is the processor's business)."""
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotASubmission(f"not JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise NotASubmission("not a JSON object")
    try:
        event_id = uuid.UUID(str(data["event_id"]))
        kind, town, corr = str(data["type"]), str(data["town"]), str(data["correlation_id"])
        actor = data["actor"]
        org = str(actor["org"]) if isinstance(actor, dict) else ""
    except (KeyError, ValueError, TypeError) as exc:
        raise NotASubmission(f"no envelope: {type(exc).__name__}") from None
    if kind == "ClockTick" or town == CLOCK_TOWN:
        raise NotASubmission("a clock tick")
    if not re.fullmatch(r"[0-9]{6,12}", town) or not 1 <= len(corr) <= 64:
        raise NotASubmission("no town or correlation id")
    return Submitted(
        event_id=event_id,
        type=kind[:MAX_TYPE_CHARS],
        town=town,
        correlation_id=corr,
        org=org[:MAX_ORG_CHARS],
        partition=partition,
        offset=offset,
    )


def rejection(dead_letter: Mapping[str, Any]) -> Rejection:
    """A RejectedRecord (as its JSON fields) tied back to the refused record."""
    excerpt = str(dead_letter.get("raw_excerpt", ""))
    event = _EVENT_ID.search(excerpt)
    town = _TOWN.search(excerpt)
    kind = _TYPE.search(excerpt)
    return Rejection(
        rejected_id=uuid.UUID(str(dead_letter["rejected_id"])),
        source_event_id=uuid.UUID(event.group(1)) if event else None,
        source_type=kind.group(1) if kind else None,
        town=town.group(1) if town else None,
        # masked where it was made; masked again here: an ID number never leaves
        reason=scrub_ids(str(dead_letter.get("reason", "")))[:MAX_REASON_CHARS],
        source_partition=int(dead_letter["partition"]),
        source_offset=int(dead_letter["offset"]),
    )


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the submissions endpoint says, before it is shaped for HTTP."""

    status: SubmissionStatus
    town: str | None
    type: str | None
    correlation_id: str | None
    reason: str | None


def answer(
    seen: Submitted | None,
    decisions: list[tuple[str, str]],  # (town, case id) of each decision it caused
    rejected: Rejection | None,
    processed_through: int | None,  # the processor's committed offset on seen's partition
) -> Answer:
    """Decided, rejected or pending, from what the casebook holds about one event id."""
    town = seen.town if seen else (decisions[0][0] if decisions else None)
    if town is None and rejected is not None:
        town = rejected.town
    kind = seen.type if seen else (rejected.source_type if rejected else None)
    corr = seen.correlation_id if seen else (decisions[0][1] if decisions else None)
    if decisions:
        # decided wins over a dead letter of the same event id: a record refused once and
        # sent again later (the same Idempotency-Key) may apply the second time
        return Answer(SubmissionStatus.DECIDED, town, kind, corr, None)
    if rejected is not None:
        return Answer(SubmissionStatus.REJECTED, town, kind, corr, rejected.reason)
    if seen is not None and processed_through is not None and seen.offset < processed_through:
        # read by the processor, and what it sends goes out before it moves on: nothing
        # to decide (a fact it keeps), neither refused
        return Answer(SubmissionStatus.DECIDED, town, kind, corr, None)
    return Answer(SubmissionStatus.PENDING, town, kind, corr, None)


def visible(ans: Answer, seen: Submitted | None, town: str | None, org: str | None) -> bool:
    """Whether a reader scoped to `town` (a town's token) or `org` (a bureau's or a
    department's token) may see it; no scope: county staff, who see every town's."""
    if town is not None and ans.town != town:
        return False
    return org is None or (seen is not None and seen.org == org)
