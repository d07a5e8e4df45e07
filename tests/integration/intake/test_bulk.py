"""Bulk intake (issue 14) against the real Kafka and PostgreSQL: a town clerk sends a
morning's flood list as NDJSON, with the mistakes such lists have; each line is answered
as its single endpoint would answer it, only the good lines reach the topic, and sending
the same file again records nothing new."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from deploy.local import stack as local_stack
from services.cli import main
from services.intake.adapters import idempotency_store
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.integration.intake.conftest import PARTITIONS, Topic, settings_for
from tests.integration.intake.test_refusals import case
from tests.integration.servers import serving
from tests.unit.intake.people import SHAOHAI, SUOZHEN, bad_check, make_id, token_table

pytestmark = pytest.mark.integration

MAX_LINE = 4_096
NDJSON = {"Content-Type": "application/x-ndjson"}


def _on(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


@pytest.fixture
async def keys_db(stack: local_stack.StackInfo, fresh_database: str) -> AsyncIterator[str]:
    name = fresh_database.rsplit("/", 1)[1]
    await idempotency_store.migrate(_on(stack.owner_url, name), local_stack.APP_ROLE)
    yield _on(stack.app_url, name)


def _settings(stack: local_stack.StackInfo, topic: Topic, keys_url: str) -> IntakeSettings:
    return settings_for(
        stack.kafka_bootstrap,
        topic.name,
        intake_keys_database_url=keys_url,
        intake_bulk_max_line_bytes=MAX_LINE,
        intake_bulk_batch_lines=4,  # several batches, so batching itself is exercised
    )


@pytest.fixture
def server(stack: local_stack.StackInfo, topic: Topic, keys_db: str) -> Iterator[str]:
    """A real uvicorn server (streamed bodies as a real client sends them), keys in
    PostgreSQL."""
    with serving(create_app(_settings(stack, topic, keys_db), tokens=token_table())) as url:
        yield url


def line(kind: str, key: str | None, body: dict[str, Any], **path: Any) -> str:
    value: dict[str, Any] = {"type": kind, "body": body}
    if key is not None:
        value["idempotency_key"] = key
    if path:
        value["path"] = path
    return json.dumps(value, ensure_ascii=False)


def flood_list() -> str:
    wang, li = make_id(401), make_id(402)
    lines = [
        line("register_case", "flood-wang", case(case_id="wang", household_head_id=wang)),  # 1
        '{"type": "register_case", "idempotency_key": "broken", "body": {',  # 2
        line("register_case", "flood-float", case(case_id="float", requested_fen=800.5)),  # 3
        line("register_case", "flood-other", case(case_id="other", town=SHAOHAI)),  # 4
        line("register_case", "flood-li", case(case_id="li", household_head_id=li)),  # 5
        line(  # 6: the same key, another amount
            "register_case",
            "flood-wang",
            case(case_id="wang", household_head_id=wang, requested_fen=90_000),
        ),
        line("register_case", "flood-wang", case(case_id="wang", household_head_id=wang)),  # 7
        line("register_case", None, case(case_id="nokey")),  # 8
        line("transfer_money", "flood-x", {"town": SUOZHEN}),  # 9
        "",  # 10: blank, skipped
        line("register_case", "flood-long", case(case_id="long", reason="水" * MAX_LINE)),  # 11
        line("register_case", "flood-bad-id", case(case_id="bad", household_head_id=bad_check(li))),
        line(  # 13: the payment of line 1's case, by its path parameter
            "confirm_payment",
            "flood-wang-paid",
            {"town": SUOZHEN, "amount_fen": 80_000, "bank_reference": "BK-1"},
            case_id="wang",
        ),
    ]
    return "\n".join(lines) + "\n"


async def post_bulk(url: str, text: str, token: str = "tok-suozhen") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            url + "/v1/bulk",
            content=text.encode("utf-8"),
            headers={**NDJSON, "Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(x) for x in answer.text.splitlines()]


async def test_a_flood_list_is_answered_line_by_line(server: str, topic: Topic) -> None:
    before = await topic.end_offsets()
    results = await post_bulk(server, flood_list())
    by_line = {r["line"]: r for r in results}
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    status = {n: r["status"] for n, r in by_line.items()}
    assert status == {
        1: 202, 2: 422, 3: 422, 4: 403, 5: 202, 6: 409, 7: 202,
        8: 428, 9: 422, 11: 413, 12: 422, 13: 202,
    }  # fmt: skip
    assert "malformed JSON" in by_line[2]["error"]
    assert by_line[3]["detail"][0]["loc"] == ["body", "requested_fen"]
    assert by_line[3]["error"].startswith("body.requested_fen:")
    assert f"town {SUOZHEN} may act only for its own town" in by_line[4]["error"]
    assert by_line[6]["differing_fields"] == ["requested_fen"]
    assert by_line[7]["replayed"] is True and by_line[7]["event_id"] == by_line[1]["event_id"]
    assert "idempotency_key" in by_line[8]["error"]
    assert "unknown command 'transfer_money'" in by_line[9]["error"]
    assert f"line over {MAX_LINE} bytes" in by_line[11]["error"]
    assert by_line[12]["detail"][0]["loc"] == ["body", "household_head_id"]
    assert make_id(402) not in json.dumps(results)  # the ID number is never echoed
    assert by_line[13]["correlation_id"] == "wang" and by_line[13]["type"] == "PaymentConfirmed"

    # exactly the good lines are on the topic, in the order of the file within a town
    landed = await topic.records()
    assert await topic.end_offsets() == before + 3
    ids = [str(x.record.event_id) for x in sorted(landed, key=lambda x: x.offset)]
    assert ids == [by_line[n]["event_id"] for n in (1, 5, 13)]
    assert all(x.key == SUOZHEN.encode() for x in landed)

    # the same file again: every good line replays its first answer, nothing is produced
    again = {r["line"]: r for r in await post_bulk(server, flood_list())}
    assert {n: r["status"] for n, r in again.items()} == status
    for n in (1, 5, 13):
        assert again[n]["replayed"] is True and again[n]["event_id"] == by_line[n]["event_id"]
    assert await topic.end_offsets() == before + 3

    # one key store for both doors: the single endpoint replays the bulk line's answer
    async with httpx.AsyncClient(timeout=30) as http:
        single = await http.post(
            server + "/v1/cases",
            json=case(case_id="li", household_head_id=make_id(402)),
            headers={"Authorization": "Bearer tok-suozhen", "Idempotency-Key": "flood-li"},
        )
    assert single.status_code == 202 and single.json()["event_id"] == by_line[5]["event_id"]
    assert single.headers["Idempotent-Replayed"] == "true"
    assert await topic.end_offsets() == before + 3


async def test_refusals_of_the_whole_request(server: str, topic: Topic) -> None:
    before = await topic.end_offsets()
    body = flood_list().encode()
    async with httpx.AsyncClient(timeout=30) as http:
        no_token = await http.post(server + "/v1/bulk", content=body, headers=NDJSON)
        as_json = await http.post(
            server + "/v1/bulk",
            content=body,
            headers={"Authorization": "Bearer tok-suozhen", "Content-Type": "application/json"},
        )
    assert no_token.status_code == 401
    assert as_json.status_code == 415 and "application/x-ndjson" in as_json.json()["detail"]
    # a role that may not register: every line 403, nothing recorded
    finance = await post_bulk(server, flood_list(), token="tok-finance")
    assert {r["status"] for r in finance if r["line"] not in (2, 9, 11)} == {403}
    assert await topic.end_offsets() == before


async def test_many_lines_in_many_batches(server: str, topic: Topic) -> None:
    before = await topic.end_offsets()
    text = "".join(
        line("register_case", f"many-{i}", case(case_id=f"m{i}", household_head_id=make_id(i)))
        + "\n"
        for i in range(1, 301)
    )
    results = await post_bulk(server, text)
    assert [r["line"] for r in results] == list(range(1, 301))
    assert {r["status"] for r in results} == {202}
    assert len({r["event_id"] for r in results}) == 300
    assert await topic.end_offsets() == before + 300


async def test_in_process_keys(stack: local_stack.StackInfo, topic: Topic) -> None:
    """Without a key database (development) the same answers, from this process's store."""
    settings = settings_for(stack.kafka_bootstrap, topic.name, intake_bulk_max_line_bytes=MAX_LINE)
    with serving(create_app(settings, tokens=token_table())) as url:
        first = {r["line"]: r["status"] for r in await post_bulk(url, flood_list())}
        again = await post_bulk(url, flood_list())
    assert first[1] == first[5] == first[13] == 202 and first[6] == 409
    assert {r["line"]: r["status"] for r in again} == first
    assert await topic.end_offsets() == 3


