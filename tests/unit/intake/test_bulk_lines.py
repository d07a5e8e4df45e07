"""Bulk lines (issue 14): what is wrong with a line, and where, before anything is sent;
and the splitter that never holds more than one bounded line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.towns import load_county
from services.intake.domain.bulk import (
    MAX_LINE_BYTES_DEFAULT,
    LineRefused,
    LineSplitter,
    is_blank,
    prepare,
)
from services.intake.domain.idempotency import Fingerprint, event_id_for
from services.intake.domain.requests import RegisterCase
from tests.unit.intake.people import KEY, SHAOHAI, SUOZHEN, bad_check, make_id, principal

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
COUNTY = load_county()


def body(**changes: Any) -> dict[str, Any]:
    return {
        "town": SUOZHEN,
        "case_id": "c1",
        "urgency": "urgent",
        "category": "emergency",
        "household_head_id": make_id(7),
        "requested_fen": 80_000,
        "reason": "house flooded",
        **changes,
    }


def raw(**fields: Any) -> bytes:
    return json.dumps(
        {"type": "register_case", "idempotency_key": "k1", "body": body(), **fields}
    ).encode()


def refused(line: bytes, token: str = "tok-suozhen", max_line_bytes: int = 4_096) -> LineRefused:
    with pytest.raises(LineRefused) as caught:
        prepare(
            line,
            principal=principal(token),
            county=COUNTY,
            hash_key=KEY,
            now=NOW,
            max_line_bytes=max_line_bytes,
        )
    return caught.value


def test_a_good_line_is_what_the_single_endpoint_would_produce() -> None:
    p = prepare(raw(), principal=principal("tok-suozhen"), county=COUNTY, hash_key=KEY, now=NOW)
    assert p.operation == "POST /v1/cases" and p.key == "k1"
    assert p.record.event_id == event_id_for(
        "POST /v1/cases", SUOZHEN, principal("tok-suozhen").org, "k1"
    )
    # the single endpoint fingerprints the validated body (defaults filled in) the same way
    single = RegisterCase.model_validate(body()).model_dump(mode="json")
    assert p.fingerprint == Fingerprint.of("POST /v1/cases", single, KEY)
    assert make_id(7) not in p.record.model_dump_json()  # hashed at the door


def test_a_path_parameter_names_the_case() -> None:
    line = json.dumps(
        {
            "type": "confirm_payment",
            "idempotency_key": "pay-1",
            "path": {"case_id": "c1"},
            "body": {"town": SUOZHEN, "amount_fen": 80_000, "bank_reference": "BK"},
        }
    ).encode()
    p = prepare(line, principal=principal("tok-suozhen"), county=COUNTY, hash_key=KEY, now=NOW)
    assert p.operation == "POST /v1/cases/c1/payments"
    assert p.record.correlation_id == "c1"


@pytest.mark.parametrize(
    ("line", "status", "where", "says"),
    [
        (b'{"type": "register_case", "body": {', 422, [], "malformed JSON"),
        (b"[1, 2]", 422, [], "a line is a JSON object, not list"),
        (b"\xff\xfe", 422, [], "not UTF-8 at byte 0"),
        (raw(type="pay_everyone"), 422, ["type"], "unknown command 'pay_everyone'"),
        (raw(extra=1), 422, ["extra"], "Extra inputs"),
        (raw(body=body(requested_fen=800.5)), 422, ["body", "requested_fen"], ""),
        (raw(body=body(requested_fen=-1)), 422, ["body", "requested_fen"], ""),
        (raw(body=body(town="999999")), 422, ["body", "town"], "unknown town"),
        (
            raw(body=body(household_head_id=bad_check(make_id(7)))),
            422,
            ["body", "household_head_id"],
            "",
        ),
        (raw(idempotency_key="has space"), 422, ["idempotency_key"], ""),
        (raw(idempotency_key=None), 428, ["idempotency_key"], "needs an idempotency_key"),
        (raw(body=body(town=SHAOHAI)), 403, [], f"town {SUOZHEN} may act only for its own town"),
        (
            json.dumps(
                {
                    "type": "confirm_payment",
                    "idempotency_key": "k",
                    "path": {"case_id": "a b"},
                    "body": {"town": SUOZHEN, "amount_fen": 1},
                }
            ).encode(),
            422,
            ["path", "case_id"],
            "",
        ),
        (
            json.dumps(
                {
                    "type": "confirm_payment",
                    "idempotency_key": "k",
                    "body": {"town": SUOZHEN, "amount_fen": 1},
                }
            ).encode(),
            422,
            ["path", "case_id"],
            "Field required",
        ),
    ],
)
def test_what_is_wrong_and_where(line: bytes, status: int, where: list[Any], says: str) -> None:
    exc = refused(line)
    answer = exc.answer()
    assert answer["status"] == status, answer
    assert answer["detail"][0]["loc"] == where
    assert says in answer["error"]
    assert make_id(7)[:17] not in json.dumps(answer)  # never an ID number echoed


def test_role_is_checked_per_line() -> None:
    exc = refused(raw(), token="tok-finance")
    assert exc.status == 403 and "finance is read-only" in str(exc)


def test_a_line_over_the_limit_is_413() -> None:
    exc = refused(raw(body=body(reason="水" * 2_000)), max_line_bytes=1_024)
    assert exc.status == 413 and "line over 1024 bytes" in str(exc)


def test_the_splitter_holds_one_bounded_line() -> None:
    splitter = LineSplitter(max_line_bytes=8)
    assert splitter.feed(b"abc\nde") == [b"abc"]
    assert splitter.feed(b"f\r\n0123456789") == [b"def"]
    assert splitter.feed(b"0123456789" * 100) == []
    assert len(splitter._buf) == 0  # the long line is dropped as it arrives
    assert splitter.feed(b"\n\nlast") == [1010, b""]
    assert splitter.close() == [b"last"]
    assert splitter.close() == []
    exact = LineSplitter(max_line_bytes=3)
    assert exact.feed(b"abc\nabcd\n") == [b"abc", 4]
    # a line of the limit ends in CRLF as well as in LF; one byte more is over either way
    assert exact.feed(b"abc\r\nabcd\r\n") == [b"abc", 5]
    assert exact.feed(b"ab") == [] and exact.feed(b"c\r") == [] and exact.feed(b"\n") == [b"abc"]


def test_the_splitter_holds_one_bounded_line_however_the_bytes_arrive() -> None:
    splitter = LineSplitter(max_line_bytes=8)
    for _ in range(40):
        assert splitter.feed(b"01234") == []
        assert len(splitter._buf) <= 9  # never more than a line and the byte that ends it
    assert splitter.feed(b"\nok\n") == [200, b"ok"]


def test_a_command_type_is_at_most_64_characters() -> None:
    exc = refused(raw(type="t" * 65))
    assert exc.status == 422 and exc.kind == "string_too_long"
    assert exc.answer()["detail"][0]["loc"] == ["type"]
    assert "unknown command" in str(refused(raw(type="t" * 64)))


def test_a_line_of_whitespace_alone_is_blank() -> None:
    for blank in (b"", b" ", b"\t \r"):
        assert is_blank(blank), blank
    for line in (raw(), b"x", b"  {}  "):
        assert not is_blank(line), line


def test_a_line_of_up_to_256_kib_is_taken_by_default_and_one_byte_more_is_413() -> None:
    assert MAX_LINE_BYTES_DEFAULT == 262_144
    line = raw()
    padded = line + b" " * (262_144 - len(line))
    p = prepare(padded, principal=principal("tok-suozhen"), county=COUNTY, hash_key=KEY, now=NOW)
    assert p.key == "k1"
    with pytest.raises(LineRefused) as caught:
        prepare(
            padded + b" ", principal=principal("tok-suozhen"), county=COUNTY, hash_key=KEY, now=NOW
        )
    assert caught.value.status == 413 and "line over 262144 bytes (262145)" in str(caught.value)


def test_an_error_says_where_before_what() -> None:
    unknown = refused(raw(type="t" * 64)).answer()
    assert unknown["error"].startswith(f"type: unknown command {'t' * 64!r}: one of ")
    assert refused(b"[1]").answer()["error"] == "a line is a JSON object, not list"
    assert refused(raw(type="")).kind == "string_too_short"
    assert refused(raw(type="x")).kind == "literal_error"
