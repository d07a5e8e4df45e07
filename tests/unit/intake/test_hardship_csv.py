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
    RowProblem,
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


def refusal(text: str) -> str:
    with pytest.raises(CsvRefused) as refused:
        check(text)
    return str(refused.value)


def distinct_rows(n: int, town: str = SUOZHEN) -> list[str]:
    """n valid rows, each of another household."""
    return [
        f"{town},{make_id(i % 1000, born=date(1950 + i // 1000, 1, 1))},disabled,\n"
        for i in range(n)
    ]


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


def test_a_note_of_exactly_100_characters_is_taken() -> None:
    result = check(
        HEADER
        + f"{SUOZHEN},{make_id(1)},disabled,{'备' * 100}\n"
        + f"{SUOZHEN},{make_id(2)},disabled,{'备' * 101}\n"
    )
    at_limit, over = result.reports
    assert at_limit.accepted and result.accepted[SUOZHEN][0].note == "备" * 100
    assert over.errors == [RowProblem(column="note", message="over 100 characters")]


def test_a_line_of_exactly_1000_characters_is_read_and_a_longer_one_refuses_the_file() -> None:
    row = f"{SUOZHEN},{make_id(1)},disabled,"
    at_limit = row + "x" * (1_000 - len(row))
    result = check(HEADER + at_limit + "\n")  # read: its note is the row's problem
    assert result.reports[0].errors == [RowProblem(column="note", message="over 100 characters")]
    assert refusal(HEADER + at_limit + "x\n") == "a line is longer than 1000 characters"


def test_exactly_the_most_rows_are_read_and_one_more_refuses_the_file() -> None:
    rows = distinct_rows(MAX_HARDSHIP_ROWS)
    assert check(HEADER + "".join(rows)).accepted_count == MAX_HARDSHIP_ROWS
    assert refusal(HEADER + "".join(rows) + rows[0]) == (
        f"{MAX_HARDSHIP_ROWS + 1} lines after the header, over {MAX_HARDSHIP_ROWS}"
    )


def test_a_record_holds_a_towns_rows_a_thousand_at_a_time() -> None:
    result = check(HEADER + "".join(distinct_rows(1_001)))
    actor = Actor(role=Role.DEPARTMENT, org="医保局")
    records = records_for(result, uuid.UUID(int=7), "医保局", actor, "2024-07-10T00:00:00+00:00")
    assert [(r.town, len(r.rows)) for r in records] == [(SUOZHEN, 1_000), (SUOZHEN, 1)]


def test_blank_lines_at_the_end_are_no_rows_but_the_header_must_be_the_first_line() -> None:
    row = f"{SUOZHEN},{make_id(1)},disabled,\n"
    result = check(HEADER + row + " \n\t\n")
    assert [(r.line, r.accepted) for r in result.reports] == [(2, True)]
    assert refusal("\n" + HEADER + row).startswith("empty file: expected a header line")


def test_a_header_naming_a_column_twice_is_refused() -> None:
    text = "town,household_head_id,category,Town\n" + f"{SUOZHEN},{make_id(1)},disabled,{SHAOHAI}\n"
    assert refusal(text).startswith("header must be town,household_head_id,category[,note]")


def test_a_malformed_quoted_field_in_the_header_refuses_the_file() -> None:
    text = 'town,"household_head_id"s,category\n' + f"{SUOZHEN},{make_id(1)},disabled\n"
    assert refusal(text) == "header: ',' expected after '\"'"


def test_a_refused_header_names_the_missing_columns_and_the_first_five_unknown_ones() -> None:
    must = "header must be town,household_head_id,category[,note]"
    assert refusal("town,category\n") == f"{must}; missing ['household_head_id'], unknown none"
    assert refusal("town,household_head_id,category,a,b,c,d,e,f\n") == (
        f"{must}; missing none, unknown ['a', 'b', 'c', 'd', 'e']"
    )


def test_a_quote_left_open_is_its_lines_problem_and_no_row_after_it_is_lost() -> None:
    """Section 二: every row of a department's list is accepted or rejected with its line,
    never dropped. A row is one line: a quote left open in a note is that line's error,
    and the rows after it are read as rows."""
    text = (
        HEADER
        + f'{SUOZHEN},{make_id(1)},disabled,"needs care\n'
        + f"{SUOZHEN},{make_id(2)},disabled,\n"
        + f'{SUOZHEN},{make_id(3)},disabled,"two\n'
        + 'lines"\n'
        + f"{SUOZHEN},{make_id(4)},disabled,\n"
    )
    reports = check(text).reports
    assert [(r.line, r.accepted) for r in reports] == [
        (2, False),
        (3, True),
        (4, False),
        (5, False),
        (6, True),
    ]
    left_open = "a quote is left open (a row is one line: a note cannot span lines)"
    assert reports[0].errors == [RowProblem(column="(row)", message=left_open)]
    assert reports[2].errors == [RowProblem(column="(row)", message=left_open)]


def test_a_column_named_twice_is_named_in_the_refusal() -> None:
    with pytest.raises(CsvRefused, match=r"named twice \['town'\]"):
        check("town,household_head_id,category,town\n" + f"{SUOZHEN},{make_id(1)},disabled,x\n")


def test_a_malformed_quoted_field_is_its_lines_problem_and_the_rows_after_it_are_read() -> None:
    text = (
        HEADER
        + f'{SUOZHEN},{make_id(1)},disabled,"on leave"until May\n'
        + f"{SUOZHEN},{make_id(2)},disabled,\n"
    )
    malformed, after = check(text).reports
    assert (malformed.line, malformed.accepted) == (2, False)
    assert malformed.errors == [RowProblem(column="(row)", message="',' expected after '\"'")]
    assert (after.line, after.accepted) == (3, True)


def test_an_unknown_town_is_named_by_its_first_12_characters() -> None:
    village = f"{SUOZHEN}001001"  # a village's code where the town's belongs
    result = check(HEADER + f"{village},{make_id(1)},disabled,\n")
    assert result.reports[0].errors == [
        RowProblem(column="town", message="unknown town '370321001001'")
    ]


def test_a_row_with_more_cells_than_the_header_is_its_lines_problem() -> None:
    text = (
        HEADER
        + f"{SUOZHEN},{make_id(1)},disabled,lives alone, no income\n"  # the comma unquoted
        + f"{SUOZHEN},{make_id(2)},disabled,\n"
    )
    too_many, after = check(text).reports
    assert (too_many.line, too_many.accepted) == (2, False)
    assert too_many.errors == [RowProblem(column="(row)", message="5 cells, the header has 4")]
    assert (after.line, after.accepted) == (3, True)
