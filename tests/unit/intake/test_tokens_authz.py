"""Tokens (hashed at rest) and who may do what, for which town."""

from __future__ import annotations

import json

import pytest

from schemas.envelope import Role
from schemas.intake import Urgency
from services.intake.domain.authz import (
    ALLOWED,
    Action,
    may,
    may_for_town,
    may_register,
    submission_scope,
)
from services.intake.domain.tokens import (
    Principal,
    TokenConfigError,
    bearer,
    json_document,
    new_token,
    parse_tokens,
    token_hash,
    toml_entry,
)
from tests.unit.intake.people import SHAOHAI, SUOZHEN, TOKENS, principal, token_table


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_lookup_by_hash_only() -> None:
    table = token_table()
    assert table.lookup("tok-suozhen") == principal("tok-suozhen")
    assert table.lookup("tok-nobody") is None
    assert table.lookup("") is None and table.lookup(None) is None
    assert table.lookup("x" * 10_000) is None


def test_toml_and_json_round_trip_keep_only_hashes() -> None:
    secret = new_token()
    p = Principal(sha256=token_hash(secret), role=Role.TOWN, org='索镇街道 "办"', town=SUOZHEN)
    toml_text = toml_entry(p) + "\n" + toml_entry(principal("tok-finance"))
    assert secret not in toml_text
    parsed = parse_tokens(toml_text, "toml")
    assert parsed[p.sha256] == p and len(parsed) == 2
    assert parse_tokens(json_document(parsed.values()), "json") == parsed


@pytest.mark.parametrize(
    ("text", "fmt", "says"),
    [
        ("[[tokens]\n", "toml", "not valid toml"),
        ('{"tokens": 3}', "json", "expected a list"),
        (
            '{"tokens": [{"sha256": "ab", "role": "town", "org": "x", "town": "370321001"}]}',
            "json",
            "entry 0: sha256",
        ),
        (
            json.dumps({"tokens": [{"sha256": "a" * 64, "role": "town", "org": "x"}]}),
            "json",
            "town is required",
        ),
        (
            json.dumps(
                {"tokens": [{"sha256": "a" * 64, "role": "finance", "org": "x", "town": SUOZHEN}]}
            ),
            "json",
            "only for, role town",
        ),
        (
            json.dumps({"tokens": [{"sha256": "a" * 64, "role": "king", "org": "x"}]}),
            "json",
            "role",
        ),
    ],
)
def test_bad_token_files_say_where(text: str, fmt: str, says: str) -> None:
    with pytest.raises(TokenConfigError, match=says):
        parse_tokens(text, fmt)


def test_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer ") is None


def test_every_action_has_roles_and_system_has_none() -> None:
    assert set(ALLOWED) == set(Action)
    assert all(Role.SYSTEM not in roles for roles in ALLOWED.values())


def test_a_town_acts_only_for_itself() -> None:
    suozhen = principal("tok-suozhen")
    assert may_for_town(suozhen, Action.CONFIRM_PAYMENT, SUOZHEN).allowed
    refused = may_for_town(suozhen, Action.CONFIRM_PAYMENT, SHAOHAI)
    assert not refused.allowed and "own town" in refused.reason
    assert not may_for_town(suozhen, Action.READ, SHAOHAI).allowed
    assert may_for_town(principal("tok-auditor"), Action.READ, SHAOHAI).allowed


def test_finance_is_read_only_except_reserves() -> None:
    finance = principal("tok-finance")
    allowed = {a for a in Action if may(finance, a).allowed}
    assert allowed == {
        Action.READ,
        Action.READ_SUBMISSION,
        Action.FUND_RESERVE,
        Action.REPLENISH_RESERVE,
    }
    assert "read-only" in may(finance, Action.CONFIRM_PAYMENT).reason


def test_whose_submissions_each_reader_sees() -> None:
    # a town its own town's; the bureau and departments their own organisation's;
    # county staff who read everything, every town's
    assert submission_scope(principal("tok-suozhen")) == (SUOZHEN, None)
    assert submission_scope(principal("tok-bureau")) == (None, "桓台县应急管理局")
    assert submission_scope(principal("tok-dept")) == (None, "桓台县医疗保障局")
    for county in ("tok-civil", "tok-finance", "tok-auditor"):
        assert submission_scope(principal(county)) == (None, None)
    # everyone who writes may ask what became of it
    assert all(may(principal(t), Action.READ_SUBMISSION).allowed for t in TOKENS)


def test_who_registers_which_cases() -> None:
    town, civil = principal("tok-suozhen"), principal("tok-civil")
    # section 八: a town accepts, reviews and approves both kinds, for itself only
    assert may_register(town, SUOZHEN, Urgency.URGENT).allowed
    assert may_register(town, SUOZHEN, Urgency.EXPENDITURE).allowed
    assert not may_register(town, SHAOHAI, Urgency.URGENT).allowed
    assert may_register(civil, SHAOHAI, Urgency.EXPENDITURE).allowed
    assert may_register(civil, SHAOHAI, Urgency.URGENT).allowed
    assert not may_register(principal("tok-dept"), SUOZHEN, Urgency.URGENT).allowed
    # P6: a second grant for one cause is civil affairs' alone
    assert may_register(civil, SHAOHAI, Urgency.URGENT, second_grant=True).allowed
    refused = may_register(town, SUOZHEN, Urgency.URGENT, second_grant=True)
    assert not refused.allowed and "P6" in refused.reason


@pytest.mark.parametrize("token", ["tok-bureau", "tok-dept", "tok-auditor", "tok-finance"])
def test_only_civil_affairs_reviews(token: str) -> None:
    assert not may(principal(token), Action.REVIEW_CASE).allowed
    assert may(principal("tok-civil"), Action.REVIEW_CASE).allowed


def test_a_tokens_holder_is_the_person_on_its_commands() -> None:
    """Section 十: a command names the person who holds the token, not only the office."""
    text = (
        '[[tokens]]\nsha256 = "' + "a" * 64 + '"\nrole = "civil_affairs"\n'
        'org = "桓台县民政局"\nholder = "社会救助科 张某"\n'
    )
    [holder] = parse_tokens(text, "toml").values()
    assert holder.actor.person == "社会救助科 张某" and holder.actor.org == "桓台县民政局"
    assert parse_tokens(toml_entry(holder), "toml")[holder.sha256] == holder


@pytest.mark.parametrize(
    "token", ["tok-bureau", "tok-dept", "tok-auditor", "tok-finance", "tok-suozhen"]
)
def test_only_civil_affairs_follows_up_a_hardship_row(token: str) -> None:
    # section 二: departments push the lists; civil affairs decides on each row (P9)
    assert not may(principal(token), Action.FOLLOW_UP_HARDSHIP).allowed
    assert may_for_town(principal("tok-civil"), Action.FOLLOW_UP_HARDSHIP, SHAOHAI).allowed
