"""Postings balance, have at least two lines, and name valid accounts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.money import MAX_AMOUNT_FEN
from schemas.postings import (
    COUNTY_SCOPE,
    NORMAL_SIDE,
    AccountKind,
    InvalidAccount,
    Posting,
    PostingLine,
    Side,
    account,
    normal_side,
    parse_account,
)
from schemas.registry import decode, encode
from tests.unit.schemas.factories import QIFENG, advance_posting, funding_posting


def _with_lines(*lines: dict[str, Any]) -> dict[str, Any]:
    return {**advance_posting().model_dump(), "lines": list(lines)}


def test_the_contract_examples_balance() -> None:
    for posting in (advance_posting(), funding_posting()):
        assert decode(encode(posting)) == posting
    assert advance_posting().amount_fen == 80_000


@given(st.lists(st.integers(min_value=1, max_value=MAX_AMOUNT_FEN // 64), min_size=1, max_size=10))
def test_a_posting_balances_whatever_its_split(amounts: list[int]) -> None:
    credits = [
        {"account": account("town_reserve", QIFENG), "side": "credit", "amount_fen": a}
        for a in amounts
    ]
    debit = {
        "account": account("town_reserve_held", QIFENG),
        "side": "debit",
        "amount_fen": sum(amounts),
    }
    posting = Posting.model_validate(_with_lines(debit, *credits))
    assert posting.amount_fen == sum(amounts)
    with pytest.raises(ValidationError, match="unbalanced"):
        Posting.model_validate(_with_lines({**debit, "amount_fen": sum(amounts) + 1}, *credits))


def test_fewer_than_two_lines_are_refused() -> None:
    line = {"account": account("town_reserve", QIFENG), "side": "debit", "amount_fen": 1}
    with pytest.raises(ValidationError):
        Posting.model_validate(_with_lines(line))


@pytest.mark.parametrize(
    "code",
    [
        "town_reserve",
        "nope:county",
        "town_reserve:county",
        "county_fund:370321101",
        "relief_paid:abc",
        "relief_paid:",
        ":county",
    ],
)
def test_invalid_account_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidAccount):
        parse_account(code)
    with pytest.raises(ValidationError):
        PostingLine(account=code, side=Side.DEBIT, amount_fen=1)


def test_posting_id_is_the_event_id_and_amounts_are_strict() -> None:
    data = advance_posting().model_dump()
    with pytest.raises(ValidationError, match="posting_id"):
        Posting.model_validate({**data, "posting_id": "00000000-0000-4000-8000-0000000000ff"})
    line = data["lines"][0]
    with pytest.raises(ValidationError):
        PostingLine.model_validate({**line, "amount_fen": 80_000.0})


def test_accounts_and_normal_sides() -> None:
    assert account(AccountKind.COUNTY_FUND, COUNTY_SCOPE) == "county_fund:county"
    assert account("relief_paid", QIFENG) == f"relief_paid:{QIFENG}"
    assert account("recovery_receivable", COUNTY_SCOPE) == "recovery_receivable:county"
    assert parse_account(f"town_reserve_held:{QIFENG}") == (AccountKind.TOWN_RESERVE_HELD, QIFENG)
    assert set(NORMAL_SIDE) == set(AccountKind)
    assert normal_side("county_fund:county") is Side.CREDIT
    assert normal_side(f"town_reserve:{QIFENG}") is Side.DEBIT
    assert normal_side("recovered:county") is Side.CREDIT
    with pytest.raises(InvalidAccount):
        account("pocket", QIFENG)
