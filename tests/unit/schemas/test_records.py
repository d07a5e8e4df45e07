"""Every record type: envelope rules, round trips, refusals, derived ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import decisions as d
from schemas import intake as i
from schemas.envelope import CST, Record, derived_id, format_cst, to_cst
from schemas.registry import ALL_TYPES, RECORD_TYPES, decode, encode
from tests.unit.schemas.factories import (
    CASE,
    FINANCE,
    QIFENG,
    REQUEST_ID,
    T0,
    TOWN_CLERK,
    WANG,
    all_samples,
    env,
    relief_requested,
)


def _data(record: Record) -> dict[str, Any]:
    return record.model_dump()


def test_there_is_a_sample_of_every_record_type() -> None:
    assert sorted(type(r).__name__ for r in all_samples()) == sorted(RECORD_TYPES)


@pytest.mark.parametrize("record", all_samples(), ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_its_bytes(record: Record) -> None:
    value = encode(record)
    again = decode(value)
    assert again == record
    assert encode(again) == value  # byte for byte
    assert again.type == type(record).__name__


@pytest.mark.parametrize("record", all_samples(), ids=lambda r: type(r).__name__)
def test_every_record_refuses_an_unknown_field(record: Record) -> None:
    with pytest.raises(ValidationError) as err:
        type(record).model_validate({**_data(record), "surprise": 1})
    assert err.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("record", all_samples(), ids=lambda r: type(r).__name__)
def test_every_record_is_frozen(record: Record) -> None:
    with pytest.raises(ValidationError):
        record.correlation_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_every_string_in_every_schema_is_bounded(cls: type[Record]) -> None:
    unbounded: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "string"
                and "maxLength" not in node
                and not {"enum", "const", "format"} & node.keys()
            ):
                unbounded.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{path}[{n}]")

    walk(cls.model_json_schema(), cls.__name__)
    assert unbounded == []


def test_naive_datetimes_are_refused_and_aware_ones_stored_in_utc() -> None:
    naive = datetime(2024, 7, 10, 8, 0)
    with pytest.raises(ValidationError) as err:
        i.PaperworkCompleted(**{**env(), "occurred_at": naive})
    assert err.value.errors()[0]["loc"] == ("occurred_at",)
    beijing = datetime(2024, 7, 10, 14, 30, tzinfo=timezone(timedelta(hours=8)))
    rec = i.PaperworkCompleted(**{**env(), "occurred_at": beijing})
    assert rec.occurred_at.tzinfo == UTC
    assert rec.occurred_at == datetime(2024, 7, 10, 6, 30, tzinfo=UTC)
    assert to_cst(rec.occurred_at).utcoffset() == timedelta(hours=8)
    assert to_cst(rec.occurred_at).tzinfo == CST
    assert format_cst(rec.occurred_at) == "2024-07-10 14:30 CST"
    assert b'"occurred_at":"2024-07-10T06:30:00Z"' in encode(rec)


def test_a_float_amount_is_refused_even_when_whole() -> None:
    data = _data(relief_requested())
    for bad in (800.0, "80000", True):
        with pytest.raises(ValidationError) as err:
            i.ReliefRequested.model_validate({**data, "requested_fen": bad})
        assert [e["loc"] for e in err.value.errors()] == [("requested_fen",)]


def test_type_and_version_cannot_lie() -> None:
    data = _data(relief_requested())
    with pytest.raises(ValidationError):
        i.ReliefRequested.model_validate({**data, "type": "PaymentConfirmed"})
    with pytest.raises(ValidationError):
        i.ReliefRequested.model_validate({**data, "schema_version": 1})


@given(st.uuids(), st.text(min_size=1, max_size=20), st.lists(st.text(max_size=8), max_size=3))
def test_derived_ids_are_deterministic(cause: uuid.UUID, kind: str, parts: list[str]) -> None:
    first = derived_id(cause, kind, *parts)
    assert first == derived_id(cause, kind, *parts)
    assert first == derived_id(str(cause), kind, *parts)
    assert first.version == 5
    assert first != derived_id(cause, kind + "x", *parts)
    # the fast path is uuid5 exactly, whatever the text (non-ASCII, surrogate-free)
    namespace = uuid.UUID("6f1f3b7e-4c1d-5a2e-9b57-2e6f0c3d8a41")
    assert first == uuid.uuid5(namespace, f"{cause}:{kind}:{':'.join(parts)}")


def test_derived_id_follows_the_contract_formula() -> None:
    ns = uuid.UUID("6f1f3b7e-4c1d-5a2e-9b57-2e6f0c3d8a41")
    assert derived_id(REQUEST_ID, "advance") == uuid.uuid5(ns, f"{REQUEST_ID}:advance:")
    assert derived_id(REQUEST_ID, "instalment", "2", "x") == uuid.uuid5(
        ns, f"{REQUEST_ID}:instalment:2:x"
    )
    req = relief_requested()
    assert req.derive("advance") == derived_id(REQUEST_ID, "advance")
    fields = req.envelope_for("advance", recorded_at=T0)
    granted = d.AdvanceGranted(
        **fields, rule="R5", amount_fen=80_000, due_at=T0 + timedelta(hours=24)
    )
    assert granted.causation_id == REQUEST_ID
    assert granted.case_id == CASE == req.case_id
    assert granted.event_id == derived_id(REQUEST_ID, "advance")


def test_decisions_name_a_rule_and_bounded_figures() -> None:
    base = {**env(), "amount_fen": 100, "due_at": T0}
    with pytest.raises(ValidationError):
        d.AdvanceGranted(**base)  # no rule
    with pytest.raises(ValidationError):
        d.AdvanceGranted(**base, rule="because")
    with pytest.raises(ValidationError):
        d.AdvanceGranted(**base, rule="R5", figures={f"f{n}": n for n in range(33)})
    with pytest.raises(ValidationError):
        d.AdvanceGranted(**base, rule="R5", figures={"cap_fen": 1.5})
    ok = d.AdvanceGranted(**base, rule="R3+R6", figures={"cap_fen": 1, "why": "text"})
    assert ok.figures == {"cap_fen": 1, "why": "text"}


def test_cross_field_rules_of_intake_records() -> None:
    with pytest.raises(ValidationError, match="disaster_subtype"):
        i.IncidentReported(
            **env(),
            incident_id="x",
            kind=i.IncidentKind.FIRE,
            disaster_subtype=i.DisasterSubtype.FLOOD,
        )
    with pytest.raises(ValidationError, match="disaster_subtype"):
        i.IncidentReported(**env(), incident_id="x", kind=i.IncidentKind.NATURAL_DISASTER)
    with pytest.raises(ValidationError, match="R7"):
        i.ReliefRequested(**{**_data(relief_requested()), "origin_county": "某县"})
    assert i.ReliefRequested(
        **{**_data(relief_requested()), "vagrant": True, "origin_county": "某县"}
    ).vagrant
    with pytest.raises(ValidationError, match="bank_reference"):
        i.PaymentConfirmed(**env(), amount_fen=1)
    assert i.PaymentConfirmed(**env(), amount_fen=1, method=i.PaymentMethod.CASH)
    # P8: a fine "may" be given (none is a valid decision); the configured band is the
    # processor's to check; a record carries one way of saying it, for fraud only
    assert i.CaseReviewed(**env(), outcome=i.ReviewOutcome.FRAUD, approved_fen=0, reasons="x")
    with pytest.raises(ValidationError, match="fine_multiple"):
        i.CaseReviewed(
            **env(), outcome=i.ReviewOutcome.FRAUD, approved_fen=0, reasons="x", fine_multiple=11
        )
    with pytest.raises(ValidationError, match="not both"):
        i.CaseReviewed(
            **env(),
            outcome=i.ReviewOutcome.FRAUD,
            approved_fen=0,
            reasons="x",
            fine_multiple=2,
            fine_fen=5,
        )
    with pytest.raises(ValidationError, match="fraud only"):
        i.CaseReviewed(
            **env(), outcome=i.ReviewOutcome.INELIGIBLE, approved_fen=0, reasons="x", fine_fen=5
        )
    assert i.CaseReviewed(
        **env(), outcome=i.ReviewOutcome.FRAUD, approved_fen=0, reasons="x", fine_multiple=3
    )
    with pytest.raises(ValidationError, match="top_up_fen"):
        i.CaseReviewed(**env(), outcome=i.ReviewOutcome.TOP_UP, approved_fen=5)
    with pytest.raises(ValidationError, match="written reasons"):
        i.CaseReviewed(**env(), outcome=i.ReviewOutcome.INELIGIBLE, approved_fen=0)
    with pytest.raises(ValidationError, match="either approves"):
        i.DeliberationDecided(**env(), reasons="x")
    with pytest.raises(ValidationError, match="either approves"):
        i.DeliberationDecided(**env(), reasons="x", approved_fen=1, refused=True)
    assert i.DeliberationDecided(**env(), reasons="不予提高", refused=True).refused
    with pytest.raises(ValidationError):
        i.TransitionalReliefExtended(**env(), extended_to_months=7, reason="x")  # P5: max 6


def test_only_finance_moves_reserve_money() -> None:
    with pytest.raises(ValidationError, match="P10"):
        i.ReserveReplenished(**env(TOWN_CLERK), amount_fen=1)
    assert i.ReserveFunded(**env(FINANCE), amount_fen=5_000_000).amount_fen == 5_000_000


def test_refs_must_be_hashes_never_clear_numbers() -> None:
    clear = "11010519491231002X"
    with pytest.raises(ValidationError) as err:
        i.ReliefRequested(**{**_data(relief_requested()), "household_ref": clear})
    assert clear not in str(err.value)
    assert i.ReliefRequested(**{**_data(relief_requested()), "household_ref": WANG})


def test_town_codes_and_correlation_ids_have_a_shape() -> None:
    with pytest.raises(ValidationError):
        i.PaperworkCompleted(**{**env(), "town": "索镇"})
    with pytest.raises(ValidationError):
        i.PaperworkCompleted(**{**env(), "correlation_id": "case 1; drop"})
    assert i.PaperworkCompleted(**{**env(), "town": QIFENG}).town == QIFENG


def test_no_text_of_any_record_takes_a_control_character() -> None:
    """Kafka keeps a record for good and PostgreSQL's jsonb refuses a NUL: a reader would
    stop at such a record at every start. Every text is refused at the door instead."""
    import pydantic

    from schemas.envelope import Actor
    from tests.unit.schemas.factories import all_samples, intake_samples

    for sample in all_samples():
        data = sample.model_dump()
        texts = [k for k, v in data.items() if isinstance(v, str) and k not in ("type",)]
        for field in texts:
            bad = {**data, field: data[field] + "\x00"}
            with pytest.raises(pydantic.ValidationError):  # (or its own pattern or enum)
                type(sample).model_validate(bad)
    sample = next(s for s in intake_samples() if s.type == "ReliefRequested")
    with pytest.raises(pydantic.ValidationError, match=r"reason\n.*U\+0000"):
        type(sample).model_validate({**sample.model_dump(), "reason": "进\x00水"})
    with pytest.raises(pydantic.ValidationError, match="U\\+001B"):
        Actor(role="town", org="起凤镇\x1b")
    assert Actor(role="town", org="起凤镇\t人民政府").org  # tab, newline, return are text
