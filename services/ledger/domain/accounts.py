"""Account codes and balance arithmetic (docs/contracts.md "Postings").

An account code is `"<kind>:<scope>"`, scope a town code or `county`. Each kind has a normal
side: the balance of a debit-normal account is debits - credits, of a credit-normal one
credits - debits. Money is integer fen (docs/design.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from enum import StrEnum


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class LedgerInvariantError(RuntimeError):
    """A rule of the book was broken by code, not by a record: a bug. Raise, never swallow
    (STYLE "two kinds of failure")."""


# kind -> normal side, exactly the table of docs/contracts.md
NORMAL_SIDE: Mapping[str, Side] = {
    "county_fund": Side.CREDIT,
    "charity_fund": Side.CREDIT,
    "town_reserve": Side.DEBIT,
    "town_reserve_held": Side.DEBIT,
    "county_held": Side.DEBIT,
    "relief_paid": Side.DEBIT,
    "recovery_receivable": Side.DEBIT,
    "recovered": Side.CREDIT,
}
KIND_NAMES: Mapping[str, str] = {
    "county_fund": "County relief fund",
    "charity_fund": "Charity fund (donations)",
    "town_reserve": "Town reserve, available",
    "town_reserve_held": "Town reserve, held for advances",
    "county_held": "County money held for escalated advances",
    "relief_paid": "Relief paid to households",
    "recovery_receivable": "Recoveries and fines receivable",
    "recovered": "Recoveries and fines collected",
}
# R4: the account that can never go below zero
RESERVE_KIND = "town_reserve"
COUNTY_SCOPE = "county"
MAX_ACCOUNT_CODE = 64
_SCOPE = re.compile(r"^(?:\d{6,12}|county)$")


class AccountError(ValueError):
    """An account code that is not `<known kind>:<town code or county>`."""


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    code: str
    kind: str
    town: str  # a town code, or "county"
    normal_side: Side

    @property
    def name(self) -> str:
        where = "county" if self.town == COUNTY_SCOPE else f"town {self.town}"
        return f"{KIND_NAMES[self.kind]} ({where})"

    @property
    def is_reserve(self) -> bool:
        return self.kind == RESERVE_KIND


def parse_account(code: str) -> Account:
    if len(code) > MAX_ACCOUNT_CODE:
        raise AccountError(f"account code longer than {MAX_ACCOUNT_CODE} characters")
    kind, sep, scope = code.partition(":")
    if not sep or kind not in NORMAL_SIDE:
        raise AccountError(f"unknown account kind in {code!r}")
    if not _SCOPE.fullmatch(scope):
        raise AccountError(f"account scope must be a town code or 'county': {code!r}")
    return Account(code=code, kind=kind, town=scope, normal_side=NORMAL_SIDE[kind])


def reserve_account(town: str) -> str:
    return f"{RESERVE_KIND}:{town}"


def signed_fen(side: str, amount_fen: int) -> int:
    """A line's effect on debits - credits."""
    return amount_fen if side == Side.DEBIT else -amount_fen


def normal_balance(kind: str, debit_fen: int, credit_fen: int) -> int:
    """The balance on the account's normal side (positive when the account holds money)."""
    if NORMAL_SIDE[kind] == Side.DEBIT:
        return debit_fen - credit_fen
    return credit_fen - debit_fen
