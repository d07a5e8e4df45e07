"""The postings the rules emit: balanced double entries with ids derived from their cause.

Accounts (schemas.postings): each town's reserve and the part of it held for advances,
the county fund and the part held for escalated advances, relief paid, recoveries. Every
money movement the rules decide is one of these postings; the ledger stores them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.decisions import FundedBy
from schemas.envelope import Record, derived_id
from schemas.postings import COUNTY_SCOPE, AccountKind, Posting, PostingKind, account, transfer
from services.emergency.domain.book import Book
from services.emergency.domain.common import PROCESSOR, at_of, envelope
from services.emergency.domain.state import TownState


def reserve_account(town: str) -> str:
    return account(AccountKind.TOWN_RESERVE, town)


def held_account(town: str) -> str:
    return account(AccountKind.TOWN_RESERVE_HELD, town)


def paid_account(town: str) -> str:
    return account(AccountKind.RELIEF_PAID, town)


def county_account(kind: AccountKind) -> str:
    return account(kind, COUNTY_SCOPE)


def posting(
    cause: Record,
    kind: PostingKind,
    lines: Sequence[Any],
    memo: str,
    *,
    part: str = "",
    **overrides: Any,
) -> Posting:
    env = envelope(cause, f"posting:{kind.value}", part, **overrides)
    return Posting(
        **env, posting_id=env["event_id"], kind=kind.value, memo=memo, lines=tuple(lines)
    )


def opening_posting(state: TownState, cause: Record) -> Posting:
    """R4: the first record of a town opens its reserve at its configured size. The id
    depends only on the town, so every replay opens it once."""
    opening_id = derived_id(f"town-opening:{state.town}", "reserve_funded")
    return Posting(
        event_id=opening_id,
        posting_id=opening_id,
        occurred_at=at_of(cause),
        town=state.town,
        actor=PROCESSOR,
        correlation_id=f"reserve:{state.town}",
        causation_id=cause.event_id,
        kind=PostingKind.RESERVE_FUNDED.value,
        memo="R4: town relief reserve opened at its configured size",
        lines=transfer(
            reserve_account(state.town),
            county_account(AccountKind.COUNTY_FUND),
            state.reserve.size_fen,
        ),
    )


def hold(book: Book, cause: Record, amount: int, funded_by: FundedBy, memo: str) -> Posting:
    """Hold money for a granted or approved case until the town confirms payment: on the
    town's reserve (R4) or on the county fund."""
    state, town = book.s, book.town
    if funded_by is FundedBy.TOWN_RESERVE:
        book.update(reserve=state.reserve.hold(amount))
        lines = transfer(held_account(town), reserve_account(town), amount)
        return posting(cause, PostingKind.ADVANCE_GRANTED, lines, memo)
    book.update(county_held_fen=state.county_held_fen + amount)
    lines = transfer(
        county_account(AccountKind.COUNTY_HELD), county_account(AccountKind.COUNTY_FUND), amount
    )
    return posting(cause, PostingKind.ESCALATED_ADVANCE, lines, memo)
