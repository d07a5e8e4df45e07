"""Bulk intake (issue 14): one command per NDJSON line, each checked as its single
endpoint checks it.

A line is `{"type": "<operation id>", "idempotency_key": "...", "path": {...}, "body": {...}}`:
`type` is the single endpoint's operation id (`register_case`, `confirm_payment`, ...),
`path` its path parameters (`case_id`, `incident_id`, `town`, `period`, `list_event_id`,
`row`), `body` its JSON body. `prepare` turns a line into what the single path would
produce — the same operation name, fingerprint and event id (so a key used on the
single endpoint and in a bulk file is one key), and the record — or refuses it with the
status the single endpoint would answer (403, 413, 422, 428) and what was wrong where.

Pure: the principal, county, hashing key and moment are passed in. Error messages never
echo an ID number (`scrub_ids`; pydantic's input is hidden).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.envelope import Record
from schemas.identity import scrub_ids
from schemas.towns import County
from services.intake.domain import requests as rq
from services.intake.domain.authz import Forbidden, check, may
from services.intake.domain.commands import KINDS, SPECS, Write, event_id
from services.intake.domain.idempotency import KEY_PATTERN, MAX_KEY_CHARS, Fingerprint
from services.intake.domain.tokens import Principal

# A line holds one command: the largest single body (an incident with 5,000 households,
# about 120 KB) fits; the server's setting may lower it (STYLE "a limit on everything").
MAX_LINE_BYTES_DEFAULT = 256 * 1024

Loc = tuple[str | int, ...]


class LineRefused(Exception):
    """A line answered without producing anything: its status and what was wrong where."""

    def __init__(self, status: int, problems: Sequence[tuple[Loc, str]], kind: str) -> None:
        super().__init__("; ".join(_where(loc, msg) for loc, msg in problems))
        self.status = status
        self.problems = [(loc, scrub_ids(msg)) for loc, msg in problems]
        self.kind = kind  # json_invalid, value_error, forbidden, ...

    def answer(self) -> dict[str, Any]:
        """The line's result fields (beside `line`): status, error, detail."""
        return {
            "status": self.status,
            "error": "; ".join(_where(loc, msg) for loc, msg in self.problems),
            "detail": [
                {"loc": list(loc), "msg": msg, "type": self.kind} for loc, msg in self.problems
            ],
        }


def _where(loc: Loc, msg: str) -> str:
    return f"{'.'.join(map(str, loc))}: {msg}" if loc else msg


@contextmanager
def _as_line_refusal() -> Iterator[None]:
    """The single endpoint's 403 and 422, as a line's answer."""
    try:
        yield
    except rq.RequestInvalid as exc:
        raise LineRefused(422, exc.problems, "value_error") from None
    except Forbidden as exc:
        raise LineRefused(403, [((), exc.reason)], "forbidden") from None


# ---------------------------------------------------------------- the line's shape


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    type: str = Field(min_length=1, max_length=64)
    idempotency_key: Annotated[str, Field(max_length=MAX_KEY_CHARS, pattern=KEY_PATTERN)] | None = (
        None
    )
    path: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any]


# ---------------------------------------------------------------- a line, prepared


@dataclass(frozen=True)
class Prepared:
    """A line that passed every check: what the single path would claim and produce."""

    key: str
    operation: str
    fingerprint: Fingerprint
    record: Record


def _invalid(exc: ValidationError, prefix: Loc) -> LineRefused:
    problems: list[tuple[Loc, str]] = []
    kind = "value_error"
    for e in exc.errors(include_input=False, include_url=False):
        loc = tuple(e.get("loc", ()))
        kind = str(e.get("type", kind))
        problems.append(((*prefix, *loc), str(e.get("msg", ""))))
    return LineRefused(422, problems, kind)


