"""Request -> record mapping: ID numbers become household refs, errors name their path."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.envelope import Actor, Role
from schemas.identity import (
    MAX_NAME_CHARS,
    NAME_STAR,
    household_ref,
    mask_id,
    person_ref,
    statement_ref,
)
from schemas.intake import IdentifiedBy, PaymentMethod, ReviewOutcome
from schemas.towns import County, Town, TownKind, load_county
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


@pytest.mark.parametrize("blank", [" ", "\t\n ", "\u3000"])
def test_a_blank_identity_statement_is_refused_not_one_household_for_every_vagrant(
    blank: str,
) -> None:
    """R7 + P6: a statement is hashed with its spaces collapsed, so every blank one would
    be the same household and the second vagrant refused as a duplicate of the first; a
    statement says who, or it is refused where it stands."""
    body = {"household_head_id": None, "identity_statement": blank, "vagrant": True}
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.register_case(register(**body), STAMP)
    assert raised.value.problems == [
        (("body", "identity_statement"), "an identity statement says who: not blank")
    ]


SPOKEN: list[tuple[type[rq.CaseBody], dict[str, object], str]] = [
    (rq.RegisterCase, {"reason": "x"}, "reason"),
    (rq.RegisterCase, {"second_grant_reason": "x"}, "second_grant_reason"),
    (rq.RegisterCase, {"origin_county": "x", "vagrant": True}, "origin_county"),
    (rq.ConfirmPayment, {"amount_fen": 1, "bank_reference": "x"}, "bank_reference"),
    (rq.ConfirmPayment, {"amount_fen": 1, "method": "cash", "cash_reason": "x"}, "cash_reason"),
    (rq.CancelAdvance, {"reason": "x"}, "reason"),
    (rq.DeclareEmergencyPeriod, {"reason": "x"}, "reason"),
    (rq.DecideDeliberation, {"refused": True, "reasons": "x"}, "reasons"),
    (
        rq.FollowUpHardship,
        {"outcome": "referred", "referred_to": "x", "reasons": "x", "decided_by": "x"},
        "referred_to",
    ),
    (
        rq.FollowUpHardship,
        {"outcome": "no_relief_needed", "reasons": "x", "decided_by": "x"},
        "reasons",
    ),
    (
        rq.FollowUpHardship,
        {"outcome": "no_relief_needed", "reasons": "x", "decided_by": "x"},
        "decided_by",
    ),
]


@pytest.mark.parametrize(
    ("body", "fields", "name"), SPOKEN, ids=[f"{b.__name__}.{n}" for b, _, n in SPOKEN]
)
def test_what_a_person_must_write_is_refused_when_it_is_only_spaces(
    body: type[rq.CaseBody], fields: dict[str, object], name: str
) -> None:
    """P9's written reasons, why cash, a bank reference, a reason to cancel or to grant a
    second time (P6), where a vagrant comes from (R7), who was referred where: spaces
    alone say nothing, and are refused where they stand."""
    base: dict[str, object] = {"town": SUOZHEN}
    if body is rq.RegisterCase:
        base = register().model_dump(mode="json", exclude_none=True)
    assert body.model_validate({**base, **fields})
    for blank in (" ", "\t\n", "\u3000"):
        with pytest.raises(ValidationError) as raised:
            body.model_validate({**base, **fields, name: blank})
        [error] = raised.value.errors()
        assert error["loc"] == (name,) and "only spaces" in error["msg"], error


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


# ---------------------------------------------------------------- the edges of each rule


BUREAU_STAMP = rq.Stamp(
    uuid.UUID(int=3),
    NOW,
    Actor(role=Role.EMERGENCY_BUREAU, org="桓台县应急管理局"),
    KEY,
    load_county(),
)


def refused(changes: dict[str, object]) -> rq.RequestInvalid:
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.register_case(register(**changes), STAMP)
    return raised.value


def not_a_request(build: Callable[..., object], **changes: object) -> ValidationError:
    """The body's own model refuses it: pydantic's 422, before anything is mapped."""
    with pytest.raises(ValidationError) as raised:
        build(**changes)
    return raised.value


def locs(exc: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.errors()]


@pytest.mark.parametrize(
    "given",
    [
        NOW - timedelta(days=2),
        NOW - timedelta(minutes=5),
        NOW,
        NOW + timedelta(minutes=10),  # the door's clock may be behind the caller's
    ],
)
def test_a_moment_up_to_ten_minutes_ahead_of_the_doors_clock_is_recorded_as_given(
    given: datetime,
) -> None:
    assert rq.register_case(register(occurred_at=given.isoformat()), STAMP).occurred_at == given


def test_a_moment_more_than_ten_minutes_ahead_of_the_doors_clock_is_refused() -> None:
    late = NOW + timedelta(minutes=10, microseconds=1)
    assert refused({"occurred_at": late.isoformat()}).problems == [
        (("body", "occurred_at"), "occurred_at is in the future")
    ]


def incident(**changes: object) -> rq.ReportIncident:
    body: dict[str, object] = {
        "town": SUOZHEN,
        "incident_id": "inc-2024-07-flood",
        "kind": "natural_disaster",
        "disaster_subtype": "flood",
    }
    return rq.ReportIncident.model_validate({**body, **changes})


def test_every_household_an_incident_hits_is_its_heads_hashed_number_in_order() -> None:
    """R1: the households hit are recorded as keyed hashes, never in clear, as reported
    and as added; a child born on the door's day has a number already."""
    today_born = make_id(4, born=NOW.date())
    record = rq.report_incident(
        incident(household_head_ids=[make_id(1), make_id(2), today_born]), BUREAU_STAMP
    )
    assert record.household_refs == tuple(
        household_ref(n, KEY) for n in (make_id(1), make_id(2), today_born)
    )
    assert (record.incident_id, record.correlation_id, record.occurred_at) == (
        "inc-2024-07-flood",
        "inc-2024-07-flood",
        NOW,
    )
    update = rq.UpdateIncident.model_validate(
        {"town": SUOZHEN, "household_head_ids_added": [make_id(3)]}
    )
    added = rq.update_incident("inc-2024-07-flood", update, BUREAU_STAMP)
    assert added.household_refs_added == (household_ref(make_id(3), KEY),)
    text = record.model_dump_json() + added.model_dump_json()
    assert not [n for n in (1, 2, 3) if make_id(n) in text]


