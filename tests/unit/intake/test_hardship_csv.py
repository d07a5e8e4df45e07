"""A department's list, row by row: what was accepted, and what was wrong where."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from schemas.envelope import Actor, Role
from schemas.identity import household_ref
from schemas.intake import MAX_HARDSHIP_ROWS
from schemas.registry import encode
from schemas.towns import load_county
from services.intake.domain.hardship_csv import (
    ROWS_PER_RECORD,
    CsvRefused,
    decode_upload,
    records_for,
    validate_rows,
)
from tests.unit.intake.people import KEY, SHAOHAI, SUOZHEN, bad_check, make_id

COUNTY = load_county()
TODAY = date(2024, 7, 10)
HEADER = "town,household_head_id,category,note\n"


def check(text: str):  # type: ignore[no-untyped-def]
    return validate_rows(text, COUNTY, KEY, TODAY)


def test_rows_are_judged_one_by_one() -> None:
    text = HEADER + (
        f"{SUOZHEN},{make_id(1)},minimum_living,\n"
        "\n"
        f"{SHAOHAI},{bad_check(make_id(2))},disabled,\n"
        f"123,{make_id(3)},nobody,\n"
        f"{SUOZHEN},{make_id(4)},left_behind,{'x' * 101}\n"
        f"{SUOZHEN},{make_id(1)},minimum_living,twice\n"
        f"{SUOZHEN},{make_id(1)}\n"
        f"{SHAOHAI},{make_id(5, born=date(2030, 1, 1))},disabled,\n"
    )
    result = check(text)
    lines = {r.line: r for r in result.reports}
    assert lines[2].accepted and lines[2].household_ref == household_ref(make_id(1), KEY)
    assert 3 not in lines  # a blank line is not a row
    assert [e.column for e in lines[4].errors] == ["household_head_id"]
    assert "check character" in lines[4].errors[0].message
    assert make_id(2)[3:16] not in lines[4].errors[0].message  # masked
    assert [e.column for e in lines[5].errors] == ["town", "category"]
    assert [e.column for e in lines[6].errors] == ["note"]
    assert "line 2" in lines[7].errors[0].message
    assert "cells" in lines[8].errors[0].message
    assert "date of birth" in lines[9].errors[0].message
    assert (result.accepted_count, result.rejected_count) == (1, 6)
    assert list(result.accepted) == [SUOZHEN]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty file"),
        ("town,category\n", "missing"),
        ("town,household_head_id,category,colour\n1,2,3,4\n", "unknown"),
        (HEADER, "no rows"),
        (HEADER + f"{SUOZHEN},{make_id(1)},disabled,\n" * (MAX_HARDSHIP_ROWS + 1), "over"),
        (HEADER + "x" * 2_000 + "\n", "longer than"),
    ],
)
def test_unusable_files_are_refused_whole(text: str, says: str) -> None:
    with pytest.raises(CsvRefused, match=says):
        check(text)


def test_upload_decoding() -> None:
    assert decode_upload("\ufefftown".encode()) == "town"
    with pytest.raises(CsvRefused, match="UTF-8"):
        decode_upload(b"\xff\xfe")
    with pytest.raises(CsvRefused, match="NUL"):
        decode_upload(b"a\x00b")


def test_records_per_town_and_chunk_with_derived_ids() -> None:
    rows = "".join(
        f"{SUOZHEN},{make_id(i % 1000, born=date(1950 + i // 1000, 1, 1))},disabled,备注\n"
        for i in range(ROWS_PER_RECORD + 1)
    )
    rows += f"{SHAOHAI},{make_id(1)},vagrant,\n"
    result = check(HEADER + rows)
    assert result.accepted_count == ROWS_PER_RECORD + 2
    base = uuid.UUID(int=7)
    actor = Actor(role=Role.DEPARTMENT, org="医保局")
    records = records_for(result, base, "医保局", actor, "2024-07-10T00:00:00+00:00")
    # towns in code order (Suozhen 001 before Shaohai 002), chunks in row order
    assert [(r.town, len(r.rows)) for r in records] == [
        (SUOZHEN, ROWS_PER_RECORD),
        (SUOZHEN, 1),
        (SHAOHAI, 1),
    ]
    again = records_for(result, base, "医保局", actor, "2024-07-10T00:00:00+00:00")
    assert [r.event_id for r in records] == [r.event_id for r in again]
    assert len({r.event_id for r in records}) == 3
    assert all(len(encode(r)) < 1_000_000 for r in records)
