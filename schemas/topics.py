"""Topic names, partition counts and the dead-letter record (docs/design.md "Topics").

Every topic is keyed by town code (UTF-8), so one worker owns a town at a time.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import UtcDatetime, derived_id
from schemas.identity import scrub_ids

INTAKE = "relief.intake.v1"  # commands and facts: intake and the clock write it
DECISIONS = "relief.decisions.v1"  # the processor's decisions, each with its rule and figures
POSTINGS = "ledger.postings.v1"  # balanced double-entry postings
REJECTED = "relief.rejected.v1"  # dead letters: records that could not be parsed or applied
# P6 across towns: requests on their way to a town, and the releases of their claims; keyed
# by the county on ONE partition, so claims are decided one after another
# (docs/design.md "one household, many towns")
CLAIMS = "relief.claims.v1"
CLAIMS_KEY = "county"  # every record of the claims topic carries this key
ALL_TOPICS = (INTAKE, DECISIONS, POSTINGS, REJECTED, CLAIMS)
# Topics whose partition count is fixed by design, whatever the others have.
FIXED_PARTITIONS = {CLAIMS: 1}

# Partitions bound how many processor workers share the towns (docs/design.md "keyed by town").
DEFAULT_PARTITIONS = 6

# A dead letter keeps an excerpt of what was refused, not the whole of it
# (STYLE "a limit on everything"; a clear ID number is masked, docs/design.md "personal data").
MAX_REASON_CHARS = 1_000
MAX_RAW_EXCERPT_CHARS = 4_000
MAX_TOPIC_NAME = 249  # Kafka's own limit


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RejectedRecord(BaseModel):
    """A record a consumer could not parse or apply, on relief.rejected.v1.

    `raw_excerpt` is the start of the raw value as text (undecodable bytes replaced,
    anything shaped like a resident ID number masked); `raw_sha256` and `raw_length`
    identify the original. Build it with `RejectedRecord.of(...)`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: Literal["RejectedRecord"] = "RejectedRecord"
    schema_version: Literal[1] = 1
    rejected_id: uuid.UUID  # derived from topic, partition and offset: once per record
    source_topic: str = Field(min_length=1, max_length=MAX_TOPIC_NAME)
    partition: int = Field(ge=0, strict=True)
    offset: int = Field(ge=0, strict=True)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
    raw_excerpt: str = Field(max_length=MAX_RAW_EXCERPT_CHARS)
    raw_length: int = Field(ge=0, strict=True)
    raw_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", max_length=64)
    rejected_at: UtcDatetime | None = None

    @classmethod
    def of(
        cls,
        source_topic: str,
        partition: int,
        offset: int,
        reason: str,
        raw: bytes | None,
        rejected_at: datetime | None = None,
    ) -> RejectedRecord:
        value = raw or b""
        # Cut the bytes first (bounded work), then decode and mask.
        head = value[: MAX_RAW_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
        return cls(
            rejected_id=derived_id(f"{source_topic}/{partition}/{offset}", "rejected"),
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            reason=_cut(scrub_ids(reason) or "(no reason given)", MAX_REASON_CHARS),
            raw_excerpt=_cut(scrub_ids(head), MAX_RAW_EXCERPT_CHARS),
            raw_length=len(value),
            raw_sha256=hashlib.sha256(value).hexdigest(),
            rejected_at=rejected_at,
        )
