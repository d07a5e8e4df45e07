"""Request -> record mapping: ID numbers become household refs, errors name their path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.envelope import Actor, Role
from schemas.identity import household_ref, person_ref, statement_ref
from schemas.intake import IdentifiedBy
from schemas.towns import load_county
from services.intake.domain import requests as rq
from tests.unit.intake.people import KEY, SUOZHEN, bad_check, make_id

NOW = datetime(2024, 7, 10, 8, 0, tzinfo=UTC)
STAMP = rq.Stamp(uuid.UUID(int=1), NOW, Actor(role=Role.TOWN, org="索镇"), KEY, load_county())


def register(**changes: object) -> rq.RegisterCase:
    body: dict[str, object] = {
        "town": SUOZHEN,
        "urgency": "urgent",
        "category": "emergency",
        "household_head_id": make_id(1),
        "requested_fen": 80_000,
        "reason": "flood",
    }
    return rq.RegisterCase.model_validate({**body, **changes})


def test_register_case_hashes_the_id_and_derives_the_case_id() -> None:
    record = rq.register_case(register(), STAMP)
    assert record.household_ref == household_ref(make_id(1), KEY)
    assert record.case_id == f"case-{uuid.UUID(int=1).hex}"
    assert record.event_id == STAMP.event_id and record.occurred_at == NOW
    assert make_id(1) not in record.model_dump_json()


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"town": "370321999"}, ("body", "town")),
        ({"household_head_id": bad_check(make_id(1))}, ("body", "household_head_id")),
        ({"occurred_at": (NOW + timedelta(hours=1)).isoformat()}, ("body", "occurred_at")),
        ({"origin_county": "Boxing"}, ("body",)),
    ],
)
def test_request_problems_name_their_path(changes: dict[str, object], loc: rq.Loc) -> None:
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.register_case(register(**changes), STAMP)
    assert [p[0] for p in raised.value.problems] == [loc]
    assert make_id(1) not in str(raised.value)


def test_review_rules_come_back_as_body_errors() -> None:
    review = rq.ReviewCase.model_validate(
        {"town": SUOZHEN, "outcome": "top_up", "approved_fen": 100}
    )
    with pytest.raises(rq.RequestInvalid, match="top_up_fen"):
        rq.review_case("c1", review, STAMP)


def test_reserve_records_use_the_processors_correlation() -> None:
    finance = rq.Stamp(
        STAMP.event_id, NOW, Actor(role=Role.FINANCE, org="财政局"), KEY, STAMP.county
    )
    record = rq.replenish_reserve(SUOZHEN, rq.MoveReserve(amount_fen=100), finance)
    assert record.correlation_id == f"reserve:{SUOZHEN}" and record.amount_fen == 100
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.fund_reserve("370321999", rq.MoveReserve(amount_fen=100), finance)
    assert raised.value.problems[0][0] == ("path", "town")


def test_the_household_is_its_members_each_hashed_and_none_in_clear() -> None:
    """P6: the head and every member become person refs; no ID number is in the record."""
    record = rq.register_case(register(household_member_ids=[make_id(2), make_id(3)]), STAMP)
    assert record.member_refs == tuple(person_ref(make_id(n), KEY) for n in (1, 2, 3))
    text = record.model_dump_json()
    assert not [n for n in (1, 2, 3) if make_id(n) in text]
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.register_case(register(household_member_ids=[make_id(2), bad_check(make_id(3))]), STAMP)
    assert [p[0] for p in raised.value.problems] == [("body", "household_member_ids", 1)]


def test_a_vagrant_without_an_id_is_registered_on_an_identity_statement() -> None:
    """R7: the statement is hashed (the same one twice, the same household); it is for
    vagrants only, and one of head ID and statement is given."""
    statement = "自述：张某，河北省某县人，约50岁"
    body = {"household_head_id": None, "identity_statement": statement, "vagrant": True}
    record = rq.register_case(register(**body), STAMP)
    assert record.identified_by is IdentifiedBy.STATEMENT and record.vagrant
    assert record.household_ref == statement_ref(statement, KEY)
    assert statement not in record.model_dump_json()
    spaced = rq.register_case(register(**{**body, "identity_statement": f" {statement} "}), STAMP)
    assert spaced.household_ref == record.household_ref
    for bad in (
        {"household_head_id": None, "identity_statement": statement},  # not a vagrant
        {"household_head_id": None},  # neither
        {"identity_statement": statement, "vagrant": True},  # both
    ):
        with pytest.raises(rq.RequestInvalid):
            rq.register_case(register(**bad), STAMP)


def test_a_cash_payment_says_why_cash_was_needed() -> None:
    """P9: payment to the household's own account; cash only where needed, and why."""
    cash = {"town": SUOZHEN, "amount_fen": 100, "method": "cash"}
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.confirm_payment("c1", rq.ConfirmPayment.model_validate(cash), STAMP)
    assert raised.value.problems[0][0] == ("body", "cash_reason")
    body = rq.ConfirmPayment.model_validate({**cash, "cash_reason": "无银行账户"})
    assert rq.confirm_payment("c1", body, STAMP).cash_reason == "无银行账户"


