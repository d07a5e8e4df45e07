"""Balanced double-entry postings on ledger.postings.v1 (docs/contracts.md "Postings").

Account codes are "<kind>:<scope>", scope a town code or "county". A posting has at
least two lines and its debits equal its credits, enforced here and again in
PostgreSQL (STYLE "every invariant twice"; policy P10: funds accounted separately).
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.envelope import MAX_SHORT_TEXT, Record
from schemas.money import Fen

COUNTY_SCOPE = "county"
MAX_POSTING_LINES = 64
MAX_ACCOUNT_CODE = 64
_TOWN_SCOPE = re.compile(r"^[0-9]{6,12}$")


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class AccountKind(StrEnum):
    COUNTY_FUND = "county_fund"  # the county relief fund: source of reserves and top-ups
    CHARITY_FUND = "charity_fund"  # donations (section 九: public finance first, donations second)
    TOWN_RESERVE = "town_reserve"  # a town's reserve, available part (R4) - never below zero
    TOWN_RESERVE_HELD = "town_reserve_held"  # held for advances granted, not yet paid (R5)
    COUNTY_HELD = "county_held"  # county money held for escalated advances not yet paid
    RELIEF_PAID = "relief_paid"  # relief paid to households (expense)
    RECOVERY_RECEIVABLE = "recovery_receivable"  # to be recovered (ineligible, fraud) and fines
    RECOVERED = "recovered"  # recoveries and fines collected / recognised (P8)


NORMAL_SIDE: dict[AccountKind, Side] = {
    AccountKind.COUNTY_FUND: Side.CREDIT,
    AccountKind.CHARITY_FUND: Side.CREDIT,
    AccountKind.TOWN_RESERVE: Side.DEBIT,
    AccountKind.TOWN_RESERVE_HELD: Side.DEBIT,
    AccountKind.COUNTY_HELD: Side.DEBIT,
    AccountKind.RELIEF_PAID: Side.DEBIT,
    AccountKind.RECOVERY_RECEIVABLE: Side.DEBIT,
    AccountKind.RECOVERED: Side.CREDIT,
}

# Which scopes each kind may have: county money lives at county scope, a reserve in a town.
_COUNTY_ONLY = {AccountKind.COUNTY_FUND, AccountKind.CHARITY_FUND, AccountKind.COUNTY_HELD}
_TOWN_ONLY = {AccountKind.TOWN_RESERVE, AccountKind.TOWN_RESERVE_HELD}


class InvalidAccount(ValueError):
    pass


def _check_scope(kind: AccountKind, scope: str) -> None:
    is_county = scope == COUNTY_SCOPE
    is_town = bool(_TOWN_SCOPE.fullmatch(scope))
    if not (is_county or is_town):
        raise InvalidAccount(f"scope {scope[:20]!r} is neither a town code nor {COUNTY_SCOPE!r}")
    if kind in _COUNTY_ONLY and not is_county:
        raise InvalidAccount(f"{kind.value} is a county account: scope must be {COUNTY_SCOPE!r}")
    if kind in _TOWN_ONLY and not is_town:
        raise InvalidAccount(f"{kind.value} is a town account: scope must be a town code")


def account(kind: AccountKind | str, scope: str) -> str:
    """The account code "<kind>:<scope>", e.g. account("town_reserve", "370321001")."""
    try:
        k = AccountKind(kind)
    except ValueError as exc:
        raise InvalidAccount(f"unknown account kind {str(kind)[:40]!r}") from exc
    _check_scope(k, scope)
    return f"{k.value}:{scope}"


def parse_account(code: str) -> tuple[AccountKind, str]:
    """(kind, scope) of a valid account code, else InvalidAccount."""
    kind_text, sep, scope = code.partition(":")
    if not sep:
        raise InvalidAccount(f"account {code[:40]!r} is not '<kind>:<scope>'")
    try:
        kind = AccountKind(kind_text)
    except ValueError as exc:
        raise InvalidAccount(f"unknown account kind {kind_text[:40]!r}") from exc
    _check_scope(kind, scope)
    return kind, scope


def normal_side(code: str) -> Side:
    """The side on which an account's balance normally grows."""
    return NORMAL_SIDE[parse_account(code)[0]]


class PostingKind(StrEnum):
    """The postings the processor emits (docs/contracts.md examples)."""

    RESERVE_FUNDED = "reserve_funded"
    RESERVE_REPLENISHED = "reserve_replenished"
    ADVANCE_GRANTED = "advance_granted"
    ADVANCE_VOIDED = "advance_voided"
    PAYMENT_CONFIRMED = "payment_confirmed"
    ESCALATED_ADVANCE = "escalated_advance"
    ESCALATED_PAID = "escalated_paid"
    TOP_UP = "top_up"
    RELIEF_PAID_BY_COUNTY = "relief_paid_by_county"
    RECOVERY_CLAIMED = "recovery_claimed"
    RECOVERY_COLLECTED = "recovery_collected"
    TRANSITIONAL_INSTALMENT = "transitional_instalment"


class PostingLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    account: str = Field(max_length=MAX_ACCOUNT_CODE)
    side: Side
    amount_fen: Fen

    @model_validator(mode="after")
    def _valid_account(self) -> Self:
        parse_account(self.account)
        return self


class Posting(Record):
    """A balanced posting. posting_id = event_id, derived from the causing record."""

    type: Literal["Posting"] = "Posting"
    schema_version: Literal[1] = 1

    posting_id: uuid.UUID
    kind: str = Field(min_length=1, max_length=MAX_SHORT_TEXT, pattern=r"^[a-z][a-z0-9_]*$")
    memo: str = Field(default="", max_length=MAX_SHORT_TEXT)
    lines: tuple[PostingLine, ...] = Field(min_length=2, max_length=MAX_POSTING_LINES)

    @model_validator(mode="after")
    def _balanced(self) -> Self:
        if self.posting_id != self.event_id:
            raise ValueError("posting_id must equal event_id")
        debits = sum(line.amount_fen for line in self.lines if line.side is Side.DEBIT)
        credits = sum(line.amount_fen for line in self.lines if line.side is Side.CREDIT)
        if debits != credits:
            raise ValueError(f"unbalanced posting: debits {debits} fen != credits {credits} fen")
        return self

    @property
    def amount_fen(self) -> int:
        """The posting's size: the sum of its debits (= the sum of its credits)."""
        return sum(line.amount_fen for line in self.lines if line.side is Side.DEBIT)


def transfer(debit: str, credit: str, amount_fen: int) -> tuple[PostingLine, PostingLine]:
    """The two lines of a simple transfer: debit one account, credit another."""
    return (
        PostingLine(account=debit, side=Side.DEBIT, amount_fen=amount_fen),
        PostingLine(account=credit, side=Side.CREDIT, amount_fen=amount_fen),
    )