def test_each_bad_number_among_the_households_hit_is_named_by_its_place_and_masked() -> None:
    """R1: every bad number is reported at once, each at its index, none in clear; a
    number dated after the door's day is no number yet."""
    wrong, short = bad_check(make_id(2)), make_id(3)[:17]
    unborn = make_id(5, born=NOW.date() + timedelta(days=1))
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.report_incident(
            incident(household_head_ids=[make_id(1), wrong, short, unborn]), BUREAU_STAMP
        )
    where = ("body", "household_head_ids")
    assert raised.value.problems == [
        ((*where, 1), f"resident ID {mask_id(wrong)}: wrong check character"),
        ((*where, 2), f"resident ID {mask_id(short)}: 17 characters, expected 18"),
        (
            (*where, 3),
            f"resident ID {mask_id(unborn)}: date of birth outside 1900-01-01 .. 2024-07-10",
        ),
    ]
    update = rq.UpdateIncident.model_validate(
        {"town": SUOZHEN, "household_head_ids_added": [wrong]}
    )
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.update_incident("inc-2024-07-flood", update, BUREAU_STAMP)
    assert raised.value.problems == [
        (
            ("body", "household_head_ids_added", 0),
            f"resident ID {mask_id(wrong)}: wrong check character",
        )
    ]


def test_a_bad_member_number_is_named_by_its_place_among_the_members() -> None:
    """P6: the first member is members[0], never the head; a bad head is the head's."""
    wrong = bad_check(make_id(2))
    says = f"resident ID {mask_id(wrong)}: wrong check character"
    assert refused({"household_member_ids": [wrong, make_id(3)]}).problems == [
        (("body", "household_member_ids", 0), says)
    ]
    assert refused({"household_head_id": wrong}).problems == [(("body", "household_head_id"), says)]


@pytest.mark.parametrize("text", ["1", "1" * 32])
def test_an_id_text_of_1_to_32_characters_is_read_and_refused_as_no_number(text: str) -> None:
    assert refused({"household_head_id": text}).problems == [
        (
            ("body", "household_head_id"),
            f"resident ID {mask_id(text)}: {len(text)} characters, expected 18",
        )
    ]


def test_an_empty_id_text_or_one_over_32_characters_is_refused_unread_and_unechoed() -> None:
    """A text much longer than an ID number is not parsed; pydantic's message for it
    never shows the number it holds (hide_input_in_errors)."""
    longer = make_id(1) + "0" * 15  # 33 characters
    for text, says in (("", "at least 1 character"), (longer, "at most 32 characters")):
        error = not_a_request(register, household_head_id=text)
        assert locs(error) == [("household_head_id",)] and says in str(error)
    error = not_a_request(register, household_member_ids=[make_id(2), longer])
    assert locs(error) == [("household_member_ids", 1)]
    assert make_id(1) not in str(error)


def county_with(*codes: str) -> County:
    towns = tuple(
        Town(code=c, name_zh="某镇", name_en="Mou", kind=TownKind.TOWN, reserve_fen=5_000_000)
        for c in codes
    )
    return County(code="370321", name="桓台县", towns=towns)


