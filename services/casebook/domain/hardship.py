"""Hardship lists from departments and civil affairs' follow-up of each row — pure.

Section 二 ("policy finds people"): departments push lists of suspected hardship
households (HardshipListPushed on the intake topic, one record per town and chunk); county
civil affairs follows each row up with a written decision (HardshipFollowedUp, P9: the
reasons in words): a case opened, no relief needed, or referred elsewhere. The processor
decides nothing on either; the casebook keeps both, and answers which rows still wait.

A row is named by its list record's event id and its index in that record's rows. A
follow-up is judged in log order (both records of a town are on its partition), never by
when the casebook happened to read it, so a rebuild gives the same answer:

- it is kept when its list record is of the same town and before it in the log, and no
  earlier follow-up of the row was kept: the first decision on a row stands;
- otherwise it is refused, with the reason, and the refusal is what its submission
  answers (`rejected`). A correction is a matter for a new list, or a case of its own.

Household refs are kept as intake wrote them (keyed hashes): no ID number is ever here.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from schemas.intake import HardshipFollowedUp, HardshipListPushed

MAX_WAITING_ROWS = 1_000  # rows one read returns, at most
REFUSAL_KIND = "hardship_follow_up_refused"

RowKey = tuple[uuid.UUID, int]  # (list record's event id, row index)


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where a record is in the intake topic."""

    partition: int
    offset: int

    def before(self, other: Where) -> bool:
        return self.partition == other.partition and self.offset < other.offset


@dataclasses.dataclass(frozen=True, slots=True)
class PushedList:
    """A pushed list as the casebook keeps it (its rows are `list_rows`)."""

    event_id: uuid.UUID
    town: str
    department: str
    org: str  # the pushing token's organisation
    correlation_id: str
    occurred_at: datetime
    pushed_at: datetime  # the broker's stamp
    rows: int
    at: Where


@dataclasses.dataclass(frozen=True, slots=True)
class ListRow:
    list_event_id: uuid.UUID
    row_index: int
    town: str
    household_ref: str  # "h_" + 32 hex: the keyed hash intake made
    category: str
    note: str


@dataclasses.dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up as read from the intake topic."""

    event_id: uuid.UUID
    town: str
    list_event_id: uuid.UUID
    row_index: int
    outcome: str
    case_id: str | None
    referred_to: str | None
    reasons: str
    decided_by: str
    org: str
    occurred_at: datetime
    decided_at: datetime  # the broker's stamp
    at: Where

    @property
    def key(self) -> RowKey:
        return (self.list_event_id, self.row_index)


@dataclasses.dataclass(frozen=True, slots=True)
class Known:
    """What the casebook holds about a row when a follow-up of it comes: its town and
    where its list is (None: no such row), and the follow-up kept for it (if any)."""

    town: str | None = None
    list_at: Where | None = None
    kept: uuid.UUID | None = None
    kept_outcome: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    follow_up: FollowUp
    reason: str

    @property
    def rejected_id(self) -> uuid.UUID:
        """Deterministic: the same refusal on a rebuild is the same row."""
        return uuid.uuid5(self.follow_up.event_id, REFUSAL_KIND)


@dataclasses.dataclass(frozen=True)
class Judged:
    kept: list[FollowUp]
    refused: list[Refusal]


def pushed(record: HardshipListPushed, pushed_at: datetime, at: Where) -> PushedList:
    return PushedList(
        event_id=record.event_id,
        town=record.town,
        department=record.department,
        org=record.actor.org,
        correlation_id=record.correlation_id,
        occurred_at=record.occurred_at,
        pushed_at=pushed_at,
        rows=len(record.rows),
        at=at,
    )


def list_rows(record: HardshipListPushed) -> list[ListRow]:
    return [
        ListRow(
            list_event_id=record.event_id,
            row_index=n,
            town=record.town,
            household_ref=row.household_ref,
            category=row.category.value,
            note=row.note,
        )
        for n, row in enumerate(record.rows)
    ]


def follow_up(record: HardshipFollowedUp, decided_at: datetime, at: Where) -> FollowUp:
    return FollowUp(
        event_id=record.event_id,
        town=record.town,
        list_event_id=record.list_event_id,
        row_index=record.row,
        outcome=record.outcome.value,
        case_id=record.case_id,
        referred_to=record.referred_to,
        reasons=record.reasons,
        decided_by=record.decided_by,
        org=record.actor.org,
        occurred_at=record.occurred_at,
        decided_at=decided_at,
        at=at,
    )


def judge(known: Mapping[RowKey, Known], follow_ups: Iterable[FollowUp]) -> Judged:
    """Which of `follow_ups` (new ones, any order) are kept and which refused, given what
    is `known` of their rows (including lists read in the same batch)."""
    state = dict(known)
    kept: list[FollowUp] = []
    refused: list[Refusal] = []
    seen: set[uuid.UUID] = set()
    for f in sorted(follow_ups, key=lambda x: (x.at.partition, x.at.offset)):
        if f.event_id in seen:
            continue  # the same record twice in one batch
        seen.add(f.event_id)
        row = state.get(f.key, Known())
        if row.kept == f.event_id:
            continue  # read again: kept already
        where = f"row {f.row_index} of hardship list {f.list_event_id}"
        if row.town is None or row.list_at is None:
            refused.append(Refusal(f, f"{where}: no such row was pushed (section 二)"))
        elif row.town != f.town:
            refused.append(Refusal(f, f"{where}: the list is of town {row.town}, not {f.town}"))
        elif not row.list_at.before(f.at):
            refused.append(Refusal(f, f"{where}: the list was recorded after the follow-up"))
        elif row.kept is not None:
            refused.append(
                Refusal(
                    f,
                    f"{where}: already followed up ({row.kept_outcome}) by {row.kept}; "
                    "the first decision stands",
                )
            )
        else:
            kept.append(f)
            state[f.key] = dataclasses.replace(row, kept=f.event_id, kept_outcome=f.outcome)
    return Judged(kept, refused)
