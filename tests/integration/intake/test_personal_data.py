"""Personal data never reaches Kafka in free text: an ID number or a phone number typed
into a description or a reason is masked before the record is produced (the real topic
is read back)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from schemas.intake import IncidentReported
from tests.integration.intake.conftest import Topic
from tests.unit.intake.people import SUOZHEN, auth, make_id

ZHANG_ID = make_id(101)


async def test_ids_and_phone_numbers_in_free_text_never_reach_kafka(
    client: httpx.AsyncClient, topic: Topic
) -> None:
    description = (
        f"Zhang (ID {ZHANG_ID}) lost the house; call his daughter on 138 1234 5678 "
        "or the village office 0533-7123456"
    )
    answer = await client.post(
        "/v1/incidents",
        headers=auth("tok-bureau"),
        json={
            "town": SUOZHEN,
            "incident_id": "inc-fire-9",
            "kind": "fire",
            "description": description,
            "casualties": {"dead": 0, "injured": 1},
            "household_head_ids": [ZHANG_ID],
            "occurred_at": datetime(2024, 7, 10, 6, 30, tzinfo=UTC).isoformat(),
        },
    )
    assert answer.status_code == 202, answer.text
    (landed,) = [
        x for x in await topic.records() if str(x.record.event_id) == answer.json()["event_id"]
    ]
    assert isinstance(landed.record, IncidentReported)
    raw = landed.value.decode()
    for secret in (ZHANG_ID, "138 1234 5678", "13812345678", "0533-7123456", "7123456"):
        assert secret not in raw
    assert landed.record.description.startswith("Zhang (ID 370")
    assert "lost the house" in landed.record.description
