"""The `relief` command against a real intake server: yuan in, fen on the wire."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from schemas.identity import check_char
from services.cli import main
from services.intake.domain.tokens import parse_tokens, token_hash
from tests.unit.intake.people import SHAOHAI, SUOZHEN, bad_check, make_id


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
        server, "tok-shaohai", "case", "pay", "c", "--town", SUOZHEN, "--yuan", "1", "--cash"
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
        server, "tok-suozhen", "case", "pay", "c", "--town", SUOZHEN, "--yuan", "1.005", "--cash"
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
