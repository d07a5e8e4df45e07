"""Money is integer fen (1 yuan = 100 fen), never a float (docs/design.md "money is integer fen").

`Fen` is the type of every amount in a record: a strict `int` (floats, strings and bools
are refused, not coerced), positive, and bounded by `MAX_AMOUNT_FEN` (STYLE "a limit on
everything"). Yuan appear only at the edge, shown to or typed by a person.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import Field

FEN_PER_YUAN = 100
# The largest amount any single record may carry: 10,000,000 yuan. Far above any relief
# payment or town reserve (R4: 50,000 yuan), low enough that a typo of a few digits is caught.
MAX_AMOUNT_FEN = 10_000_000 * FEN_PER_YUAN
# Human input longer than this is refused before it is parsed.
MAX_YUAN_TEXT_LENGTH = 32

Fen = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT_FEN)]
"""A positive amount in fen: strict int, 0 < amount <= MAX_AMOUNT_FEN."""

NonNegativeFen = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT_FEN)]
"""An amount in fen that may be zero (a balance, an approval of nothing)."""


class MoneyError(ValueError):
    """A yuan text or amount that cannot be an exact amount of fen."""


def yuan(fen: int) -> str:
    """Fen shown as yuan with thousands separators: 123456 -> "1,234.56"."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise MoneyError(f"an amount of fen must be an int, got {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{cents:02d}"


_YUAN_TEXT = re.compile(r"^(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$", re.ASCII)


def fen_from_yuan_text(text: str) -> int:
    """Exact fen from a person's yuan text: "1234.56" or "1,234.56" -> 123456.

    Decimal is used here, at the edge only; more than two decimals, signs, exponents,
    zero and amounts above MAX_AMOUNT_FEN are refused rather than rounded.
    """
    if len(text) > MAX_YUAN_TEXT_LENGTH:
        raise MoneyError(f"yuan text longer than {MAX_YUAN_TEXT_LENGTH} characters")
    cleaned = text.strip()
    if not _YUAN_TEXT.fullmatch(cleaned):
        raise MoneyError(f"not a yuan amount: {cleaned!r} (expected e.g. 1234.56)")
    try:
        value = Decimal(cleaned.replace(",", ""))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise MoneyError(f"not a yuan amount: {cleaned!r}") from exc
    fen = value * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise MoneyError(f"more than two decimals in {cleaned!r}: fen is the smallest unit")
    result = int(fen)
    if not 0 < result <= MAX_AMOUNT_FEN:
        raise MoneyError(f"{cleaned} yuan is outside 0.01 .. {yuan(MAX_AMOUNT_FEN)} yuan")
    return result
