"""Bulk intake of suspected hardship cases (section 二, "policy finds people").

A department uploads CSV with the header `town,household_head_id,category[,note]`.
Each row is validated on its own: a bad row is reported (with its line number and the
column at fault, the ID number masked) and the others still go in. Accepted rows are
grouped by town (the Kafka key) into `HardshipListPushed` records of at most
ROWS_PER_RECORD rows, so every record stays well under Kafka's 1 MB message limit.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from pydantic import BaseModel, ConfigDict

from schemas.envelope import Actor, derived_id
from schemas.identity import InvalidResidentId, household_ref
from schemas.intake import MAX_HARDSHIP_ROWS, HardshipCategory, HardshipListPushed, HardshipRow
from schemas.towns import County

REQUIRED_COLUMNS = ("town", "household_head_id", "category")
OPTIONAL_COLUMNS = ("note",)
MAX_CELL_CHARS = 100  # notes are short remarks here; a row stays a few hundred bytes
MAX_LINE_CHARS = 1_000
# 1,000 rows x (34-char ref + category + 100-char note, up to 300 bytes in CJK) < 1 MB
ROWS_PER_RECORD = 1_000


class CsvRefused(ValueError):
    """The file as a whole cannot be read (header, size, encoding): 422 with a reason."""


class RowProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    message: str


class RowReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int  # the line in the file (the header is line 1)
    accepted: bool
    town: str | None = None
    household_ref: str | None = None
    errors: list[RowProblem] = []


@dataclass(frozen=True)
class ValidatedList:
    reports: list[RowReport]
    accepted: dict[str, list[HardshipRow]] = field(default_factory=dict)

    @property
    def accepted_count(self) -> int:
        return sum(len(rows) for rows in self.accepted.values())

    @property
    def rejected_count(self) -> int:
        return sum(1 for r in self.reports if not r.accepted)


def decode_upload(body: bytes) -> str:
    try:
        text = body.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError as exc:
        raise CsvRefused(f"the file is not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise CsvRefused("the file holds NUL characters: not a CSV text file")
    return text


def validate_rows(text: str, county: County, hash_key: bytes, today: date) -> ValidatedList:
    """Each row checked on its own; CsvRefused when the file as a whole is unusable."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CsvRefused("empty file: expected a header line " + ",".join(REQUIRED_COLUMNS))
    if len(lines) - 1 > MAX_HARDSHIP_ROWS:
        raise CsvRefused(f"{len(lines) - 1} lines after the header, over {MAX_HARDSHIP_ROWS}")
    if any(len(line) > MAX_LINE_CHARS for line in lines):
        raise CsvRefused(f"a line is longer than {MAX_LINE_CHARS} characters")
    # A row is a line: each is read on its own, so a quote left open on one line is that
    # line's error, never a field that swallows the rows after it unreported.
    try:
        header = [h.strip().lower() for h in _cells(lines[0])]
    except csv.Error as exc:
        raise CsvRefused(f"header: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    twice = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or twice:
        raise CsvRefused(
            f"header must be {','.join(REQUIRED_COLUMNS)}[,note]; "
            f"missing {missing or 'none'}, unknown {unknown[:5] or 'none'}"
            + (f", named twice {twice}" if twice else "")  # (a header is one bounded line)
        )
    reports: list[RowReport] = []
    accepted: dict[str, list[HardshipRow]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        try:
            cells = _cells(line)
        except csv.Error as exc:
            message = str(exc)
            if message == "unexpected end of data":
                message = "a quote is left open (a row is one line: a note cannot span lines)"
            problem = RowProblem(column="(row)", message=message)
            reports.append(RowReport(line=line_no, accepted=False, errors=[problem]))
            continue
        if not any(c.strip() for c in cells):
            continue  # blank lines are not rows
        reports.append(_row(line_no, header, cells, county, hash_key, today, seen, accepted))
    if not reports:
        raise CsvRefused("no rows after the header")
    return ValidatedList(reports=reports, accepted=accepted)


def _cells(line: str) -> list[str]:
    """One line's cells (csv.Error for a line that is not CSV, a quote left open included)."""
    return next(csv.reader([line], strict=True), [])


def _row(
    line_no: int,
    header: Sequence[str],
    cells: Sequence[str],
    county: County,
    hash_key: bytes,
    today: date,
    seen: dict[tuple[str, str], int],
    accepted: dict[str, list[HardshipRow]],
) -> RowReport:
    problems: list[RowProblem] = []
    if len(cells) != len(header):
        return RowReport(
            line=line_no,
            accepted=False,
            errors=[
                RowProblem(
                    column="(row)", message=f"{len(cells)} cells, the header has {len(header)}"
                )
            ],
        )
    row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
    for name, cell in row.items():
        if len(cell) > MAX_CELL_CHARS:
            problems.append(RowProblem(column=name, message=f"over {MAX_CELL_CHARS} characters"))
    town = row["town"]
    if town not in county:
        problems.append(RowProblem(column="town", message=f"unknown town {town[:12]!r}"))
    ref: str | None = None
    try:
        ref = household_ref(row["household_head_id"], hash_key, today=today)
    except InvalidResidentId as exc:
        problems.append(RowProblem(column="household_head_id", message=str(exc)))
    try:
        category = HardshipCategory(row["category"])
    except ValueError:
        problems.append(
            RowProblem(
                column="category",
                message=f"not one of {', '.join(c.value for c in HardshipCategory)}",
            )
        )
    if problems:
        return RowReport(line=line_no, accepted=False, errors=problems)
    assert ref is not None  # no problems means the ID was valid
    first = seen.get((ref, category.value))
    if first is not None:
        return RowReport(
            line=line_no,
            accepted=False,
            town=town,
            household_ref=ref,
            errors=[
                RowProblem(column="(row)", message=f"same household and category as line {first}")
            ],
        )
    seen[(ref, category.value)] = line_no
    accepted.setdefault(town, []).append(
        HardshipRow(household_ref=ref, category=category, note=row.get("note", ""))
    )
    return RowReport(line=line_no, accepted=True, town=town, household_ref=ref)


def records_for(
    validated: ValidatedList,
    base_event_id: uuid.UUID,
    department: str,
    actor: Actor,
    occurred_at_iso: str,
) -> list[HardshipListPushed]:
    """One record per town and chunk, each with an id derived from the upload's event id
    (a retried upload with the same Idempotency-Key produces the same ids)."""
    out: list[HardshipListPushed] = []
    for town in sorted(validated.accepted):
        rows = validated.accepted[town]
        for chunk, start in enumerate(range(0, len(rows), ROWS_PER_RECORD)):
            event_id = derived_id(base_event_id, "hardship_list", town, str(chunk))
            out.append(
                HardshipListPushed.model_validate(
                    {
                        "event_id": event_id,
                        "occurred_at": occurred_at_iso,
                        "town": town,
                        "actor": actor,
                        "correlation_id": f"hardship-{base_event_id.hex}",
                        "department": department,
                        "rows": tuple(rows[start : start + ROWS_PER_RECORD]),
                    }
                )
            )
    return out
