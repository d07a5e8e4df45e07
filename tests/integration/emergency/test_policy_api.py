"""Policy fidelity through the real path: the intake API -> Kafka -> the running worker.

One flood in Qifeng, one household: emergency relief, then transitional living relief,
then temporary hardship relief - R1's three layers for one incident - are all granted,
and the same layer asked for again is refused with the first grant named (P6). Every
approval names the person whose command it was (section 十).
"""

# ruff: noqa: F811
from __future__ import annotations

import subprocess
import uuid
from typing import Any

import httpx
import pytest

from schemas import decisions as d
from schemas.envelope import Role
from services.intake.adapters.kafka import KafkaSink
from services.intake.adapters.reads import NoReadSource
from services.intake.app import create_app
from services.intake.domain.tokens import Principal, TokenTable, token_hash
from tests.integration.emergency.test_worker import (
    QIFENG,
    Env,
    consume_until,
    env,  # noqa: F401 - the fixture: unique topics, a tmp folder with worker.log
    worker,  # noqa: F401 - the fixture: worker processes, stopped after the test
)
from tests.integration.intake.conftest import settings_for
from tests.unit.intake.people import TOKENS, make_id, principal

pytestmark = pytest.mark.integration

TOWN_TOKEN = "tok-qifeng"
HOLDER = "起凤镇民政办 李某"


def _tokens() -> TokenTable:
    """The test tokens, and one for Qifeng's town government (where the flood is)."""
    qifeng = Principal(
        sha256=token_hash(TOWN_TOKEN),
        role=Role.TOWN,
        org="起凤镇人民政府",
        town=QIFENG,
        holder=HOLDER,
    )
    others = {token_hash(t): principal(t) for t in TOKENS}
    return TokenTable({**others, qifeng.sha256: qifeng})


async def test_three_layers_of_r1_for_one_household_and_one_flood_are_all_granted(
    env: Env, worker: list[subprocess.Popen[bytes]]
) -> None:
    settings = settings_for(env.bootstrap, env.intake)
    sink = KafkaSink(env.bootstrap, env.intake, timeout_s=15)
    await sink.start()
    app = create_app(settings, sink=sink, reads=NoReadSource(), tokens=_tokens())
    worker.append(env.start_worker())
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as client:

            async def post(path: str, token: str, body: dict[str, Any]) -> None:
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": f"policy-{uuid.uuid4()}",
                }
                answer = await client.post(path, json=body, headers=headers)
                assert answer.status_code == 202, answer.text

            await post(
                "/v1/incidents",
                "tok-bureau",
                {
                    "town": QIFENG,
                    "incident_id": "flood-0720",
                    "kind": "natural_disaster",
                    "disaster_subtype": "flood",
                    "household_head_ids": [make_id(1)],
                },
            )
            household = {
                "town": QIFENG,
                "household_head_id": make_id(1),
                "household_member_ids": [make_id(2)],
                "incident_id": "flood-0720",
            }
            layers = [
                ("em", "urgent", "emergency", 80_000),
                ("tr", "urgent", "transitional_living", 10_000),
                ("th", "expenditure", "temporary_hardship", 150_000),
            ]
            for case, urgency, category, amount in layers:
                await post(
                    "/v1/cases",
                    TOWN_TOKEN,
                    {
                        **household,
                        "case_id": case,
                        "urgency": urgency,
                        "category": category,
                        "requested_fen": amount,
                        "reason": "洪水受灾",
                    },
                )
            # the same layer again, asked for by another member as the head: refused
            await post(
                "/v1/cases",
                TOWN_TOKEN,
                {
                    **household,
                    "household_head_id": make_id(2),
                    "household_member_ids": [],
                    "case_id": "em-again",
                    "urgency": "urgent",
                    "category": "emergency",
                    "requested_fen": 80_000,
                    "reason": "洪水受灾",
                },
            )

        def complete(got: list[Any]) -> bool:
            firsts = [r for r in got if isinstance(r, d.Decision) and r.opened is not None]
            refused = [r for r in got if isinstance(r, d.AdvanceRefused)]
            return len(firsts) >= 3 and len(refused) >= 1

        got = await consume_until(env.bootstrap, env.decisions, complete, workers=worker)
    finally:
        await sink.stop()
    opened = {r.correlation_id: r for r in got if isinstance(r, d.Decision) and r.opened}
    assert isinstance(opened["em"], d.AdvanceGranted)
    assert isinstance(opened["tr"], d.ReliefApproved)
    assert isinstance(opened["th"], d.ReliefApproved)
    for case in ("tr", "th"):  # approved by the town's own person, within its authority
        approval = opened[case]
        assert isinstance(approval, d.ReliefApproved)
        assert approval.decided_by is not None and approval.decided_by.role is Role.TOWN
        assert approval.decided_by.person == HOLDER  # the token's holder (section 十)
        assert approval.approver_level is d.ApproverLevel.TOWN
    [refused] = [r for r in got if isinstance(r, d.AdvanceRefused)]
    assert refused.correlation_id == "em-again"
    assert refused.reason is d.RefusalReason.DUPLICATE
    assert refused.figures["previous_case_id"] == "em" and "em" in refused.reasons
    # the clear ID numbers never reached Kafka
    assert not [r for r in got if make_id(1) in r.model_dump_json()]
