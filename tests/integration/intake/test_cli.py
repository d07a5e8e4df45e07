"""The `relief` command against a real intake server: yuan in, fen on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.identity import check_char
from services.cli import main
from services.intake.app import create_app
from services.intake.domain.tokens import parse_tokens, token_hash
from tests.integration.casebook.conftest import CasebookDb, Processor, Topics, running
from tests.integration.casebook.conftest import settings_for as casebook_settings
from tests.integration.intake.conftest import PARTITIONS, read_settings, settings_for
from tests.integration.servers import serve_uvicorn
from tests.unit.intake.people import SHAOHAI, SUOZHEN, bad_check, make_id, token_table


def run(server: str, token: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--api", server, "--token", token, *args])
    return result.exit_code, result.output


def test_register_pay_and_retry(server: str) -> None:
    code, out = run(
        server,
        "tok-suozhen",
        "case",
        "register",
        "--town",
        SUOZHEN,
        "--case-id",
        "cli-case-1",
        "--category",
        "emergency",
        "--household-head-id",
        make_id(301),
        "--yuan",
        "800.50",
        "--reason",
        "flooded",
        "--key",
        "cli-k1",
    )
    assert code == 0, out
    assert "recorded ReliefRequested cli-case-1" in out
    code, again = run(
        server,
        "tok-suozhen",
        "case",
        "register",
        "--town",
        SUOZHEN,
        "--case-id",
        "cli-case-1",
        "--category",
        "emergency",
        "--household-head-id",
        make_id(301),
        "--yuan",
        "800.50",
        "--reason",
        "flooded",
        "--key",
        "cli-k1",
    )
    assert code == 0 and again == out  # the first answer, nothing new
    code, out = run(
        server,
        "tok-suozhen",
        "case",
        "pay",
        "cli-case-1",
        "--town",
        SUOZHEN,
        "--yuan",
        "800.50",
        "--bank-reference",
        "ICBC-1",
    )
    assert code == 0 and "PaymentConfirmed" in out


def test_refusals_are_readable(server: str) -> None:
    code, out = run(
        server,
        "tok-shaohai",
        "case",
        "pay",
        "c",
        "--town",
        SUOZHEN,
        "--yuan",
        "1",
        "--cash",
        "停电",
    )
    assert code == 1 and "refused (403)" in out and "own town" in out
    code, out = run(
        server,
        "tok-suozhen",
        "case",
        "register",
        "--town",
        SUOZHEN,
        "--category",
        "emergency",
        "--household-head-id",
        bad_check(make_id(1)),
        "--yuan",
        "1",
        "--reason",
        "r",
    )
    assert code == 1 and "body.household_head_id" in out
    code, out = run(
        server,
        "tok-suozhen",
        "case",
        "pay",
        "c",
        "--town",
        SUOZHEN,
        "--yuan",
        "1.005",
        "--cash",
        "停电",
    )
    assert code == 2 and "two decimals" in out


def test_hardship_upload_with_report(server: str, tmp_path: Path) -> None:
    first17 = "37032119800101123"
    good = first17 + check_char(first17)
    csv = tmp_path / "list.csv"
    csv.write_text(
        "town,household_head_id,category\n"
        f"{SUOZHEN},{good},disabled\n"
        f"{SHAOHAI},{bad_check(good)},disabled\n",
        encoding="utf-8",
    )
    code, out = run(server, "tok-dept", "hardship", str(csv))
    assert code == 0, out
    assert "1 rows accepted, 1 rejected" in out and "line 3: household_head_id" in out


def test_token_add_stores_only_the_hash(tmp_path: Path) -> None:
    for name in ("tokens.toml", "tokens.json"):
        path = tmp_path / name
        for org in ("索镇街道办事处", "少海街道办事处"):
            result = CliRunner().invoke(
                main,
                [
                    "token",
                    "add",
                    "--role",
                    "town",
                    "--org",
                    org,
                    "--town",
                    SUOZHEN,
                    "--file",
                    str(path),
                ],
            )
            assert result.exit_code == 0, result.output
        token = result.stdout.strip().splitlines()[-1]
        text = path.read_text("utf-8")
        assert token not in text
        parsed = parse_tokens(text, "json" if name.endswith("json") else "toml")
        assert len(parsed) == 2 and parsed[token_hash(token)].org == "少海街道办事处"
    result = CliRunner().invoke(
        main, ["token", "add", "--role", "town", "--org", "x", "--file", str(tmp_path / "t.toml")]
    )
    assert result.exit_code == 1 and "town is required" in result.output


# ---------------------------------------------------------------- --wait


@pytest.fixture
async def pipeline(
    stack: local_stack.StackInfo, read_database: str, casebook_url: str, unique: str
) -> AsyncIterator[tuple[str, Processor]]:
    """An intake server on a topic of its own, the real rules deciding from it, and the
    casebook reading what they decide into the database the casebook server reads."""
    topics = Topics(
        intake=f"test.cli.intake.{unique}",
        decisions=f"test.cli.decisions.{unique}",
        rejected=f"test.cli.rejected.{unique}",
        group=f"test-cli-emergency-{unique}",
    )
    await ensure_topics(
        stack.kafka_bootstrap,
        PARTITIONS,
        1,
        names={
            topics.intake: {"message.timestamp.type": "LogAppendTime"},
            topics.decisions: {},
            topics.rejected: {},
        },
    )
    app_url = read_database
    db = CasebookDb(admin_url="", owner_url="", app_url=app_url)
    settings = settings_for(
        stack.kafka_bootstrap,
        topics.intake,
        **read_settings(casebook_url, ""),
    )
    url, srv, thread = serve_uvicorn(create_app(settings, tokens=token_table()))
    try:
        async with running(casebook_settings(stack, db, topics)):
            yield url, Processor(stack.kafka_bootstrap, topics)
    finally:
        srv.should_exit = True
        thread.join(10)


async def _while_deciding(processor: Processor, *args: str) -> tuple[int, str]:
    """The CLI in a thread (it blocks while it waits), the processor deciding meanwhile."""
    job = asyncio.create_task(asyncio.to_thread(run, *args))
    while not job.done():
        await processor.step()
        await asyncio.sleep(0.2)
    return await job


async def test_wait_prints_what_became_of_a_write(pipeline: tuple[str, Processor]) -> None:
    url, processor = pipeline
    register = (
        "case",
        "register",
        "--town",
        SUOZHEN,
        "--case-id",
        "wait-1",
        "--category",
        "emergency",
        "--household-head-id",
        make_id(401),
        "--yuan",
        "800",
        "--reason",
        "flooded",
        "--wait",
        "--wait-s",
        "60",
    )
    code, out = await _while_deciding(processor, url, "tok-suozhen", *register)
    assert code == 0, out
    assert "decided: 1 decision\n" in out and "AdvanceGranted" in out and "-> advanced" in out

    stray = (
        "case",
        "pay",
        "nobody",
        "--town",
        SUOZHEN,
        "--yuan",
        "10",
        "--cash",
        "无账户",
        "--wait",
    )
    code, out = await _while_deciding(processor, url, "tok-suozhen", *stray)
    assert code == 1, out
    assert "rejected:" in out and "nobody" in out

    # nothing decides it within the wait: still pending, exit 3
    lonely = ("case", "pay", "wait-1", "--town", SUOZHEN, "--yuan", "800", "--cash", "停电")
    code, out = run(url, "tok-suozhen", *lonely, "--wait", "--wait-s", "1")
    assert code == 3 and "still pending after 1 s" in out

    code, out = run(url, "tok-suozhen", "case", "show", "wait-1", "--town", SUOZHEN)
    assert code == 0 and "case wait-1 (town 370321001): advanced" in out, out


def test_a_write_whose_outcome_is_unknown_prints_its_key_to_retry_with() -> None:
    """Nothing answers: the command fails, and says which Idempotency-Key it used, so the
    same command with --key can be run again safely."""
    code, out = run(
        "http://127.0.0.1:1",  # nothing listens there
        "tok-suozhen",
        "case",
        "register",
        "--town",
        SUOZHEN,
        "--case-id",
        "cli-unknown-1",
        "--category",
        "emergency",
        "--household-head-id",
        make_id(399),
        "--yuan",
        "100",
        "--reason",
        "flooded",
    )
    assert code == 1
    assert "the outcome is unknown; Idempotency-Key: cli-" in out
    key = out.split("Idempotency-Key: ")[1].split()[0]
    assert f"--key {key}" in out