def parse(raw: bytes, max_line_bytes: int) -> _Line:
    """The line's envelope: JSON, an object with a known type. Raises LineRefused."""
    if len(raw) > max_line_bytes:
        raise LineRefused(
            413,
            [((), f"line over {max_line_bytes} bytes ({len(raw)}): one command per line")],
            "too_long",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineRefused(
            422, [((), f"not UTF-8 at byte {exc.start}")], "unicode_invalid"
        ) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineRefused(
            422, [((), f"malformed JSON: {exc.msg} at column {exc.colno}")], "json_invalid"
        ) from None
    if not isinstance(value, dict):
        raise LineRefused(
            422, [((), f"a line is a JSON object, not {type(value).__name__}")], "type_error"
        )
    try:
        line = _Line.model_validate(value)
    except ValidationError as exc:
        raise _invalid(exc, ()) from None
    if line.type not in SPECS:
        raise LineRefused(
            422,
            [(("type",), f"unknown command {line.type[:64]!r}: one of {', '.join(KINDS)}")],
            "literal_error",
        )
    return line


def prepare(
    raw: bytes,
    *,
    principal: Principal,
    county: County,
    hash_key: bytes,
    now: datetime,
    max_line_bytes: int = MAX_LINE_BYTES_DEFAULT,
    require_key: bool = True,
) -> Prepared:
    """Check one line as its single endpoint would (role, then shape, then town and
    place, then the mapping to a record, which checks ID numbers); raises LineRefused."""
    line = parse(raw, max_line_bytes)
    spec = SPECS[line.type]
    with _as_line_refusal():
        check(may(principal, spec.action))
    if line.idempotency_key is None:
        if require_key:
            raise LineRefused(
                428,
                [
                    (
                        ("idempotency_key",),
                        "every line needs an idempotency_key (unique per command): a "
                        "re-sent line with the same key is then recorded at most once",
                    )
                ],
                "missing",
            )
        key = f"bulk-{uuid.uuid4()}"
    else:
        key = line.idempotency_key
    try:
        path = spec.path_model.model_validate(line.path)
    except ValidationError as exc:
        raise _invalid(exc, ("path",)) from None
    try:
        body = spec.model.model_validate(line.body)
    except ValidationError as exc:
        raise _invalid(exc, ("body",)) from None
    command = Write(spec, path, body)
    fields = command.fields()
    stamp = rq.Stamp(
        event_id(command, fields, principal.org, key), now, principal.actor, hash_key, county
    )
    with _as_line_refusal():
        command.authorize(principal, county)
        (record,) = command.records(stamp)
    operation = command.operation
    return Prepared(key, operation, Fingerprint.of(operation, fields, hash_key), record)


# ---------------------------------------------------------------- splitting the stream


class LineSplitter:
    """Bytes in, lines out (without their newline), never holding more than one line of
    `max_line_bytes`: the rest of a longer line is dropped as it arrives, and the line is
    reported by its length alone (it is answered 413)."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._dropped = 0  # bytes of the current line beyond the limit

    def feed(self, chunk: bytes) -> list[bytes | int]:
        """Complete lines: bytes, or the length of a line over the limit."""
        out: list[bytes | int] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return out
            self._keep(chunk[start:end])
            out.append(self._take())
            start = end + 1

    def close(self) -> list[bytes | int]:
        """The last line, if the body did not end with a newline."""
        if self._buf or self._dropped:
            return [self._take()]
        return []

    def _keep(self, piece: bytes) -> None:
        if self._dropped:
            self._dropped += len(piece)
            return
        room = self.max_line_bytes + 1 - len(self._buf)
        if len(piece) <= room:
            self._buf += piece
        else:
            self._dropped = len(self._buf) + len(piece)
            self._buf.clear()

    def _take(self) -> bytes | int:
        # the limit is the line's, not its ending's: "\r\n" ends a line as "\n" does
        line = b"" if self._dropped else bytes(self._buf).rstrip(b"\r")
        if self._dropped or len(line) > self.max_line_bytes:
            length = self._dropped or len(self._buf)
            self._dropped = 0
            self._buf.clear()
            return length
        self._buf.clear()
        return line


def is_blank(line: bytes) -> bool:
    return not line.strip()
