"""Every refusal answers its status with a reason and leaves the topic's end offset as it
was (STYLE: after every refused command, assert nothing changed)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from deploy.local import stack as local_stack
from services.intake.adapters.kafka import KafkaSink
from services.intake.adapters.reads import NoReadSource
from services.intake.app import create_app
from tests.integration.intake.conftest import Topic, settings_for
from tests.unit.intake.people import SHAOHAI, SUOZHEN, auth, bad_check, make_id, token_table

ZHANG_ID = make_id(201)


def case(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "town": SUOZHEN,
        "case_id": "case-r1",
        "urgency": "urgent",
        "category": "emergency",
        "household_head_id": ZHANG_ID,
        "requested_fen": 80_000,
        "reason": "house flooded",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


async def unchanged(topic: Topic, act: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    before = await topic.end_offsets()
    answer = await act()
    assert await topic.end_offsets() == before, answer.text
    return answer


BAD_CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("float amount", case(requested_fen=800.5), ["body", "requested_fen"]),
    ("integral float amount", case(requested_fen=800.0), ["body", "requested_fen"]),
    ("string amount", case(requested_fen="80000"), ["body", "requested_fen"]),
    ("negative amount", case(requested_fen=-1), ["body", "requested_fen"]),
    ("zero amount", case(requested_fen=0), ["body", "requested_fen"]),
    ("oversized amount", case(requested_fen=10**15), ["body", "requested_fen"]),
    ("bool amount", case(requested_fen=True), ["body", "requested_fen"]),
    ("unknown town", case(town="370321999"), ["body", "town"]),
    ("malformed town", case(town="Suozhen"), ["body", "town"]),
    (
        "invalid ID check digit",
        case(household_head_id=bad_check(ZHANG_ID)),
        ["body", "household_head_id"],
    ),
    ("ID too short", case(household_head_id="37032119800517"), ["body", "household_head_id"]),
    ("unknown field", case(colour="red"), ["body", "colour"]),
    ("missing field", case(reason=...), ["body", "reason"]),
    ("wrong type", case(persons="three"), ["body", "persons"]),
    ("wrong enum", case(urgency="whenever"), ["body", "urgency"]),
    ("string too long", case(reason="x" * 2_001), ["body", "reason"]),
    ("origin only for vagrants", case(origin_county="Boxing"), ["body"]),
    # a NUL would be kept by Kafka for good and refused by every jsonb reader after it
    ("NUL in text", case(reason="房屋\u0000进水"), ["body", "reason"]),
    ("control character in text", case(reason="房屋\u001b[31m进水"), ["body", "reason"]),
]


@pytest.mark.parametrize(("name", "body", "loc"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
async def test_bad_input_is_422_with_its_path(
    client: httpx.AsyncClient, topic: Topic, name: str, body: dict[str, Any], loc: list[Any]
) -> None:
    answer = await unchanged(
        topic, lambda: client.post("/v1/cases", headers=auth("tok-suozhen"), json=body)
    )
    assert answer.status_code == 422, answer.text
    locs = [e["loc"] for e in answer.json()["detail"]]
    assert loc in locs, locs
    assert ZHANG_ID not in answer.text and bad_check(ZHANG_ID) not in answer.text


async def test_bad_ids_in_a_list_name_their_index(client: httpx.AsyncClient, topic: Topic) -> None:
    ids = [make_id(1), bad_check(make_id(2)), make_id(3), "not-an-id"]
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/incidents",
            headers=auth("tok-bureau"),
            json={
                "town": SUOZHEN,
                "incident_id": "inc-x",
                "kind": "fire",
                "household_head_ids": ids,
            },
        ),
    )
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [
        ["body", "household_head_ids", 1],
        ["body", "household_head_ids", 3],
    ]


async def test_record_rules_are_422(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases/case-r1/payments",
            headers=auth("tok-suozhen"),
            json={"town": SUOZHEN, "amount_fen": 100, "method": "bank"},
        ),
    )
    assert answer.status_code == 422 and "bank_reference" in answer.text  # P9
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/incidents",
            headers=auth("tok-bureau"),
            json={"town": SUOZHEN, "incident_id": "inc-y", "kind": "natural_disaster"},
        ),
    )
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body"]


async def test_not_json_and_body_too_large(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases",
            headers={**auth("tok-suozhen"), "Content-Type": "application/json"},
            content=b"{not json",
        ),
    )
    assert answer.status_code == 422
    huge = case(reason="x" * 300_000)
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases",
            headers=auth("tok-suozhen"),
            content=json.dumps(huge).encode(),
        ),
    )
    assert answer.status_code == 413 and "over" in answer.json()["detail"]


WRONG_BODIES: list[tuple[str, dict[str, str], bytes, list[Any], str]] = [
    ("empty body", {"Content-Type": "application/json"}, b"", ["body"], "missing"),
    ("form, not JSON", {"Content-Type": "text/plain"}, b"town=1", ["body"], "Content-Type"),
    ("no media type", {}, json.dumps({"town": SUOZHEN}).encode(), ["body"], "Content-Type"),
    ("JSON that is no object", {"Content-Type": "application/json"}, b"[1]", ["body"], ""),
]


@pytest.mark.parametrize(
    ("name", "headers", "content", "loc", "said"), WRONG_BODIES, ids=[w[0] for w in WRONG_BODIES]
)
async def test_a_body_that_is_no_json_object_is_422_at_the_body(
    client: httpx.AsyncClient,
    topic: Topic,
    name: str,
    headers: dict[str, str],
    content: bytes,
    loc: list[Any],
    said: str,
) -> None:
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases", headers={**auth("tok-suozhen"), **headers}, content=content
        ),
    )
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == loc and said in error["msg"] + error["type"], error


async def test_a_write_checks_the_caller_then_the_path_then_the_body(
    client: httpx.AsyncClient, topic: Topic
) -> None:
    """401 and 403 come before anything about the request is said (a stranger learns
    nothing of what a body should hold); then every 422 names where it was wrong."""
    bad_body = b"{not json"
    path = "/v1/cases/has space/payments"
    json_type = {"Content-Type": "application/json"}
    for headers, status in (
        (json_type, 401),
        ({**json_type, **auth("tok-nobody")}, 401),
        ({**json_type, **auth("tok-finance")}, 403),
        ({**json_type, **auth("tok-suozhen")}, 422),
    ):
        answer = await unchanged(
            topic, functools.partial(client.post, path, headers=headers, content=bad_body)
        )
        assert answer.status_code == status, answer.text
    locs = [e["loc"] for e in answer.json()["detail"]]
    assert locs == [["path", "case_id"]], locs  # the path first, the body not yet read
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases/c-1/payments",
            headers={**auth("tok-suozhen"), "Idempotency-Key": "a b", **json_type},
            content=bad_body,
        ),
    )
    assert [e["loc"] for e in answer.json()["detail"]] == [["header", "Idempotency-Key"]]
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases/c-1/payments", headers={**auth("tok-suozhen"), **json_type}, content=bad_body
        ),
    )
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body"] and error["type"] == "json_invalid", error


async def test_csv_over_the_row_limit_is_refused(client: httpx.AsyncClient, topic: Topic) -> None:
    rows = "".join(f"{SUOZHEN},{make_id(1)},disabled\n" for _ in range(5_001))
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/hardship-lists",
            headers={**auth("tok-dept"), "Content-Type": "text/csv"},
            content=("town,household_head_id,category\n" + rows).encode(),
        ),
    )
    assert answer.status_code == 422 and "5000" in answer.text
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/hardship-lists",
            headers={**auth("tok-dept"), "Content-Type": "text/csv"},
            content=f"town,household_head_id,category\n{SUOZHEN},{bad_check(ZHANG_ID)},x\n".encode(),
        ),
    )
    assert answer.status_code == 422 and answer.json()["rejected"] == 1


# ---------------------------------------------------------------- who may do what


REFUSED: list[tuple[str, int, str, str, dict[str, Any]]] = [
    ("no token", 401, "", "/v1/cases", case()),
    ("unknown token", 401, "tok-nobody", "/v1/cases", case()),
    ("other town", 403, "tok-shaohai", "/v1/cases", case()),
    (
        "town asks for a second grant (P6: civil affairs only)",
        403,
        "tok-suozhen",
        "/v1/cases",
        case(second_grant_reason="房屋二次倒塌"),
    ),
    (
        "cash with no reason (P9)",
        422,
        "tok-suozhen",
        "/v1/cases/c1/payments",
        {"town": SUOZHEN, "amount_fen": 100, "method": "cash"},
    ),
    (
        "civil affairs declares an emergency period (R2: the bureau)",
        403,
        "tok-civil",
        "/v1/incidents/flood-1/emergency-period",
        {"town": SUOZHEN, "reason": "x"},
    ),
    ("finance registers a case", 403, "tok-finance", "/v1/cases", case()),
    ("auditor writes", 403, "tok-auditor", "/v1/cases", case()),
    (
        "department reports incident",
        403,
        "tok-dept",
        "/v1/incidents",
        {"town": SUOZHEN, "incident_id": "i", "kind": "fire"},
    ),
    (
        "town reviews",
        403,
        "tok-suozhen",
        "/v1/cases/c/reviews",
        {"town": SUOZHEN, "outcome": "confirmed", "approved_fen": 1},
    ),
    (
        "other town confirms payment",
        403,
        "tok-shaohai",
        "/v1/cases/c/payments",
        {"town": SUOZHEN, "amount_fen": 1, "method": "cash"},
    ),
    (
        "town replenishes",
        403,
        "tok-suozhen",
        f"/v1/towns/{SUOZHEN}/reserve/replenishments",
        {"amount_fen": 1},
    ),
    (
        "civil affairs replenishes",
        403,
        "tok-civil",
        f"/v1/towns/{SUOZHEN}/reserve/replenishments",
        {"amount_fen": 1},
    ),
]


@pytest.mark.parametrize(
    ("name", "status", "token", "path", "body"), REFUSED, ids=[r[0] for r in REFUSED]
)
async def test_refusals_leave_no_record(
    client: httpx.AsyncClient,
    topic: Topic,
    name: str,
    status: int,
    token: str,
    path: str,
    body: dict[str, Any],
) -> None:
    headers = auth(token) if token else {}
    answer = await unchanged(topic, lambda: client.post(path, headers=headers, json=body))
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]  # a reason
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"


async def test_cross_town_reads_refused(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"/v1/towns/{SUOZHEN}/reserve", headers=auth("tok-shaohai"))
    assert answer.status_code == 403 and SHAOHAI in answer.json()["detail"]
    answer = await client.get(f"/v1/towns/{SUOZHEN}/deadlines", headers=auth("tok-dept"))
    assert answer.status_code == 403
    # a case is read by (town, case id): another town's path is refused before any read
    answer = await client.get(f"/v1/towns/{SUOZHEN}/cases/case-r1", headers=auth("tok-shaohai"))
    assert answer.status_code == 403 and SHAOHAI in answer.json()["detail"]


async def test_reads_without_a_read_side_are_503(client: httpx.AsyncClient) -> None:
    for path in (
        f"/v1/towns/{SUOZHEN}/reserve",
        f"/v1/towns/{SUOZHEN}/deadlines",
        f"/v1/towns/{SUOZHEN}/cases/case-r1",
        "/v1/submissions/6f1f3b7e-4c1d-5a2e-9b57-2e6f0c3d8a41",
    ):
        answer = await client.get(path, headers=auth("tok-suozhen"))
        assert answer.status_code == 503
        assert "read side not configured" in answer.json()["detail"]


# ---------------------------------------------------------------- idempotency


async def test_retry_returns_the_first_answer(client: httpx.AsyncClient, topic: Topic) -> None:
    headers = {**auth("tok-suozhen"), "Idempotency-Key": "zhang-2024-07-10-1"}
    first = await client.post("/v1/cases", headers=headers, json=case())
    assert first.status_code == 202
    before = await topic.end_offsets()
    again = await unchanged(topic, lambda: client.post("/v1/cases", headers=headers, json=case()))
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await topic.end_offsets() == before

    changed = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases", headers=headers, json=case(requested_fen=90_000, reason="two houses")
        ),
    )
    assert changed.status_code == 409
    assert changed.json()["differing_fields"] == ["reason", "requested_fen"]

    # another organisation's identical key is its own key
    other = await client.post(
        "/v1/cases",
        json=case(town=SHAOHAI),
        headers={**auth("tok-shaohai"), "Idempotency-Key": "zhang-2024-07-10-1"},
    )
    assert other.status_code == 202 and other.json()["event_id"] != first.json()["event_id"]


async def test_event_id_survives_a_restart(
    stack: local_stack.StackInfo, topic: Topic, client: httpx.AsyncClient
) -> None:
    """A second intake instance (empty cache) produces the same event_id for the same key,
    so the processor keeps the record once."""
    headers = {**auth("tok-suozhen"), "Idempotency-Key": "k-restart"}
    first = await client.post("/v1/cases", headers=headers, json=case())
    sink = KafkaSink(stack.kafka_bootstrap, topic.name, timeout_s=15)
    app = create_app(
        settings_for(stack.kafka_bootstrap, topic.name),
        sink=sink,
        reads=NoReadSource(),
        tokens=token_table(),
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://other"
        ) as other:
            second = await other.post("/v1/cases", headers=headers, json=case())
    finally:
        await sink.stop()
    assert second.status_code == 202
    assert second.json()["event_id"] == first.json()["event_id"]
    assert second.json()["correlation_id"] == first.json()["correlation_id"]


async def test_bad_idempotency_key_is_422(client: httpx.AsyncClient, topic: Topic) -> None:
    answer = await unchanged(
        topic,
        lambda: client.post(
            "/v1/cases",
            headers={**auth("tok-suozhen"), "Idempotency-Key": "has space"},
            json=case(),
        ),
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


# ---------------------------------------------------------------- Kafka away


async def test_kafka_unavailable_is_503_with_retry_after(stack: local_stack.StackInfo) -> None:
    dead = "127.0.0.1:1"  # nothing listens there
    settings = settings_for(dead, "nowhere", intake_produce_timeout_s=1.0)
    sink = KafkaSink(dead, "nowhere", timeout_s=1.0, request_timeout_ms=1_000)
    app = create_app(settings, sink=sink, reads=NoReadSource(), tokens=token_table())
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as c:
            answer = await c.post("/v1/cases", headers=auth("tok-suozhen"), json=case())
    finally:
        await sink.stop()
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == str(settings.intake_retry_after_s)
    assert "the outcome is unknown" in answer.json()["detail"]
    assert "same Idempotency-Key" in answer.json()["detail"]
