"""Decoding: dispatch on type, upcast older versions, refuse clearly and discreetly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from schemas import intake as i
from schemas.registry import (
    ALL_TYPES,
    MAX_RECORD_BYTES,
    RECORD_TYPES,
    InvalidRecord,
    RecordError,
    UnknownRecordType,
    current_version,
    decode,
    decode_as,
    encode,
)
from tests.unit.schemas.factories import relief_requested

SAMPLES = Path(__file__).parent / "samples"
CLEAR_ID = "11010519491231002X"


def _bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def _request() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(relief_requested()))
    return data


def test_all_record_classes_are_listed_once_under_their_own_names() -> None:
    assert len(RECORD_TYPES) == len(ALL_TYPES) == 38
    for name, cls in RECORD_TYPES.items():
        assert cls.model_fields["type"].default == name


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_recorded_sample_still_decodes(path: Path) -> None:
    type_name, version = path.name.split(".")[:2]
    record = decode(path.read_bytes())
    assert record.type == type_name
    assert int(version[1:]) <= record.schema_version == current_version(RECORD_TYPES[type_name])


def test_there_is_a_recorded_sample_of_every_current_version() -> None:
    names = {p.name for p in SAMPLES.glob("*.json")}
    for name, cls in RECORD_TYPES.items():
        assert f"{name}.v{current_version(cls)}.json" in names


def test_a_v1_relief_request_is_upcast_with_one_person() -> None:
    raw = (SAMPLES / "ReliefRequested.v1.json").read_bytes()
    assert json.loads(raw)["schema_version"] == 1 and "persons" not in json.loads(raw)
    record = decode_as(raw, i.ReliefRequested)
    assert record.schema_version == 2
    assert record.persons == 1
    assert record.requested_fen == 80_000
    assert json.loads(encode(record))["schema_version"] == 2


def test_recorded_at_is_the_brokers_stamp() -> None:
    stamp = datetime(2024, 7, 10, 14, 31, 5, tzinfo=timezone(timedelta(hours=8)))
    record = decode(encode(relief_requested()), recorded_at=stamp)
    assert record.recorded_at == stamp and record.recorded_at.tzinfo == UTC
    with pytest.raises(InvalidRecord, match="recorded_at"):
        decode(encode(relief_requested()), recorded_at=datetime(2024, 7, 10))


def test_an_unknown_type_is_its_own_error() -> None:
    with pytest.raises(UnknownRecordType, match="'ReliefDemanded'") as err:
        decode(_bytes({**_request(), "type": "ReliefDemanded"}))
    assert isinstance(err.value, RecordError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schema_version": 1}', "type: missing"),
        (b"{" + b" " * MAX_RECORD_BYTES + b"}", "over"),
    ],
)
def test_garbage_is_an_invalid_record(value: bytes, message: str) -> None:
    with pytest.raises(InvalidRecord, match=message):
        decode(value)


def test_errors_name_the_field_path() -> None:
    data = _request()
    data["actor"]["role"] = "mayor"
    data["requested_fen"] = 800.5
    with pytest.raises(InvalidRecord) as err:
        decode(_bytes(data))
    assert err.value.type_name == "ReliefRequested"
    paths = [p for p, _ in err.value.problems]
    assert paths == ["requested_fen", "actor.role"] or sorted(paths) == [
        "actor.role",
        "requested_fen",
    ]
    assert "requested_fen" in str(err.value) and "actor.role" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("extra_field", 1), ("schema_version", 3), ("schema_version", None), ("schema_version", 0)],
)
def test_extra_fields_and_bad_versions_are_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidRecord, match=field):
        decode(_bytes({**_request(), field: value}))


def test_no_error_ever_shows_a_clear_id_number() -> None:
    cases: list[dict[str, Any]] = [
        {**_request(), "household_ref": CLEAR_ID},
        {**_request(), "reason": CLEAR_ID * 200},
        {**_request(), "type": CLEAR_ID},
        {**_request(), CLEAR_ID: 1},
        {**_request(), "correlation_id": f"case {CLEAR_ID}"},
    ]
    for data in cases:
        with pytest.raises(RecordError) as err:
            decode(_bytes(data))
        text = str(err.value) + repr(err.value.args) + repr(getattr(err.value, "problems", ""))
        assert CLEAR_ID not in text
        assert CLEAR_ID not in str(err.value.__cause__ or "")


def test_decode_as_checks_the_type() -> None:
    with pytest.raises(InvalidRecord, match="expected PaymentConfirmed"):
        decode_as(encode(relief_requested()), i.PaymentConfirmed)


def test_encoding_is_compact_declared_order_and_deterministic() -> None:
    value = encode(relief_requested())
    assert b" " not in value.replace(b"\xe6", b"")[:20]
    data = json.loads(value)
    assert list(data) == list(i.ReliefRequested.model_fields)
    assert encode(relief_requested()) == value
    assert "房屋进水".encode() in value  # UTF-8, not \u escapes
