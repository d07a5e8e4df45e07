"""Where each thing the rules decide goes on Kafka: its topic, key and bytes."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

from schemas import topics
from schemas.claims import ClaimReleased
from schemas.envelope import Record
from schemas.postings import Posting
from schemas.registry import encode
from schemas.topics import RejectedRecord


class NoTopic(RuntimeError):
    """The rules produced something that has no topic: a bug."""


@dataclasses.dataclass(frozen=True)
class Output:
    """One record to emit, ready for Kafka: its topic, key (the town) and bytes."""

    topic: str
    key: str
    value: bytes
    record: BaseModel


def to_output(record: BaseModel) -> Output:
    if isinstance(record, ClaimReleased):  # P6 across towns: back to the county's stage
        return Output(topics.CLAIMS, topics.CLAIMS_KEY, encode(record), record)
    if isinstance(record, Posting):
        return Output(topics.POSTINGS, record.town, encode(record), record)
    if isinstance(record, RejectedRecord):
        return Output(topics.REJECTED, record.source_topic, encode(record), record)
    if isinstance(record, Record):
        return Output(topics.DECISIONS, record.town, encode(record), record)
    raise NoTopic(f"no topic for {type(record).__name__}")


def rejected_record(
    topic: str, partition: int, offset: int, reason: str, raw: bytes | None
) -> Output:
    """A dead letter: the record as it came, where it came from, and why it was refused."""
    return to_output(RejectedRecord.of(topic, partition, offset, reason, raw))
