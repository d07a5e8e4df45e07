"""Every record type in one place; `encode` and `decode` for the Kafka values.

`encode(record)` gives compact JSON with sorted keys, so the same record is always the
same bytes (docs/design.md a replay gives the same ledger, byte for byte). `decode(value)`
dispatches on "type", upcasts older `schema_version`s to the current one, validates,
and raises `UnknownRecordType` or `InvalidRecord` (both `RecordError`) whose messages
say what is wrong and where (the field path) and never echo personal ID numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from schemas.decisions import (
    AdvanceGranted,
    AdvanceRefused,
    AdvanceVoided,
    ApprovalRequired,
    DeadlineBreached,
    DeadlineMet,
    DeadlineWarned,
    DeliberationRequired,
    EscalatedToCountyFund,
    InstalmentDue,
    RecoveryClaimed,
    ReferredToOriginCounty,
    ReliefApproved,
    ReliefPaid,
    ReliefRejected,
    ReplenishmentRefused,
    ReserveLow,
    SecondGrantAllowed,
    TransitionalInstalmentPaid,
)
from schemas.envelope import Record
from schemas.identity import scrub_ids
from schemas.intake import (
    AdvanceCancelled,
    CaseReviewed,
    ClockTick,
    DeliberationDecided,
    DisclosurePublished,
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    HardshipFollowedUp,
    HardshipListPushed,
    IncidentClosed,
    IncidentReported,
    IncidentUpdated,
    PaperworkCompleted,
    PaymentConfirmed,
    ReliefRequested,
    ReserveFunded,
    ReserveReplenished,
    TransitionalReliefExtended,
)
from schemas.postings import Posting

# A Kafka value larger than this is refused before it is parsed (Kafka's default
# message.max.bytes is about 1 MB).
MAX_RECORD_BYTES = 1_048_576
R = TypeVar("R", bound=Record)
MAX_ERRORS_SHOWN = 5
MAX_MESSAGE_CHARS = 1_000

IntakeRecord = (
    IncidentReported
    | IncidentUpdated
    | IncidentClosed
    | EmergencyPeriodDeclared
    | EmergencyPeriodEnded
    | ReliefRequested
    | AdvanceCancelled
    | PaymentConfirmed
    | PaperworkCompleted
    | CaseReviewed
    | TransitionalReliefExtended
    | DeliberationDecided
    | ReserveFunded
    | ReserveReplenished
    | HardshipListPushed
    | HardshipFollowedUp
    | DisclosurePublished
    | ClockTick
)
DecisionRecord = (
    AdvanceGranted
    | ReliefPaid
    | AdvanceRefused
    | AdvanceVoided
    | EscalatedToCountyFund
    | DeliberationRequired
    | ReliefApproved
    | ReliefRejected
    | DeadlineWarned
    | DeadlineMet
    | DeadlineBreached
    | RecoveryClaimed
    | ReferredToOriginCounty
    | ReplenishmentRefused
    | ApprovalRequired
    | ReserveLow
    | InstalmentDue
    | TransitionalInstalmentPaid
    | SecondGrantAllowed
)
AnyRecord = IntakeRecord | DecisionRecord | Posting

INTAKE_TYPES: tuple[type[Record], ...] = (
    IncidentReported,
    IncidentUpdated,
    IncidentClosed,
    EmergencyPeriodDeclared,
    EmergencyPeriodEnded,
    ReliefRequested,
    AdvanceCancelled,
    PaymentConfirmed,
    PaperworkCompleted,
    CaseReviewed,
    TransitionalReliefExtended,
    DeliberationDecided,
    ReserveFunded,
    ReserveReplenished,
    HardshipListPushed,
    HardshipFollowedUp,
    DisclosurePublished,
    ClockTick,
)
DECISION_TYPES: tuple[type[Record], ...] = (
    AdvanceGranted,
    ReliefPaid,
    AdvanceRefused,
    AdvanceVoided,
    EscalatedToCountyFund,
    DeliberationRequired,
    ReliefApproved,
    ReliefRejected,
    DeadlineWarned,
    DeadlineMet,
    DeadlineBreached,
    RecoveryClaimed,
    ReferredToOriginCounty,
    ReplenishmentRefused,
    ApprovalRequired,
    ReserveLow,
    InstalmentDue,
    TransitionalInstalmentPaid,
    SecondGrantAllowed,
)
POSTING_TYPES: tuple[type[Record], ...] = (Posting,)
ALL_TYPES: tuple[type[Record], ...] = INTAKE_TYPES + DECISION_TYPES + POSTING_TYPES
RECORD_TYPES: dict[str, type[Record]] = {cls.__name__: cls for cls in ALL_TYPES}


def current_version(cls: type[Record]) -> int:
    """The schema_version a class writes (its field's default)."""
    default = cls.model_fields["schema_version"].default
    if not isinstance(default, int):  # a bug in a model definition, not bad input
        raise TypeError(f"{cls.__name__}.schema_version has no int default")
    return default


# ---------------------------------------------------------------- errors


class RecordError(ValueError):
    """A value that is not a record this code can accept."""


class UnknownRecordType(RecordError):
    def __init__(self, type_name: str) -> None:
        shown = scrub_ids(type_name[:60])
        super().__init__(f"unknown record type {shown!r}")
        self.type_name = shown


class InvalidRecord(RecordError):
    """`problems` are (field path, message) pairs; the message lists the first few."""

    def __init__(self, type_name: str, problems: list[tuple[str, str]]) -> None:
        shown = "; ".join(f"{loc}: {msg}" for loc, msg in problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        if more > 0:
            shown += f"; and {more} more"
        text = scrub_ids(f"invalid {type_name} record: {shown}")
        super().__init__(text[:MAX_MESSAGE_CHARS])
        self.type_name = type_name
        self.problems = [(scrub_ids(loc), scrub_ids(msg)) for loc, msg in problems]


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    # loc + msg only: pydantic's own str() would echo the input (personal data).
    return [(".".join(str(p) for p in e["loc"]) or "(record)", e["msg"]) for e in exc.errors()]


# ---------------------------------------------------------------- upcasting

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _relief_requested_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v2 added `persons` (P5 pays per person); a v1 request was for one person.
    return {**data, "persons": data.get("persons", 1), "schema_version": 2}


# (type, from_version) -> a function giving the data at from_version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("ReliefRequested", 1): _relief_requested_v1_to_v2,
}


def upcast(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The data of an older version, brought up to the current one step by step."""
    cls = RECORD_TYPES[type_name]
    target = current_version(cls)
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidRecord(type_name, [("schema_version", "missing or not an integer")])
    if version > target:
        raise InvalidRecord(
            type_name,
            [("schema_version", f"version {version} is newer than this code's {target}")],
        )
    while version < target:
        step = UPCASTERS.get((type_name, version))
        if step is None:
            raise InvalidRecord(
                type_name, [("schema_version", f"no upcast from version {version}")]
            )
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data


# ---------------------------------------------------------------- encode / decode


def encode(record: BaseModel) -> bytes:
    """Compact JSON in UTF-8, fields in the order the model declares them: the same record
    is always the same bytes. (Serialised by pydantic-core in one pass: the processor
    encodes every decision and posting it emits, so this is on its hottest path.)"""
    return record.__pydantic_serializer__.to_json(record)


def decode(value: bytes, *, recorded_at: datetime | None = None) -> AnyRecord:
    """The record in a Kafka value. `recorded_at` (the broker's LogAppendTime stamp)
    replaces whatever the value says: the broker's clock is the one clock (docs/design.md)."""
    if len(value) > MAX_RECORD_BYTES:
        raise InvalidRecord("?", [("(record)", f"{len(value)} bytes, over {MAX_RECORD_BYTES}")])
    try:
        # pydantic-core's parser: a third of json.loads's time on the processor's hottest
        # path, and stricter (a lone surrogate escape is refused here, not later)
        data = pydantic_core.from_json(value)
    except ValueError as exc:  # its message says where, never what: no input echoed
        raise InvalidRecord("?", [("(record)", f"not JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise InvalidRecord("?", [("(record)", "not a JSON object")])
    type_name = data.get("type")
    if not isinstance(type_name, str):
        raise InvalidRecord("?", [("type", "missing or not a string")])
    cls = RECORD_TYPES.get(type_name)
    if cls is None:
        raise UnknownRecordType(type_name)
    data = upcast(type_name, data)
    if recorded_at is not None:
        data["recorded_at"] = recorded_at
    try:
        record = cls.model_validate(data)
    except ValidationError as exc:
        # `from None`: the pydantic error would carry the input into tracebacks and logs.
        raise InvalidRecord(type_name, _problems(exc)) from None
    return record  # type: ignore[return-value]  # RECORD_TYPES holds exactly AnyRecord's classes


def decode_as(value: bytes, cls: type[R], *, recorded_at: datetime | None = None) -> R:
    """`decode`, requiring a given record type."""
    record = decode(value, recorded_at=recorded_at)
    if not isinstance(record, cls):
        raise InvalidRecord(cls.__name__, [("type", f"expected {cls.__name__}, got {record.type}")])
    return record