def test_a_town_code_is_6_to_12_digits() -> None:
    """Another county brings its own list of towns: a code of 6 digits and one of 12 are
    codes; 5 and 13 digits are not, and the refusal says which bound."""
    stamp = rq.Stamp(STAMP.event_id, NOW, STAMP.actor, KEY, county_with("370321", "370321001001"))
    for code in ("370321", "370321001001"):
        record = rq.close_incident("inc-1", rq.CloseIncident.model_validate({"town": code}), stamp)
        assert record.town == code
    for code, says in (
        ("37032", "at least 6 characters"),
        ("3703210010012", "at most 12 characters"),
    ):
        error = not_a_request(rq.CloseIncident.model_validate, obj={"town": code})
        assert locs(error) == [("town",)] and says in str(error)


def test_an_unknown_town_is_named_by_its_first_12_characters_at_most() -> None:
    close = rq.CloseIncident.model_validate({"town": "370321001009"})
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.close_incident("inc-1", close, STAMP)
    assert raised.value.problems == [
        (("body", "town"), f"unknown town '370321001009': not in {STAMP.county.name}")
    ]
    finance = rq.Stamp(
        STAMP.event_id, NOW, Actor(role=Role.FINANCE, org="财政局"), KEY, STAMP.county
    )
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.fund_reserve("370321999999" + "9" * 20, rq.MoveReserve(amount_fen=100), finance)
    assert raised.value.problems == [
        (("path", "town"), f"unknown town '370321999999': not in {STAMP.county.name}")
    ]


def test_a_case_is_for_1_to_50_persons_one_unless_said() -> None:
    """P5 pays per person: a whole number of persons, never text, a float or a bool."""
    assert rq.register_case(register(), STAMP).persons == 1
    for n in (1, 50):
        assert rq.register_case(register(persons=n), STAMP).persons == n
    for bad in (0, 51, "3", 3.0, True):
        assert locs(not_a_request(register, persons=bad)) == [("persons",)], bad


def test_a_vagrants_county_of_origin_is_1_to_200_characters() -> None:
    """R7: the county of origin places the vagrant; it is recorded as given."""
    for origin in ("沛", "沛" * 200):
        record = rq.register_case(register(vagrant=True, origin_county=origin), STAMP)
        assert record.origin_county == origin and record.vagrant
    for bad in ("", "沛" * 201):
        assert locs(not_a_request(register, vagrant=True, origin_county=bad)) == [
            ("origin_county",)
        ]


def test_an_identity_statement_is_1_to_200_characters() -> None:
    """R7: the statement, hashed, is the vagrant's household; an empty one is none."""
    body = {"household_head_id": None, "vagrant": True}
    for statement in ("某", "某" * 200):
        record = rq.register_case(register(**body, identity_statement=statement), STAMP)
        assert record.household_ref == statement_ref(statement, KEY)
        assert record.member_refs == () and record.identified_by is IdentifiedBy.STATEMENT
    for bad in ("", "某" * 201):
        assert locs(not_a_request(register, **body, identity_statement=bad)) == [
            ("identity_statement",)
        ]


def test_a_second_grants_reason_is_1_to_2000_characters_recorded_as_given() -> None:
    """P6: county civil affairs grants a second time for a good reason, in writing."""
    for reason in ("病", "病" * 2_000):
        record = rq.register_case(register(second_grant_reason=reason), CIVIL_STAMP)
        assert record.second_grant_reason == reason
    for bad in ("", "病" * 2_001):
        assert locs(not_a_request(register, second_grant_reason=bad)) == [("second_grant_reason",)]


def expenditure(**changes: object) -> rq.RegisterCase:
    return register(urgency="expenditure", category="serious_illness", **changes)


def test_a_recipients_name_is_30_letters_at_most_each_of_which_may_be_spaced() -> None:
    """P7: spaces aside a name has up to 30 characters, so the field takes 60; an empty
    field, or one of 61 characters, is refused by the body without echoing it."""
    spaced = " ".join("阿" * MAX_NAME_CHARS)  # 59 characters
    record = rq.register_case(expenditure(recipient_name=spaced), STAMP)
    assert record.public_name == "阿" + NAME_STAR * (MAX_NAME_CHARS - 1)
    longer = " ".join("阿" * (MAX_NAME_CHARS + 1))  # 61 characters
    for bad, says in (("", "at least 1 character"), (longer, "at most 60 characters")):
        error = not_a_request(expenditure, recipient_name=bad)
        assert locs(error) == [("recipient_name",)] and says in str(error)
    assert longer not in str(not_a_request(expenditure, recipient_name=longer))


