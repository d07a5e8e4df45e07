"""Reads through intake, answered by the casebook: two towns write through the API onto
real Kafka, the real rules decide, the casebook reads the decisions and dead letters,
and each town reads its own cases and what became of its submissions — never another's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from deploy.local import stack as local_stack
from schemas.decisions import AdvanceGranted
from services.casebook.adapters.http import create_app as casebook_app
from services.intake.adapters.kafka import KafkaSink
from services.intake.adapters.reads import HttpReadSource
from services.intake.app import create_app
from tests.integration.casebook.conftest import (
    TOKEN,
    CasebookDb,
    Processor,
    Topics,
    casebook_database,
    eventually,
    running,
)
from tests.integration.casebook.conftest import settings_for as casebook_settings
from tests.integration.intake.conftest import Topic, settings_for
from tests.unit.intake.people import SHAOHAI, SUOZHEN, auth, make_id, token_table


def _iso(moment: datetime | None) -> str:
    assert moment is not None
    return moment.isoformat().replace("+00:00", "Z")


class World:
    def __init__(self, api: httpx.AsyncClient, processor: Processor) -> None:
        self.api = api
        self.processor = processor

    async def write(self, token: str, path: str, body: dict[str, Any]) -> uuid.UUID:
        answer = await self.api.post(path, json=body, headers=auth(token))
        assert answer.status_code == 202, answer.text
        return uuid.UUID(answer.json()["event_id"])

    async def register(self, token: str, town: str, case: str, fen: int, person: int) -> uuid.UUID:
        return await self.write(
            token,
            "/v1/cases",
            {
                "town": town,
                "case_id": case,
                "urgency": "urgent",
                "category": "emergency",
                "household_head_id": make_id(person),
                "requested_fen": fen,
                "reason": "房屋进水，生活用品损毁",
            },
        )

    async def pay(self, token: str, town: str, case: str, fen: int) -> uuid.UUID:
        return await self.write(
            token,
            f"/v1/cases/{case}/payments",
            {"town": town, "amount_fen": fen, "method": "bank", "bank_reference": f"B-{case}"},
        )

    async def submission(self, token: str, event_id: uuid.UUID) -> dict[str, Any]:
        answer = await self.api.get(f"/v1/submissions/{event_id}", headers=auth(token))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def settled(self, token: str, event_id: uuid.UUID) -> dict[str, Any]:
        async def done() -> bool:
            return bool((await self.submission(token, event_id))["status"] != "pending")

        await eventually(done, f"submission {event_id} decided or rejected")
        return await self.submission(token, event_id)


@pytest.fixture
async def casebook_db(stack: local_stack.StackInfo) -> AsyncIterator[CasebookDb]:
    async with casebook_database(stack) as db:
        yield db


@pytest.fixture
async def world(
    stack: local_stack.StackInfo, topic: Topic, casebook_db: CasebookDb, unique: str
) -> AsyncIterator[World]:
    """Intake writing to `topic`; the rules deciding from it; the casebook reading what
    they decide and answering intake's reads (in process, over its HTTP API)."""
    from relief_platform.topics import ensure_topics

    topics = Topics(
        intake=topic.name,
        decisions=f"test.intake.decisions.{unique}",
        rejected=f"test.intake.rejected.{unique}",
        group=f"test-intake-emergency-{unique}",
    )
    await ensure_topics(
        stack.kafka_bootstrap, 3, 1, names={topics.decisions: {}, topics.rejected: {}}
    )
    cb_settings = casebook_settings(stack, casebook_db, topics)
    cb_app = casebook_app(cb_settings)
    reads = HttpReadSource(
        casebook_url="http://casebook",
        casebook_token=TOKEN,
        ledger_url="",
        ledger_token="",
        casebook_transport=httpx.ASGITransport(app=cb_app),
    )
    sink = KafkaSink(stack.kafka_bootstrap, topic.name, timeout_s=15)
    app = create_app(
        settings_for(stack.kafka_bootstrap, topic.name),
        sink=sink,
        reads=reads,
        tokens=token_table(),
    )
    await sink.start()
    try:
        async with (
            cb_app.router.lifespan_context(cb_app),
            running(cb_settings),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://intake"
            ) as c,
        ):
            yield World(c, Processor(stack.kafka_bootstrap, topics))
    finally:
        await reads.close()
        await sink.stop()