def test_cli_sends_a_file_and_resends_it_safely(server: str, topic: Topic, tmp_path: Path) -> None:
    rows = tmp_path / "cases.csv"
    rows.write_text(
        "case_id,category,household_head_id,yuan,reason\n"
        f"c1,emergency,{make_id(501)},800,flooded\n"
        f"c2,emergency,{bad_check(make_id(502))},800,flooded\n"
        f"c3,emergency,{make_id(503)},1.234,flooded\n"
        f'c4,emergency,{make_id(504)},"1,000.50",roof gone\n',
        encoding="utf-8",
    )
    report = tmp_path / "report.csv"
    args = ["--api", server, "--token", "tok-suozhen", "case", "register", "--town", SUOZHEN]
    result = CliRunner().invoke(main, [*args, "--file", str(rows), "--report", str(report)])
    assert result.exit_code == 1, result.output  # a line was rejected
    assert "2 accepted, 2 rejected, 0 unknown" in result.output
    assert "line 3: household_head_id" in result.output  # the file's line, its column
    assert "line 4: yuan" in result.output
    lines = report.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("line,status,")
    assert [x.split(",")[1] for x in lines[1:]] == ["202", "422", "422", "202"]
    assert make_id(502)[:17] not in report.read_text(encoding="utf-8")

    # the same file again: the same keys, the first answers, nothing new on the topic
    import asyncio

    before = asyncio.run(topic.end_offsets())
    assert before == 2
    again = CliRunner().invoke(main, [*args, "--file", str(rows), "--report", str(report)])
    assert again.exit_code == 1 and "2 accepted, 2 rejected, 0 unknown" in again.output
    assert "2 replayed" in again.output
    assert asyncio.run(topic.end_offsets()) == before