def payment(**changes: object) -> rq.ConfirmPayment:
    body: dict[str, object] = {"town": SUOZHEN, "amount_fen": 80_000}
    return rq.ConfirmPayment.model_validate({**body, **changes})


def test_a_bank_payment_is_recorded_with_its_reference_and_needs_no_cash_reason() -> None:
    """P9: the household's own account is the rule; only cash says why."""
    record = rq.confirm_payment("c1", payment(bank_reference="ICBC-20240710-0001"), STAMP)
    assert (
        record.case_id,
        record.amount_fen,
        record.method,
        record.bank_reference,
        record.cash_reason,
    ) == ("c1", 80_000, PaymentMethod.BANK, "ICBC-20240710-0001", None)


def test_a_bank_reference_is_1_to_64_characters() -> None:
    for reference in ("7", "R" * 64):
        assert rq.confirm_payment(
            "c1", payment(bank_reference=reference), STAMP
        ).bank_reference == (reference)
    for bad in ("", "R" * 65):
        assert locs(not_a_request(payment, bank_reference=bad)) == [("bank_reference",)]


def test_a_cash_reason_is_1_to_2000_characters() -> None:
    """P9: cash only where needed, and why, in up to 2,000 characters."""
    for reason in ("无", "无" * 2_000):
        record = rq.confirm_payment("c1", payment(method="cash", cash_reason=reason), STAMP)
        assert (record.method, record.cash_reason) == (PaymentMethod.CASH, reason)
    for bad in ("", "无" * 2_001):
        assert locs(not_a_request(payment, method="cash", cash_reason=bad)) == [("cash_reason",)]


def review(**changes: object) -> rq.ReviewCase:
    body: dict[str, object] = {
        "town": SUOZHEN,
        "outcome": "fraud",
        "approved_fen": 0,
        "reasons": "虚报家庭人口",
    }
    return rq.ReviewCase.model_validate({**body, **changes})


def test_a_fraud_fine_multiple_is_a_whole_number_from_1_to_10() -> None:
    """P8: fined 1-3 x; the band in force is the configuration's (the processor checks
    it), the request takes any whole multiple a record may carry."""
    for multiple in (1, 10):
        record = rq.review_case("c1", review(fine_multiple=multiple), CIVIL_STAMP)
        assert (record.outcome, record.approved_fen, record.fine_multiple, record.fine_fen) == (
            ReviewOutcome.FRAUD,
            0,
            multiple,
            None,
        )
        assert record.reasons == "虚报家庭人口"
    for bad in (0, 11, "2", 2.0):
        assert locs(not_a_request(review, fine_multiple=bad)) == [("fine_multiple",)], bad


def deliberation(**changes: object) -> rq.DecideDeliberation:
    body: dict[str, object] = {"town": SUOZHEN, "reasons": "一事一议：房屋倒塌，重大生活困难"}
    return rq.DecideDeliberation.model_validate({**body, **changes})


def test_a_deliberation_approves_an_amount_or_is_refused_with_reasons() -> None:
    """R6, P9: an approval is not a refusal unless it says so; neither is no decision."""
    approved = rq.decide_deliberation("c1", deliberation(approved_fen=1_500_000), CIVIL_STAMP)
    assert (approved.approved_fen, approved.refused) == (1_500_000, False)
    assert approved.reasons == "一事一议：房屋倒塌，重大生活困难"
    refusal = rq.decide_deliberation("c1", deliberation(refused=True), CIVIL_STAMP)
    assert (refusal.approved_fen, refusal.refused) == (None, True)
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.decide_deliberation("c1", deliberation(), CIVIL_STAMP)
    assert raised.value.problems == [
        (("body",), "a deliberation either approves an amount or is refused")
    ]


def test_a_follow_ups_signature_is_1_to_100_characters() -> None:
    """Section 十: the record shows who decided, as they sign (a name or a staff number)."""
    for signed in ("王", "王" * 100):
        assert rq.follow_up_hardship(
            LIST_ID, 0, follow_up(decided_by=signed), CIVIL_STAMP
        ).decided_by == (signed)
    for bad in ("", "王" * 101):
        assert locs(not_a_request(follow_up, decided_by=bad)) == [("decided_by",)]


def test_a_records_own_check_of_a_field_comes_back_as_that_fields_problem() -> None:
    """A value only the record checks (here a row past the 5,000 a list holds, which the
    API's path model refuses first) is a 422 naming the field, never a crash."""
    with pytest.raises(rq.RequestInvalid) as raised:
        rq.follow_up_hardship(LIST_ID, 5_000, follow_up(), CIVIL_STAMP)
    assert raised.value.problems == [(("body", "row"), "Input should be less than 5000")]
