"""Every write endpoint's happy path lands the right record on the (real) intake topic:
a flood in Suozhen, the Zhang household's urgent case, its payment and paperwork, the
county's review, a deliberation, a replenishment and a department's hardship list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from schemas.envelope import Role
from schemas.identity import household_ref
from schemas.intake import (
    AdvanceCancelled,
    CaseReviewed,
    DeliberationDecided,
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
)
from tests.integration.intake.conftest import Topic
from tests.unit.intake.people import KEY, SHAOHAI, SUOZHEN, auth, make_id

ZHANG_ID = make_id(101)
LIU_ID = make_id(102)


async def _one(topic: Topic, answer: httpx.Response) -> object:
    assert answer.status_code == 202, answer.text
    body = answer.json()
    landed = [x for x in await topic.records() if str(x.record.event_id) == body["event_id"]]
    assert len(landed) == 1
    got = landed[0]
    assert got.key == body["town"].encode()
    assert (got.partition, got.offset) == (body["partition"], body["offset"])
    # LogAppendTime: the answer's recorded_at is the broker's stamp on the record
    assert body["recorded_at"] is not None
    stamp = datetime.fromisoformat(body["recorded_at"])
    assert abs(stamp.timestamp() * 1000 - got.timestamp_ms) < 1
    assert got.record.recorded_at == stamp
    return got.record


async def test_incident_reported_updated_closed(client: httpx.AsyncClient, topic: Topic) -> None:
    happened = datetime(2024, 7, 10, 6, 30, tzinfo=UTC)
    answer = await client.post(
        "/v1/incidents",
        headers=auth("tok-bureau"),
        json={
            "town": SUOZHEN,
            "incident_id": "inc-flood-1",
            "kind": "natural_disaster",
            "disaster_subtype": "flood",
            "description": "the Wuhe river broke its bank",
            "casualties": {"dead": 0, "injured": 3},
            "household_head_ids": [ZHANG_ID, LIU_ID],
            "occurred_at": happened.isoformat(),
        },
    )
    rec = await _one(topic, answer)
    assert isinstance(rec, IncidentReported)
    assert rec.household_refs == (household_ref(ZHANG_ID, KEY), household_ref(LIU_ID, KEY))
    assert rec.actor.role is Role.EMERGENCY_BUREAU and rec.occurred_at == happened
    assert rec.correlation_id == "inc-flood-1" and rec.town == SUOZHEN

    answer = await client.post(
        "/v1/incidents/inc-flood-1/updates",
        headers=auth("tok-bureau"),
        json={
            "town": SUOZHEN,
            "casualties": {"dead": 1, "injured": 4},
            "household_head_ids_added": [make_id(103)],
        },
    )
    upd = await _one(topic, answer)
    assert isinstance(upd, IncidentUpdated) and upd.casualties is not None
    assert upd.casualties.dead == 1
    assert upd.household_refs_added == (household_ref(make_id(103), KEY),)

    answer = await client.post(
        "/v1/incidents/inc-flood-1/close",
        headers=auth("tok-bureau"),
        json={"town": SUOZHEN, "note": "water receded"},
    )
    closed = await _one(topic, answer)
    assert isinstance(closed, IncidentClosed) and closed.incident_id == "inc-flood-1"


async def test_a_town_case_from_request_to_paperwork(
    client: httpx.AsyncClient, topic: Topic
) -> None:
    answer = await client.post(
        "/v1/cases",
        headers=auth("tok-suozhen"),
        json={
            "town": SUOZHEN,
            "case_id": "case-zhang-1",
            "urgency": "urgent",
            "category": "emergency",
            "household_head_id": ZHANG_ID,
            "incident_id": "inc-flood-1",
            "requested_fen": 80_000,
            "reason": "house flooded",
            "persons": 3,
        },
    )
    req = await _one(topic, answer)
    assert isinstance(req, ReliefRequested)
    assert req.household_ref == household_ref(ZHANG_ID, KEY) and req.requested_fen == 80_000
    assert req.case_id == "case-zhang-1" and req.persons == 3
    assert ZHANG_ID not in answer.text  # the number never leaves the door

    answer = await client.post(
        "/v1/cases/case-zhang-1/payments",
        headers=auth("tok-suozhen"),
        json={"town": SUOZHEN, "amount_fen": 80_000, "bank_reference": "ICBC-20240710-0001"},
    )
    paid = await _one(topic, answer)
    assert isinstance(paid, PaymentConfirmed) and paid.bank_reference == "ICBC-20240710-0001"

    answer = await client.post(
        "/v1/cases/case-zhang-1/paperwork",
        headers=auth("tok-suozhen"),
        json={"town": SUOZHEN, "note": "signed"},
    )
    assert isinstance(await _one(topic, answer), PaperworkCompleted)


async def test_case_id_is_derived_when_not_given(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await client.post(
        "/v1/cases",
        headers=auth("tok-shaohai"),
        json={
            "town": SHAOHAI,
            "urgency": "urgent",
            "category": "temporary_hardship",
            "household_head_id": LIU_ID,
            "requested_fen": 50_000,
            "reason": "fire",
        },
    )
    req = await _one(topic, answer)
    assert isinstance(req, ReliefRequested)
    assert req.case_id == answer.json()["correlation_id"] and req.case_id.startswith("case-")


async def test_cancel_review_deliberate(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await client.post(
        "/v1/cases/case-a/cancellation",
        headers=auth("tok-suozhen"),
        json={"town": SUOZHEN, "reason": "family moved away"},
    )
    assert isinstance(await _one(topic, answer), AdvanceCancelled)

    answer = await client.post(
        "/v1/cases",
        headers=auth("tok-civil"),
        json={
            "town": SUOZHEN,
            "case_id": "case-b",
            "urgency": "expenditure",
            "category": "serious_illness",
            "household_head_id": LIU_ID,
            "requested_fen": 1_500_000,
            "reason": "leukaemia treatment",
        },
    )
    assert isinstance(await _one(topic, answer), ReliefRequested)

    answer = await client.post(
        "/v1/cases/case-b/reviews",
        headers=auth("tok-civil"),
        json={
            "town": SUOZHEN,
            "outcome": "fraud",
            "approved_fen": 0,
            "fine_multiple": 2,
            "reasons": "income concealed",
        },
    )
    rev = await _one(topic, answer)
    assert isinstance(rev, CaseReviewed) and rev.fine_multiple == 2

    answer = await client.post(
        "/v1/cases/case-b/deliberations",
        headers=auth("tok-civil"),
        json={"town": SUOZHEN, "approved_fen": 1_200_000, "reasons": "R6: major hardship"},
    )
    dec = await _one(topic, answer)
    assert isinstance(dec, DeliberationDecided) and dec.approved_fen == 1_200_000


async def test_finance_funds_and_replenishes(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await client.post(
        f"/v1/towns/{SUOZHEN}/reserve/fundings",
        headers=auth("tok-finance"),
        json={"amount_fen": 5_000_000},
    )
    funded = await _one(topic, answer)
    assert isinstance(funded, ReserveFunded) and funded.correlation_id == f"reserve:{SUOZHEN}"
    answer = await client.post(
        f"/v1/towns/{SUOZHEN}/reserve/replenishments",
        headers=auth("tok-finance"),
        json={"amount_fen": 80_000},
    )
    rep = await _one(topic, answer)
    assert isinstance(rep, ReserveReplenished) and rep.actor.role is Role.FINANCE


async def test_hardship_list_row_by_row(client: httpx.AsyncClient, topic: Topic) -> None:
    csv = (
        "town,household_head_id,category,note\n"
        f"{SUOZHEN},{ZHANG_ID},minimum_living,\n"
        f"{SHAOHAI},{LIU_ID},disabled,wheelchair\n"
        f"{SUOZHEN},{make_id(104)[:-1]}X,disabled,\n"  # wrong check character (unless X)
        f"999999999,{make_id(105)},disabled,\n"
        f"{SUOZHEN},{make_id(106)},astronaut,\n"
        f"{SUOZHEN},{ZHANG_ID},minimum_living,again\n"
    )
    before = await topic.end_offsets()
    answer = await client.post(
        "/v1/hardship-lists",
        headers={**auth("tok-dept"), "Content-Type": "text/csv"},
        content=csv.encode(),
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    by_line = {r["line"]: r for r in body["rows"]}
    assert by_line[2]["accepted"] and by_line[3]["accepted"]
    assert [e["column"] for e in by_line[5]["errors"]] == ["town"]
    assert [e["column"] for e in by_line[6]["errors"]] == ["category"]
    assert "line 2" in by_line[7]["errors"][0]["message"]
    assert make_id(104) not in answer.text and ZHANG_ID not in answer.text
    # one record per town
    assert await topic.end_offsets() == before + 2
    landed = {x.record.town: x.record for x in await topic.records()}
    suozhen = landed[SUOZHEN]
    assert isinstance(suozhen, HardshipListPushed)
    assert suozhen.department == "桓台县医疗保障局"
    assert [r.household_ref for r in suozhen.rows] == [household_ref(ZHANG_ID, KEY)]

    # section 二, P9: civil affairs answers a row of the list, named by its place in the path
    follow_up = {
        "town": SUOZHEN,
        "outcome": "no_relief_needed",
        "reasons": "入户核实：家庭收入稳定",
        "decided_by": "社会救助科 李明",
    }
    path = f"/v1/hardship-lists/{suozhen.event_id}/rows"
    answer = await client.post(f"{path}/0/follow-ups", headers=auth("tok-civil"), json=follow_up)
    followed = await _one(topic, answer)
    assert isinstance(followed, HardshipFollowedUp)
    assert (followed.list_event_id, followed.row) == (suozhen.event_id, 0)
    for bad in ("x", "-1", "5000"):
        answer = await client.post(
            f"{path}/{bad}/follow-ups", headers=auth("tok-civil"), json=follow_up
        )
        assert answer.status_code == 422, answer.text
        assert [e["loc"] for e in answer.json()["detail"]] == [["path", "row"]]


async def test_occurred_at_defaults_to_now(client: httpx.AsyncClient, topic: Topic) -> None:
    before = datetime.now(UTC)
    answer = await client.post(
        "/v1/cases/case-c/paperwork", headers=auth("tok-suozhen"), json={"town": SUOZHEN}
    )
    rec = await _one(topic, answer)
    assert isinstance(rec, PaperworkCompleted)
    assert before - timedelta(seconds=1) <= rec.occurred_at <= datetime.now(UTC)


async def test_metrics_count_requests_by_route_template_never_by_case(
    client: httpx.AsyncClient, topic: Topic
) -> None:
    def count(text: str) -> float:
        prefix = (
            'relief_intake_requests_total{method="POST",'
            'route="/v1/towns/{town}/reserve/replenishments",status="202"}'
        )
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = count((await client.get("/metrics/")).text)
    answer = await client.post(
        f"/v1/towns/{SUOZHEN}/reserve/replenishments",
        headers=auth("tok-finance"),
        json={"amount_fen": 1_000},
    )
    assert answer.status_code == 202
    text = (await client.get("/metrics/")).text
    assert count(text) == before + 1
    assert SUOZHEN not in text  # a path's values never become labels