async def test_bulk_requests_for_relief_pass_the_county_claims_stage_as_single_ones_do(
    stack: local_stack.StackInfo, topic: Topic, keys_db: str, unique: str
) -> None:
    """P6 across towns: a request for relief sent in bulk goes to the claims topic (keyed
    by county), exactly as the single endpoint sends it; a payment goes to the town."""
    from relief_platform.topics import ensure_topics

    claims = Topic(stack.kafka_bootstrap, f"test.claims.{unique}")
    await ensure_topics(stack.kafka_bootstrap, PARTITIONS, 1, names={claims.name: {}})
    settings = _settings(stack, topic, keys_db).model_copy(update={"claims_topic": claims.name})
    text = "\n".join(
        [
            line("register_case", "req-1", case(case_id="c-1", household_head_id=make_id(501))),
            line(
                "confirm_payment",
                "pay-1",
                {"town": SUOZHEN, "amount_fen": 50_000, "bank_reference": "B-1"},
                case_id="c-0",
            ),
        ]
    )
    with serving(create_app(settings, tokens=token_table())) as url:
        results = await post_bulk(url, text + "\n")
    assert [r["status"] for r in results] == [202, 202], results
    [request] = await claims.records()
    assert request.key == b"county" and str(request.record.event_id) == results[0]["event_id"]
    [payment] = await topic.records()
    assert payment.key == SUOZHEN.encode() and payment.record.type == "PaymentConfirmed"