def test_an_expenditure_recipients_name_is_masked_at_the_door() -> None:
    # P7: only the first character and a star for each further one enter the record
    body = register(urgency="expenditure", category="serious_illness", recipient_name="张三丰")
    record = rq.register_case(body, STAMP)
    assert record.public_name == "张＊＊"
    encoded = record.model_dump_json()
    assert "三丰" not in encoded and "张三丰" not in encoded


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"recipient_name": "张三丰"}, "expenditure-type cases only"),  # urgent: not published
        ({"urgency": "expenditure", "recipient_name": "张3"}, "letters only"),
        ({"urgency": "expenditure", "recipient_name": "王"}, "2 to 30 characters"),
    ],
)
def test_a_name_that_may_not_be_taken_is_refused_without_echoing_it(
    changes: dict[str, object], words: str
) -> None:
    with pytest.raises(rq.RequestInvalid, match=words) as raised:
        rq.register_case(register(**changes), STAMP)
    assert [p[0] for p in raised.value.problems] == [("body", "recipient_name")]
    assert str(changes["recipient_name"]) not in str(raised.value)


def test_a_publication_is_recorded_for_its_town_and_month() -> None:
    record = rq.publish_disclosure(SUOZHEN, "2026-03", rq.PublishDisclosure(note="公开栏"), STAMP)
    assert (record.town, record.period, record.correlation_id) == (
        SUOZHEN,
        "2026-03",
        "disclosure-2026-03",
    )


CIVIL_STAMP = rq.Stamp(
    uuid.UUID(int=7), NOW, Actor(role=Role.CIVIL_AFFAIRS, org="桓台县民政局"), KEY, load_county()
)
LIST_ID = uuid.UUID(int=99)


def follow_up(**changes: object) -> rq.FollowUpHardship:
    body: dict[str, object] = {
        "town": SUOZHEN,
        "outcome": "case_opened",
        "case_id": "exp-31",
        "reasons": "入户核实，大病支出",
        "decided_by": "王科长",
    }
    return rq.FollowUpHardship.model_validate({**body, **changes})


def test_a_follow_up_names_its_row_and_who_decided() -> None:
    record = rq.follow_up_hardship(LIST_ID, 3, follow_up(), CIVIL_STAMP)
    assert (record.list_event_id, record.row, record.outcome.value, record.case_id) == (
        LIST_ID,
        3,
        "case_opened",
        "exp-31",
    )
    assert record.correlation_id == f"hardship-row-{LIST_ID.hex}-3"
    assert (record.actor.org, record.decided_by, record.town) == ("桓台县民政局", "王科长", SUOZHEN)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"case_id": None}, "case_id is required for, and only for, outcome case_opened"),
        ({"outcome": "referred"}, "case_id is required for, and only for"),
        (
            {"outcome": "referred", "case_id": None},
            "referred_to is required for, and only for, outcome referred",
        ),
        ({"town": "370321999"}, "unknown town"),
    ],
)
def test_a_follow_up_that_does_not_add_up_is_refused_with_the_reason(
    changes: dict[str, object], says: str
) -> None:
    with pytest.raises(rq.RequestInvalid, match=says):
        rq.follow_up_hardship(LIST_ID, 0, follow_up(**changes), CIVIL_STAMP)


def test_a_follow_up_without_written_reasons_or_a_signature_is_not_a_request() -> None:
    with pytest.raises(ValidationError, match="reasons"):
        follow_up(reasons="")
    with pytest.raises(ValidationError, match="decided_by"):
        follow_up(decided_by="")
