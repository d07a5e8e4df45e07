"""Submissions: intake records read back, dead letters tied to their record, and the
answer the submissions endpoint gives — pure."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import Actor, Role
from schemas.intake import (
    ClockTick,
    DisasterSubtype,
    IncidentKind,
    IncidentReported,
    PaymentConfirmed,
)
from schemas.registry import encode
from schemas.topics import RejectedRecord
from services.casebook.domain.submissions import (
    NotASubmission,
    SubmissionStatus,
    Submitted,
    answer,
    rejection,
    submitted,
    visible,
)
from tests.unit.schemas.factories import WANG_ID

QIFENG = "370321101"
AT = datetime(2026, 7, 20, tzinfo=UTC)
TOWN = Actor(role=Role.TOWN, org="起凤镇人民政府")


def payment(event_id: uuid.UUID) -> PaymentConfirmed:
    return PaymentConfirmed(
        event_id=event_id,
        occurred_at=AT,
        town=QIFENG,
        actor=TOWN,
        correlation_id="case-404",
        amount_fen=80_000,
        bank_reference="BANK-1",
    )


def test_an_intake_record_is_read_as_a_submission_and_a_tick_is_not() -> None:
    event_id = uuid.uuid4()
    seen = submitted(encode(payment(event_id)), 2, 41)
    assert seen == Submitted(event_id, "PaymentConfirmed", QIFENG, "case-404", TOWN.org, 2, 41)
    tick = ClockTick(
        event_id=uuid.uuid4(),
        occurred_at=AT,
        town="__clock__",
        actor=Actor(role=Role.SYSTEM, org="relief-clock"),
        correlation_id="clock-p0",
        partition=0,
    )
    with pytest.raises(NotASubmission):
        submitted(encode(tick), 0, 1)
    for junk in (b"", b"[]", b"not json", b'{"type": "PaymentConfirmed"}'):
        with pytest.raises(NotASubmission):
            submitted(junk, 0, 1)


def test_a_dead_letter_names_its_record_and_never_an_id_number() -> None:
    event_id = uuid.uuid4()
    raw = encode(payment(event_id))
    reason = f"PaymentConfirmed for case 'case-404': no open case; holder {WANG_ID}"
    dead = RejectedRecord.of("relief.intake.v1", 2, 41, reason, raw, AT)
    found = rejection(json.loads(encode(dead)))
    assert (found.source_event_id, found.town, found.source_type) == (
        event_id,
        QIFENG,
        "PaymentConfirmed",
    )
    assert WANG_ID not in found.reason and "no open case" in found.reason
    assert (found.source_partition, found.source_offset) == (2, 41)


def test_the_event_id_is_within_the_excerpt_of_the_largest_intake_record() -> None:
    # keys are sorted: every field before event_id is bounded, the big ones come after
    event_id = uuid.uuid4()
    big = IncidentReported(
        event_id=event_id,
        occurred_at=AT,
        town=QIFENG,
        actor=Actor(role=Role.EMERGENCY_BUREAU, org="桓" * 100),
        correlation_id="i" * 64,
        incident_id="i" * 64,
        kind=IncidentKind.NATURAL_DISASTER,
        disaster_subtype=DisasterSubtype.FLOOD,
        description="洪" * 2_000,
        household_refs=tuple(f"h_{n:032x}" for n in range(5_000)),
    )
    dead = RejectedRecord.of("relief.intake.v1", 0, 7, "refused", encode(big), AT)
    assert len(dead.raw_excerpt) < dead.raw_length
    assert rejection(json.loads(encode(dead))).source_event_id == event_id


def test_a_dead_letter_of_unreadable_bytes_names_no_record() -> None:
    dead = RejectedRecord.of("relief.intake.v1", 0, 7, "not JSON", b"\xff\xfe garbage", AT)
    found = rejection(json.loads(encode(dead)))
    assert found.source_event_id is None and found.town is None


SEEN = Submitted(uuid.uuid4(), "PaymentConfirmed", QIFENG, "case-1", TOWN.org, 0, 10)


def test_answers() -> None:
    dead = rejection(
        json.loads(encode(RejectedRecord.of("relief.intake.v1", 0, 10, "no open case", b"{}", AT)))
    )
    assert answer(None, [], None, None).status is SubmissionStatus.PENDING
    assert answer(SEEN, [], None, None).status is SubmissionStatus.PENDING
    assert answer(SEEN, [], None, 10).status is SubmissionStatus.PENDING  # not read yet
    # read by the processor, nothing decided, nothing refused: a fact it keeps
    assert answer(SEEN, [], None, 11).status is SubmissionStatus.DECIDED
    assert answer(SEEN, [(QIFENG, "case-1")], None, None).status is SubmissionStatus.DECIDED
    refused = answer(SEEN, [], dead, 11)
    assert (refused.status, refused.reason) == (SubmissionStatus.REJECTED, "no open case")
    # the town comes from the dead letter when the record itself was not read yet
    assert answer(None, [], dead, None).town is None
    assert answer(None, [(QIFENG, "case-1")], None, None).town == QIFENG


def test_scopes() -> None:
    mine = answer(SEEN, [], None, 11)
    assert visible(mine, SEEN, None, None)  # county staff
    assert visible(mine, SEEN, QIFENG, None)
    assert not visible(mine, SEEN, "370321102", None)  # another town's token
    assert visible(mine, SEEN, None, TOWN.org)
    assert not visible(mine, SEEN, None, "桓台县应急管理局")
    assert not visible(answer(None, [], None, None), None, QIFENG, None)
