"""One flood through the whole service, as its users drive it, and every fen accounted.

Every service runs as its own process on the real Kafka and PostgreSQL (intake, the
processor and its clock, the ledger, the casebook and its reads, the dashboard): the
bureau reports a flood, a town registers urgent cases through the API, pays some and
cancels others. Then what each reader says must agree with the policy and with each
other: every submission decided; the reserve the ledger holds equal to what the cases
imply (R4, R5: each advance held on the town's reserve, paid or released); the casebook's
case statuses the same story; and the ledger's chain verified.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.local import stack as local_stack
from deploy.local.demo import resident_id
from tests.e2e.stack_procs import Running, whole_stack

pytestmark = pytest.mark.e2e

QIFENG = "370321101"
TIANZHUANG = "370321102"
RESERVE_FEN = 5_000_000  # R4: 50,000 yuan
AMOUNT_FEN = 80_000  # under the 1,000-yuan advance cap (P3): granted whole, at once
N_CASES, N_PAID, N_CANCELLED = 24, 8, 4
DECIDED_S = 120.0


@pytest.fixture(scope="module")
def running(
    stack: local_stack.StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    # (the suite's servers, started by the `stack` fixture if they are not running)
    with whole_stack(stack, tmp_path_factory.mktemp("money-stack")) as r:
        yield r


async def write(
    client: httpx.AsyncClient, token: str, path: str, body: dict[str, Any], key: str
) -> str:
    """A write through intake; the event id of its 202."""
    answer = await client.post(
        path,
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    assert answer.status_code == 202, f"{path}: {answer.status_code} {answer.text[:300]}"
    return str(answer.json()["event_id"])


async def all_decided(client: httpx.AsyncClient, token: str, event_ids: list[str]) -> None:
    """Every submission read back as decided (none rejected, none left pending)."""
    waiting = set(event_ids)
    deadline = time.monotonic() + DECIDED_S
    while waiting:
        for event_id in sorted(waiting):
            got = await client.get(
                f"/v1/submissions/{event_id}", headers={"Authorization": f"Bearer {token}"}
            )
            assert got.status_code == 200, got.text[:300]
            status = got.json()["status"]
            assert status != "rejected", got.json()
            if status == "decided":
                waiting.discard(event_id)
        assert time.monotonic() < deadline, f"{len(waiting)} submissions never decided"
        if waiting:
            await asyncio.sleep(0.5)


async def test_a_flood_through_every_service_accounts_for_every_fen(running: Running) -> None:
    bureau, town = running.tokens["bureau"], running.tokens["qifeng"]
    cases = [f"e2e-{n:03d}" for n in range(1, N_CASES + 1)]
    async with httpx.AsyncClient(base_url=running.intake, timeout=30) as api:
        flood = await write(
            api,
            bureau,
            "/v1/incidents",
            {
                "town": QIFENG,
                "incident_id": "flood-e2e",
                "kind": "natural_disaster",
                "disaster_subtype": "flood",
                "description": "乌河漫堤",
                "household_head_ids": [resident_id(n) for n in range(1, N_CASES + 1)],
            },
            "e2e-flood",
        )
        await all_decided(api, bureau, [flood])
        registered = [
            await write(
                api,
                town,
                "/v1/cases",
                {
                    "town": QIFENG,
                    "case_id": case,
                    "urgency": "urgent",
                    "category": "emergency",
                    "household_head_id": resident_id(n),
                    "requested_fen": AMOUNT_FEN,
                    "incident_id": "flood-e2e",
                    "reason": "房屋进水",
                },
                f"e2e-register-{case}",
            )
            for n, case in enumerate(cases, start=1)
        ]
        await all_decided(api, town, registered)
        paid = cases[:N_PAID]
        cancelled = cases[N_PAID : N_PAID + N_CANCELLED]
        later = [
            await write(
                api,
                town,
                f"/v1/cases/{case}/payments",
                {"town": QIFENG, "amount_fen": AMOUNT_FEN, "bank_reference": f"RCB-{case}"},
                f"e2e-pay-{case}",
            )
            for case in paid
        ] + [
            await write(
                api,
                town,
                f"/v1/cases/{case}/cancellation",
                {"town": QIFENG, "reason": "户主已由亲属安置"},
                f"e2e-cancel-{case}",
            )
            for case in cancelled
        ]
        await all_decided(api, town, later)

        # the casebook tells the same story, case by case
        listed = await api.get(
            "/v1/cases",
            params={"town": QIFENG, "incident_id": "flood-e2e", "limit": 500},
            headers={"Authorization": f"Bearer {town}"},
        )
        assert listed.status_code == 200, listed.text[:300]
        body = listed.json()
        rows = body["cases"] if isinstance(body, dict) else body
        statuses = Counter(r["status"] for r in rows if r["case_id"] in cases)
        held = N_CASES - N_PAID - N_CANCELLED
        assert statuses == {"paid": N_PAID, "cancelled": N_CANCELLED, "advanced": held}

        # the ledger's reserve: every advance held on it, the paid ones paid, the
        # cancelled ones back (R4, R5) - read once the ledger has caught up
        want = {
            "size_fen": RESERVE_FEN,
            "held_fen": held * AMOUNT_FEN,
            "paid_fen": N_PAID * AMOUNT_FEN,
            "available_fen": RESERVE_FEN - (held + N_PAID) * AMOUNT_FEN,
        }
        deadline = time.monotonic() + DECIDED_S
        while True:
            reserve = await api.get(
                f"/v1/towns/{QIFENG}/reserve", headers={"Authorization": f"Bearer {town}"}
            )
            assert reserve.status_code == 200, reserve.text[:300]
            got = {k: reserve.json()[k] for k in want}
            if got == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert got == want

    # and the chain of the ledger verifies, as finance sees it (signed in: the token is
    # held in a Secure cookie, which a browser keeps on localhost; here it is sent as is)
    finance = running.tokens["finance"]
    async with httpx.AsyncClient(base_url=running.dashboard, timeout=60) as dashboard:
        signin = await dashboard.post(
            "/signin", data={"token": finance}, headers={"Origin": running.dashboard}
        )
        assert signin.status_code == 303, signin.text[:300]
        verified = await dashboard.post(
            "/api/verify",
            headers={"Origin": running.dashboard, "Cookie": f"relief_dashboard={finance}"},
        )
        assert verified.status_code == 200, verified.text[:300]
        assert verified.json()["ok"] is True, verified.json()


async def decided(client: httpx.AsyncClient, token: str, event_id: str) -> dict[str, Any]:
    """The submission once decided (its decisions), waiting at most DECIDED_S."""
    await all_decided(client, token, [event_id])
    got = await client.get(
        f"/v1/submissions/{event_id}", headers={"Authorization": f"Bearer {token}"}
    )
    return dict(got.json())


async def test_the_same_household_in_another_town_is_refused_naming_the_first_grant(
    running: Running,
) -> None:
    """P6 across towns, through intake, the county's claims stage and both towns' worker:
    a household granted emergency relief in Qifeng asks in Tianzhuang for the same cause
    and is refused in writing, the first grant named; once Qifeng cancels its case, the
    household's request in Tianzhuang is granted."""
    qifeng, tianzhuang = running.tokens["qifeng"], running.tokens["tianzhuang"]
    head = resident_id(77)  # no household of the flood story (1..N_CASES)
    body: dict[str, Any] = {
        "urgency": "urgent",
        "category": "emergency",
        "household_head_id": head,
        "requested_fen": AMOUNT_FEN,
        "reason": "房屋倒塌",
    }
    async with httpx.AsyncClient(base_url=running.intake, timeout=30) as api:
        first = await decided(
            api,
            qifeng,
            await write(
                api, qifeng, "/v1/cases",
                {**body, "town": QIFENG, "case_id": "move-q"}, "p6-q",
            ),
        )  # fmt: skip
        assert [x["type"] for x in first["decisions"]][:1] == ["AdvanceGranted"], first
        second = await decided(
            api,
            tianzhuang,
            await write(
                api, tianzhuang, "/v1/cases",
                {**body, "town": TIANZHUANG, "case_id": "move-t"}, "p6-t",
            ),
        )  # fmt: skip
        [refused] = [x for x in second["decisions"] if x["type"] == "AdvanceRefused"]
        assert refused["rule"] == "P6", refused
        assert refused["figures"]["previous_case_id"] == "move-q", refused
        assert refused["reason"] and "move-q" in refused["reason"], refused
        assert not [x for x in second["decisions"] if x["type"] == "AdvanceGranted"]
        voided = await decided(
            api,
            qifeng,
            await write(
                api, qifeng, "/v1/cases/move-q/cancellation",
                {"town": QIFENG, "reason": "户主已迁往田庄镇"}, "p6-q-cancel",
            ),
        )  # fmt: skip
        assert "AdvanceVoided" in [x["type"] for x in voided["decisions"]], voided
        third = await decided(
            api,
            tianzhuang,
            await write(
                api, tianzhuang, "/v1/cases",
                {**body, "town": TIANZHUANG, "case_id": "move-t2"}, "p6-t2",
            ),
        )  # fmt: skip
        assert "AdvanceGranted" in [x["type"] for x in third["decisions"]], third
