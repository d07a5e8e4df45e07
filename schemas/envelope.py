"""The envelope every record carries, and deterministic ids for derived records.

Fields (docs/contracts.md): event_id, type, schema_version, occurred_at (in the world),
recorded_at (the broker's LogAppendTime, filled in by the consumer), town, actor,
correlation_id (the case or incident), causation_id (what caused it).

Timestamps are timezone-aware and stored in UTC; naive datetimes are refused. China
Standard Time (UTC+8, no daylight saving) is for display only: `to_cst`, `format_cst`.
"""

from __future__ import annotations

import hashlib
import re
import types
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum, StrEnum
from typing import Annotated, Any, Self, Union, get_args, get_origin

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

# Limits on every string (STYLE "a limit on everything").
MAX_ID_TEXT = 64  # correlation ids, case ids, incident ids, bank references
MAX_ORG_TEXT = 100
MAX_SHORT_TEXT = 200
MAX_TEXT = 2_000  # reasons, notes, descriptions
# A backstop for any str a model forgets to bound (every field also names its own).
MAX_ANY_STR = 4_000

CST = timezone(timedelta(hours=8), "CST")
# The fixed namespace of derived ids: never change it, or replays produce new ids.
DERIVED_NAMESPACE = uuid.UUID("6f1f3b7e-4c1d-5a2e-9b57-2e6f0c3d8a41")
_DERIVED_PREFIX = DERIVED_NAMESPACE.bytes
# The town field of records that concern no town (clock ticks are keyed "__clock__").
CLOCK_TOWN = "__clock__"
TOWN_CODE_PATTERN = r"^(?:[0-9]{6,12}|__clock__)$"


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime, converted to UTC; naive datetimes are refused."""

TownCode = Annotated[str, Field(pattern=TOWN_CODE_PATTERN, max_length=12)]
CorrelationId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_TEXT, pattern=r"^[0-9A-Za-z_.:\-]+$")
]
ShortText = Annotated[str, Field(min_length=1, max_length=MAX_SHORT_TEXT)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
RequiredText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


# C0 control characters (but tab, newline, carriage return) and DEL. Kafka keeps every
# record for good, and a NUL in a text field is refused by PostgreSQL's jsonb: a reader
# would stop at that record again and again. Refused at the door instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def no_control_characters(value: Any) -> Any:
    """A validator for a text inside a container (a dict's keys and values), which the
    model-wide check of `TextOnly` does not look into: no control characters."""
    if isinstance(value, str) and (found := _CONTROL.search(value)) is not None:
        raise ValueError(
            f"contains the control character U+{ord(found.group()):04X}, not allowed in text"
        )
    return value


def _holds_text(annotation: Any) -> bool:
    """Whether a field of this type can hold a text (an enum's values are its own)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _holds_text(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_holds_text(arg) for arg in get_args(annotation))
    if origin is not None:  # Literal, containers: not a text of the model's own
        return False
    return (
        isinstance(annotation, type)
        and issubclass(annotation, str)
        and not issubclass(annotation, Enum)
    )


_TEXT_FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}


def _text_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model that can hold a text, found once per model."""
    names = _TEXT_FIELDS.get(cls)
    if names is None:
        names = tuple(n for n, f in cls.model_fields.items() if _holds_text(f.annotation))
        _TEXT_FIELDS[cls] = names
    return names


class TextOnly(BaseModel):
    """A model whose every text field refuses control characters.

    One check per model, over the fields that hold text, rather than a validator called
    for every field: the processor builds a dozen models for each record it decides."""

    @model_validator(mode="after")
    def _no_control(self) -> Self:
        values = self.__dict__
        for name in _text_fields(type(self)):
            value = values.get(name)
            if isinstance(value, str) and (found := _CONTROL.search(value)) is not None:
                raise ValidationError.from_exception_data(
                    type(self).__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "control_character",
                                "contains the control character U+{code}, not allowed in text",
                                {"code": f"{ord(found.group()):04X}"},
                            ),
                            loc=(name,),
                            input=value,
                        )
                    ],
                )
        return self


def to_cst(moment: datetime) -> datetime:
    """The same instant in China Standard Time (UTC+8), for display."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a moment needs its time zone")
    return moment.astimezone(CST)


def format_cst(moment: datetime) -> str:
    """ "2024-07-01 08:30 CST" """
    return to_cst(moment).strftime("%Y-%m-%d %H:%M CST")


def derived_id(cause_event_id: uuid.UUID | str, kind: str, *parts: str) -> uuid.UUID:
    """The id of a record derived from `cause_event_id` (docs/design.md "effectively once").

    UUIDv5 over DERIVED_NAMESPACE of f"{cause}:{kind}:{':'.join(parts)}": the same cause
    and decision kind always give the same id, so a redelivered command emits the same
    records and every downstream store keeps them once.
    """
    # uuid.uuid5 itself, without its per-call import (on the hot path: every record the
    # processor emits); tests/unit/schemas/test_records.py pins it to uuid5. SHA-1 names
    # an id here (RFC 4122's version 5), it protects nothing.
    name = _DERIVED_PREFIX + f"{cause_event_id}:{kind}:{':'.join(parts)}".encode()
    digest = hashlib.sha1(name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


class Role(StrEnum):
    EMERGENCY_BUREAU = "emergency_bureau"  # 应急局: incidents and the households hit
    TOWN = "town"  # 镇、街道: urgent cases, payments, paperwork
    CIVIL_AFFAIRS = "civil_affairs"  # 民政局: reviews, approvals, deliberations
    FINANCE = "finance"  # 财政局: funds and replenishes reserves (P10, P11)
    DEPARTMENT = "department"  # other departments pushing hardship lists (section 二)
    AUDITOR = "auditor"  # audit and discipline inspection (section 十)
    SYSTEM = "system"  # the processor and the clock


class Actor(TextOnly):
    """Who acted (section 十: the record shows who decided what, when and why)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    role: Role
    org: str = Field(min_length=1, max_length=MAX_ORG_TEXT)
    # the person who holds the token the command came with (a staff number or name), so a
    # decision names who decided, not only where (section 十); None for the system and
    # for tokens issued before holders were recorded
    person: str | None = Field(default=None, min_length=1, max_length=MAX_ORG_TEXT)


_SYSTEM = Actor(role=Role.SYSTEM, org="relief-emergency")  # frozen: one for every record


class Record(TextOnly):
    """The envelope. Each concrete record adds `type: Literal["<ClassName>"]` and
    `schema_version: Literal[n]`, both defaulted, so they never need to be passed."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,  # an error must never echo personal data
        str_max_length=MAX_ANY_STR,
        use_enum_values=False,
    )

    event_id: uuid.UUID
    type: str
    schema_version: int
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime | None = None
    town: TownCode
    actor: Actor
    correlation_id: CorrelationId
    causation_id: uuid.UUID | None = None

    def derive(self, kind: str, *parts: str) -> uuid.UUID:
        """The deterministic id of a record this one causes (see `derived_id`)."""
        return derived_id(self.event_id, kind, *parts)

    def envelope_for(self, kind: str, *parts: str, **overrides: Any) -> dict[str, Any]:
        """Envelope fields of a record derived from this one: same town and correlation,
        caused by this record, occurring at this record's recorded_at (or occurred_at)."""
        fields: dict[str, Any] = {
            "event_id": self.derive(kind, *parts),
            "occurred_at": self.recorded_at or self.occurred_at,
            "town": self.town,
            "actor": _SYSTEM,
            "correlation_id": self.correlation_id,
            "causation_id": self.event_id,
        }
        fields.update(overrides)
        return fields