async def test_each_town_reads_its_own_case_and_what_became_of_its_submissions(
    world: World,
) -> None:
    # the same case id registered by two towns
    suozhen_case = await world.register("tok-suozhen", SUOZHEN, "case-1", 80_000, 1)
    shaohai_case = await world.register("tok-shaohai", SHAOHAI, "case-1", 30_000, 2)
    # a payment for a case Suozhen does not have: accepted at the door (202), refused by
    # the processor, which intake cannot know when it answers
    stray = await world.pay("tok-suozhen", SUOZHEN, "case-404", 10_000)
    before = await world.submission("tok-suozhen", stray)
    assert (before["status"], before["decisions"], before["reason"]) == ("pending", [], None)

    await world.processor.step()
    refused = await world.settled("tok-suozhen", stray)
    assert refused["status"] == "rejected"
    assert "case-404" in refused["reason"] and refused["decisions"] == []
    assert (refused["town"], refused["type"]) == (SUOZHEN, "PaymentConfirmed")
    # nothing of it reached a case: Suozhen has no case-404
    missing = await world.api.get(
        f"/v1/towns/{SUOZHEN}/cases/case-404", headers=auth("tok-suozhen")
    )
    assert missing.status_code == 404

    granted = await world.settled("tok-suozhen", suozhen_case)
    assert granted["status"] == "decided" and granted["correlation_id"] == "case-1"
    assert [d["type"] for d in granted["decisions"]] == ["AdvanceGranted"]
    assert granted["decisions"][0]["case_status"] == "advanced"

    payment = await world.pay("tok-suozhen", SUOZHEN, "case-1", 80_000)
    await world.processor.step()
    paid = await world.settled("tok-suozhen", payment)
    assert paid["status"] == "decided"
    assert [d["type"] for d in paid["decisions"]] == ["ReliefPaid", "DeadlineMet"]
    assert all(d["causation_id"] == str(payment) for d in paid["decisions"])

    # each town reads its own case-1
    mine = await world.api.get(f"/v1/towns/{SUOZHEN}/cases/case-1", headers=auth("tok-suozhen"))
    theirs = await world.api.get(f"/v1/towns/{SHAOHAI}/cases/case-1", headers=auth("tok-shaohai"))
    assert (mine.json()["town"], mine.json()["status"], mine.json()["paid_fen"]) == (
        SUOZHEN,
        "paid",
        80_000,
    )
    assert (theirs.json()["town"], theirs.json()["status"], theirs.json()["granted_fen"]) == (
        SHAOHAI,
        "advanced",
        30_000,
    )
    assert [d["type"] for d in theirs.json()["decisions"]] == ["AdvanceGranted"]
    # Shaohai's open deadlines, due as its grant says; Suozhen's relief deadline was met
    deadlines = await world.api.get(f"/v1/towns/{SHAOHAI}/deadlines", headers=auth("tok-shaohai"))
    [grant] = [
        r for r in world.processor.outputs if isinstance(r, AdvanceGranted) and r.town == SHAOHAI
    ]
    assert [(d["case_id"], d["kind"], d["due_at"]) for d in deadlines.json()] == [
        ("case-1", "relief_24h", _iso(grant.due_at)),
        ("case-1", "paperwork_5d", _iso(grant.paperwork_due_at)),
    ]
    suozhen_open = await world.api.get(
        f"/v1/towns/{SUOZHEN}/deadlines", headers=auth("tok-suozhen")
    )
    assert [d["kind"] for d in suozhen_open.json()] == ["paperwork_5d"]

    # a town cannot read another town's case or submission
    other = await world.api.get(f"/v1/towns/{SUOZHEN}/cases/case-1", headers=auth("tok-shaohai"))
    assert other.status_code == 403 and "paid" not in other.text
    for event_id in (payment, stray, suozhen_case):
        seen = await world.submission("tok-shaohai", event_id)
        assert (seen["status"], seen["decisions"], seen["reason"], seen["town"]) == (
            "pending",
            [],
            None,
            None,
        )
    own = await world.submission("tok-shaohai", shaohai_case)
    assert own["status"] == "decided" and own["town"] == SHAOHAI
    # county staff read both towns; the bureau only its own organisation's submissions
    assert (await world.submission("tok-civil", payment))["status"] == "decided"
    assert (await world.submission("tok-bureau", payment))["status"] == "pending"
    assert (
        await world.api.get(f"/v1/towns/{SHAOHAI}/cases/case-1", headers=auth("tok-auditor"))
    ).json()["granted_fen"] == 30_000
    # a department writes nothing here and reads no cases
    assert (
        await world.api.get(f"/v1/towns/{SHAOHAI}/cases/case-1", headers=auth("tok-dept"))
    ).status_code == 403
