"""Tokens (hashed at rest) and who may do what, for which town."""

from __future__ import annotations

import base64
import json

import pydantic
import pytest

from schemas.envelope import Role
from schemas.intake import Urgency
from services.intake.domain.authz import (
    ALLOWED,
    Action,
    Decision,
    Forbidden,
    check,
    may,
    may_for_town,
    may_register,
    submission_scope,
)
from services.intake.domain.tokens import (
    Principal,
    TokenConfigError,
    TokenTable,
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


def test_only_the_bearer_scheme_carries_a_token() -> None:
    for header in ("Token abc", "Digest abc", "Negotiate abc", "Basic abc", "Bearerx abc"):
        assert bearer(header) is None, header
    assert bearer("BEARER abc") == "abc"


def test_a_token_of_up_to_512_characters_is_looked_up() -> None:
    longest, longer = "t" * 512, "t" * 513
    table = TokenTable(
        {
            token_hash(t): Principal(sha256=token_hash(t), role=Role.AUDITOR, org="审计局")
            for t in (longest, longer)
        }
    )
    found = table.lookup(longest)
    assert found is not None and found.sha256 == token_hash(longest)
    assert table.lookup(longer) is None  # never hashed: a longer header is refused outright


def test_a_tokens_file_holds_up_to_10000_tokens() -> None:
    entry = {"sha256": "a" * 64, "role": "auditor", "org": "审计局"}
    assert len(parse_tokens(json.dumps({"tokens": [entry] * 10_000}), "json")) == 1
    with pytest.raises(TokenConfigError, match="more than 10000 tokens"):
        parse_tokens(json.dumps({"tokens": [entry] * 10_001}), "json")


def test_a_new_token_carries_256_bits() -> None:
    token = new_token()
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert new_token() != token


def test_a_principal_names_an_organisation_a_holder_and_a_town_of_up_to_12_digits() -> None:
    sha = "a" * 64
    assert Principal(sha256=sha, role=Role.TOWN, org="镇", town="370321001002").town == (
        "370321001002"
    )
    assert Principal(sha256=sha, role=Role.AUDITOR, org="审计局", holder="王").holder == "王"
    for bad in (
        {"role": "auditor", "org": ""},
        {"role": "auditor", "org": "审计局", "holder": ""},
        {"role": "town", "org": "镇", "town": "3703210010021"},
    ):
        with pytest.raises(pydantic.ValidationError):
            Principal.model_validate({"sha256": sha, **bad})


def test_a_role_refused_is_named_in_the_reason() -> None:
    for token in ("tok-auditor", "tok-civil", "tok-dept", "tok-bureau", "tok-suozhen"):
        who = principal(token)
        refused = may(who, Action.FUND_RESERVE)
        assert refused.reason == f"role {who.role.value} may not fund_reserve", token
    assert may(principal("tok-finance"), Action.CONFIRM_PAYMENT).reason == (
        "finance is read-only except funding and replenishing reserves; it may not confirm_payment"
    )


def test_a_town_acts_for_no_other_town_whichever_way_their_codes_sort() -> None:
    shaohai, suozhen = principal("tok-shaohai"), principal("tok-suozhen")
    assert SUOZHEN < SHAOHAI
    for who, other in ((suozhen, SHAOHAI), (shaohai, SUOZHEN)):
        refused = may_for_town(who, Action.CONFIRM_PAYMENT, other)
        assert refused == Decision(
            False, f"town {who.town} may act only for its own town, not {other}"
        )


def test_check_lets_an_allowed_decision_pass_and_raises_a_refused_one_with_its_reason() -> None:
    check(may(principal("tok-civil"), Action.REVIEW_CASE))
    with pytest.raises(Forbidden) as refused:
        check(may(principal("tok-dept"), Action.REVIEW_CASE))
    assert refused.value.reason == "role department may not review_case"
