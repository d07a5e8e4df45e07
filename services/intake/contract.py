"""What the intake API answers: the bodies of its answers, the refusals it documents, and
the paths the middleware must know. Routes, the service and the bulk path share them.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.envelope import Record
from services.intake.adapters.kafka import Ack
from services.intake.domain.hardship_csv import RowReport

API_VERSION = "1.0.0"
BULK_PATH = "/v1/bulk"  # read line by line as it arrives (services/intake/bulk.py)


class Accepted(BaseModel):
    """Kafka acknowledged the record: where it is and when the broker stamped it."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    type: str
    town: str
    correlation_id: str
    topic: str
    partition: int
    offset: int
    recorded_at: datetime | None


class HardshipAccepted(BaseModel):
    model_config = ConfigDict(frozen=True)

    accepted: int
    rejected: int
    rows: list[RowReport]
    records: list[Accepted]


class Problem(BaseModel):
    detail: str


class Me(BaseModel):
    """Who a token belongs to: what a page needs to show its holder the right things."""

    model_config = ConfigDict(frozen=True)

    role: str
    org: str
    town: str | None


class Live(BaseModel):
    status: Literal["ok"]


class Conflict(BaseModel):
    detail: str
    differing_fields: list[str]


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    detail: list[FieldError]


class CsvInvalid(BaseModel):
    detail: str
    accepted: int
    rejected: int
    rows: list[RowReport]


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "role or town may not do this"},
    413: {"model": Problem, "description": "body over the size limit"},
    422: {"model": Invalid, "description": "invalid input: the JSON path of each error"},
    503: {"model": Problem, "description": "Kafka (or the read side) unavailable; Retry-After"},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_REFUSALS,
    409: {
        "model": Conflict,
        "description": "Idempotency-Key reused with a different body, or still being recorded",
    },
    428: {"model": Problem, "description": "no Idempotency-Key: every write needs one"},
    503: {
        "model": Problem,
        "description": "the outcome is unknown (Kafka did not acknowledge in time): retry "
        "with the same Idempotency-Key after Retry-After; it is recorded at most once",
    },
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    k: v for k, v in _REFUSALS.items() if k != 413
} | {404: {"model": Problem, "description": "not found"}}


class Refused(Exception):
    """An HTTP refusal with a reason (401, 404, 409, 413, 415, 428)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def accepted(record: Record, ack: Ack) -> Accepted:
    return Accepted(
        event_id=record.event_id,
        type=record.type,
        town=record.town,
        correlation_id=record.correlation_id,
        topic=ack.topic,
        partition=ack.partition,
        offset=ack.offset,
        recorded_at=ack.recorded_at,
    )
