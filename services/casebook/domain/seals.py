"""What the casebook writer seals: each stored decision, over every column a read shows
(its JSON columns parsed, so the database's own spelling of jsonb does not matter)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

DECISION = "casebook.decision.v1"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision_payload(
    *,
    event_id: uuid.UUID,
    town: str,
    case_id: str,
    type: str,
    rule: str,
    case_status: str | None,
    causation_id: uuid.UUID | None,
    occurred_at: datetime,
    recorded_at: datetime | None,
    amount_fen: int | None,
    reason: str | None,
    figures: Any,
    body: Any,
    source_partition: int,
    source_offset: int,
) -> bytes:
    doc = [
        str(event_id),
        town,
        case_id,
        type,
        rule,
        case_status,
        None if causation_id is None else str(causation_id),
        _time(occurred_at),
        _time(recorded_at),
        amount_fen,
        reason,
        figures,
        body,
        source_partition,
        source_offset,
    ]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
