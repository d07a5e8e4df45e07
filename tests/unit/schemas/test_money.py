"""Money is integer fen: strict, positive, bounded; yuan only at the edge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.money import (
    MAX_AMOUNT_FEN,
    MAX_YUAN_TEXT_LENGTH,
    Fen,
    MoneyError,
    NonNegativeFen,
    fen_from_yuan_text,
    yuan,
)


class Amount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_fen: Fen


class Balance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    balance_fen: NonNegativeFen


amounts = st.integers(min_value=1, max_value=MAX_AMOUNT_FEN)


def test_the_limit_is_ten_million_yuan() -> None:
    assert MAX_AMOUNT_FEN == 1_000_000_000
    assert yuan(MAX_AMOUNT_FEN) == "10,000,000.00"


@given(amounts)
def test_any_amount_in_range_is_accepted_and_round_trips_through_yuan_text(fen: int) -> None:
    assert Amount(amount_fen=fen).amount_fen == fen
    assert fen_from_yuan_text(yuan(fen)) == fen
    assert fen_from_yuan_text(yuan(fen).replace(",", "")) == fen


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (100.0, "int_type"),
        (1.5, "int_type"),
        ("100", "int_type"),
        (True, "int_type"),
        (Decimal("100"), "int_type"),
        (0, "greater_than"),
        (-1, "greater_than"),
        (MAX_AMOUNT_FEN + 1, "less_than_equal"),
    ],
)
def test_anything_but_a_positive_bounded_int_is_refused_on_the_field(
    value: object, kind: str
) -> None:
    with pytest.raises(ValidationError) as err:
        Amount(amount_fen=value)
    [error] = err.value.errors()
    assert error["loc"] == ("amount_fen",)
    assert error["type"] == kind


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_float_is_ever_an_amount(value: float) -> None:
    with pytest.raises(ValidationError):
        Amount(amount_fen=value)


def test_a_json_float_is_refused_too() -> None:
    with pytest.raises(ValidationError):
        Amount.model_validate_json('{"amount_fen": 100.0}')
    assert Amount.model_validate_json('{"amount_fen": 100}').amount_fen == 100


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (1, "0.01"),
        (100, "1.00"),
        (123456, "1,234.56"),
        (100_000_000, "1,000,000.00"),
        (-250, "-2.50"),
        (-1, "-0.01"),
        (0, "0.00"),
    ],
)
def test_yuan_display(fen: int, text: str) -> None:
    assert yuan(fen) == text


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("10,000,000.00", MAX_AMOUNT_FEN),
        ("10000000", MAX_AMOUNT_FEN),
        ("1234.56", 123456),
        ("1,234.56", 123456),
        (" 924 ", 92400),
        ("0.5", 50),
        ("1000", 100_000),
    ],
)
def test_yuan_text_is_parsed_exactly(text: str, fen: int) -> None:
    assert fen_from_yuan_text(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "1.234",
        "1.239",
        "0.015",
        "0.001",
        "",
        "abc",
        "-5",
        "+5",
        "1e3",
        "NaN",
        "Infinity",
        "0",
        "0.00",
        "1,23.00",
        "10000000.01",
        "1" * 40,
        "１２３",
    ],
)
def test_bad_yuan_text_is_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        fen_from_yuan_text(text)


def test_yuan_refuses_non_integers() -> None:
    with pytest.raises(MoneyError):
        yuan(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        yuan(True)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (-1, "greater_than_equal"),
        (MAX_AMOUNT_FEN + 1, "less_than_equal"),
        (1.0, "int_type"),
        ("5", "int_type"),
        (False, "int_type"),
    ],
)
def test_a_balance_may_be_zero_but_is_still_a_strict_bounded_int(value: object, kind: str) -> None:
    # a balance or an approval of nothing (P9 refusal in a deliberation) is 0 fen, never
    # below, and never a float or text coerced into fen
    assert Balance(balance_fen=0).balance_fen == 0
    assert Balance(balance_fen=MAX_AMOUNT_FEN).balance_fen == MAX_AMOUNT_FEN
    with pytest.raises(ValidationError) as err:
        Balance(balance_fen=value)
    [error] = err.value.errors()
    assert error["loc"] == ("balance_fen",)
    assert error["type"] == kind


def test_yuan_text_up_to_the_length_limit_is_read_and_one_more_character_is_refused() -> None:
    # the limit is on the text as typed, spaces and all (STYLE "a limit on everything")
    at_limit = "1.00".rjust(MAX_YUAN_TEXT_LENGTH)
    assert len(at_limit) == MAX_YUAN_TEXT_LENGTH == 32
    assert fen_from_yuan_text(at_limit) == 100
    with pytest.raises(MoneyError, match="longer than 32 characters"):
        fen_from_yuan_text(" " + at_limit)
