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
TIANZHUANG = "370321102"
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


# ---------------------------------------------------------------- at the limits


def envelope(**changes: object) -> bytes:
    """An intake record's bytes with some of its envelope changed (None: removed)."""
    data = json.loads(encode(payment(uuid.UUID(int=7))))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"\xff{}", "not JSON: UnicodeDecodeError"),
        (b"not json", "not JSON: JSONDecodeError"),
        (b"[]", "not a JSON object"),
        (envelope(event_id=None), "no envelope: KeyError"),
        (envelope(event_id="not-a-uuid"), "no envelope: ValueError"),
        (envelope(actor={"role": "town"}), "no envelope: KeyError"),  # an actor with no org
        (envelope(type="ClockTick"), "a clock tick"),  # whatever town it names
        (envelope(town="__clock__"), "a clock tick"),  # whatever type it is
        (envelope(town="37032"), "no town or correlation id"),
        (envelope(town="3703211010123"), "no town or correlation id"),
        (envelope(town="qifeng"), "no town or correlation id"),  # sorts after "__clock__"
        (envelope(correlation_id=""), "no town or correlation id"),
        (envelope(correlation_id="c" * 65), "no town or correlation id"),
    ],
)
def test_a_record_that_is_no_submission_says_why(value: bytes, why: str) -> None:
    with pytest.raises(NotASubmission) as refused:
        submitted(value, 0, 1)
    assert str(refused.value) == why


def test_a_submission_names_a_town_of_6_to_12_digits_and_a_correlation_id_of_1_to_64() -> None:
    for town, corr in (("370321", "c"), ("370321101012", "c" * 64)):
        seen = submitted(envelope(town=town, correlation_id=corr), 0, 1)
        assert (seen.town, seen.correlation_id) == (town, corr)


def test_a_submission_keeps_64_characters_of_its_type_and_100_of_its_org() -> None:
    seen = submitted(envelope(type="T" * 65, actor={"role": "town", "org": "镇" * 101}), 3, 9)
    assert (seen.type, seen.org) == ("T" * 64, "镇" * 100)
    exact = submitted(envelope(type="T" * 64, actor={"role": "town", "org": "镇" * 100}), 3, 9)
    assert (exact.type, exact.org) == ("T" * 64, "镇" * 100)
    # an actor that is not an object names no organisation
    assert submitted(envelope(actor="起凤镇"), 3, 9).org == ""


def test_a_dead_letters_reason_is_kept_to_1000_characters_masked() -> None:
    dead = json.loads(encode(RejectedRecord.of("relief.intake.v1", 1, 5, "r", b"{}", AT)))
    long = rejection({**dead, "reason": f"{WANG_ID} " + "理" * 1_500})
    assert len(long.reason) == 1_000 and WANG_ID not in long.reason
    exact = rejection({**dead, "reason": "理" * 1_000})
    assert exact.reason == "理" * 1_000
    # a dead letter with no excerpt and no reason names no record, with an empty reason
    bare = rejection({k: v for k, v in dead.items() if k not in ("raw_excerpt", "reason")})
    assert (bare.source_event_id, bare.town, bare.source_type, bare.reason) == (
        None,
        None,
        None,
        "",
    )
    assert (bare.source_partition, bare.source_offset) == (1, 5)


def test_a_record_not_read_yet_is_named_by_its_first_decisions_case() -> None:
    # a payment's ReliefPaid, then the reserve's decision the same command caused
    decided = [(QIFENG, "case-1"), (QIFENG, f"reserve:{QIFENG}")]
    ans = answer(None, decided, None, None)
    assert (ans.status, ans.town, ans.correlation_id, ans.type) == (
        SubmissionStatus.DECIDED,
        QIFENG,
        "case-1",
        None,
    )


def test_a_rejected_record_is_named_by_what_was_read_before_its_dead_letter() -> None:
    event_id = uuid.uuid4()
    raw = encode(payment(event_id))
    dead = rejection(
        json.loads(encode(RejectedRecord.of("relief.intake.v1", 0, 10, "no open case", raw, AT)))
    )
    # not read yet: the dead letter's excerpt names the town and the type
    alone = answer(None, [], dead, None)
    assert (alone.status, alone.town, alone.type, alone.correlation_id) == (
        SubmissionStatus.REJECTED,
        QIFENG,
        "PaymentConfirmed",
        None,
    )
    # a dead letter whose excerpt names no town (bytes that are no envelope): the record
    # read names it
    cut = rejection(
        json.loads(encode(RejectedRecord.of("relief.intake.v1", 0, 10, "refused", b"{}", AT)))
    )
    both = answer(SEEN, [], cut, 11)
    assert (both.status, both.town, both.type, both.correlation_id) == (
        SubmissionStatus.REJECTED,
        QIFENG,
        "PaymentConfirmed",
        "case-1",
    )
    # decided wins over a dead letter of the same event id (sent again, applied)
    again = answer(SEEN, [(QIFENG, "case-1")], dead, 11)
    assert (again.status, again.reason) == (SubmissionStatus.DECIDED, None)


def test_a_reader_scoped_to_an_org_sees_only_what_that_org_submitted() -> None:
    unread = answer(None, [(QIFENG, "case-1")], None, None)
    assert visible(unread, None, None, None)  # county staff
    assert visible(unread, None, QIFENG, None)
    assert not visible(unread, None, None, TOWN.org)  # not read yet: whose it is is unknown


def test_any_type_but_clocktick_is_a_submission_whichever_way_it_sorts() -> None:
    for kind in ("AdvanceCancelled", "CaseReviewed", "TransitionalReliefExtended"):
        assert submitted(envelope(type=kind), 0, 1).type == kind


def test_a_record_past_where_the_processor_has_got_is_pending() -> None:
    # SEEN is at offset 10: the processor has committed offsets up to 5 only
    assert answer(SEEN, [], None, 5).status is SubmissionStatus.PENDING
    assert answer(SEEN, [], None, 10).status is SubmissionStatus.PENDING
    assert answer(SEEN, [], None, 11).status is SubmissionStatus.DECIDED


def test_decisions_of_several_towns_name_the_first_decisions_town_and_case() -> None:
    # a clock tick's event id: nobody submits it, but its decisions span towns
    ans = answer(None, [(QIFENG, "case-1"), (TIANZHUANG, "case-9")], None, None)
    assert (ans.status, ans.town, ans.correlation_id) == (
        SubmissionStatus.DECIDED,
        QIFENG,
        "case-1",
    )
    assert not visible(ans, None, TIANZHUANG, None)


def test_an_org_sees_only_its_own_whichever_way_the_org_names_sort() -> None:
    mine = answer(SEEN, [], None, 11)
    assert visible(mine, SEEN, None, "起凤镇人民政府")
    for other in ("桓台县应急管理局", "马桥镇人民政府"):  # one sorts before it, one after
        assert not visible(mine, SEEN, None, other)


def test_a_readers_scope_is_compared_by_value_not_by_identity() -> None:
    # the token's town and org and the stored record's are equal strings, never the same
    seen = submitted(encode(payment(uuid.uuid4())), 0, 10)
    mine = answer(seen, [], None, 11)
    town, org = "".join(["370321", "101"]), "".join(["起凤镇", "人民政府"])
    assert visible(mine, seen, town, None)
    assert visible(mine, seen, None, org)
