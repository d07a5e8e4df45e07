"""What one batch of postings does to the book: pure, given what the book holds now.

The adapter reads, under the chain locks, the ids already stored, each chain's head and the
balances of the reserves the batch touches; `plan_batch` then decides, posting by posting
in log order, which become entries (with their hashes) and which the reserve guard refuses
(R4: a town reserve never goes below zero — refused individually, recorded as an alert).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence

from services.ledger.domain.accounts import (
    Account,
    LedgerInvariantError,
    parse_account,
    signed_fen,
)
from services.ledger.domain.entries import (
    GENESIS_HASH,
    Entry,
    IncomingPosting,
    PostingError,
    check_posting,
    make_entry,
)

RESERVE_REFUSAL_REASON = "town reserve would go below zero (R4: reserves never below zero)"


@dataclasses.dataclass(frozen=True, slots=True)
class ChainHead:
    chain_seq: int
    hash: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class ReserveAlert:
    """A posting the reserve guard refused, with the figures it used."""

    posting: IncomingPosting
    account: str
    balance_fen: int  # debits - credits of the reserve before the posting
    change_fen: int  # what the posting would have added (negative)
    reason: str = RESERVE_REFUSAL_REASON


@dataclasses.dataclass(frozen=True, slots=True)
class BatchPlan:
    entries: tuple[tuple[Entry, IncomingPosting], ...]
    alerts: tuple[ReserveAlert, ...]
    accounts: tuple[Account, ...]  # every account the entries use, to insert if new
    duplicates: int  # postings already in the book (or twice in the batch): no-ops


def reserve_accounts_touched(postings: Iterable[IncomingPosting]) -> list[str]:
    seen: set[str] = set()
    for posting in postings:
        for line in posting.lines:
            if line.account.startswith("town_reserve:"):
                seen.add(line.account)
    return sorted(seen)


def chains_of(postings: Iterable[IncomingPosting]) -> list[str]:
    return sorted({p.town for p in postings})


def plan_batch(
    postings: Sequence[IncomingPosting],
    heads: Mapping[str, ChainHead],
    reserve_balances_fen: Mapping[str, int],
    known_ids: Iterable[uuid.UUID],
) -> BatchPlan:
    """Decide a batch, in the order given (the log's order within each partition).

    `reserve_balances_fen`: debits - credits of each town reserve the batch touches
    (missing = 0). `known_ids`: posting ids already stored as entries or alerts.
    """
    seen = set(known_ids)
    tips = dict(heads)
    balances = dict(reserve_balances_fen)
    entries: list[tuple[Entry, IncomingPosting]] = []
    alerts: list[ReserveAlert] = []
    accounts: dict[str, Account] = {}
    duplicates = 0
    for posting in postings:
        if posting.posting_id in seen:
            duplicates += 1  # docs/design.md "effectively once": a posting id seen again is a no-op
            continue
        seen.add(posting.posting_id)
        try:
            check_posting(posting)
        except PostingError as exc:
            # the adapter checks every record before it reaches a batch
            raise LedgerInvariantError(f"posting {posting.posting_id}: {exc}") from exc
        changes: dict[str, int] = {}
        for line in posting.lines:
            if line.account.startswith("town_reserve:"):
                changes[line.account] = changes.get(line.account, 0) + signed_fen(
                    line.side, line.amount_fen
                )
        refused = next(
            (
                (account, change)
                for account, change in sorted(changes.items())
                if balances.get(account, 0) + change < 0
            ),
            None,
        )
        if refused is not None:
            account, change = refused
            alerts.append(
                ReserveAlert(
                    posting=posting,
                    account=account,
                    balance_fen=balances.get(account, 0),
                    change_fen=change,
                )
            )
            continue
        for account, change in changes.items():
            balances[account] = balances.get(account, 0) + change
        tip = tips.get(posting.town, ChainHead(chain_seq=0, hash=GENESIS_HASH))
        entry = make_entry(posting, tip.chain_seq + 1, tip.hash)
        tips[posting.town] = ChainHead(chain_seq=entry.chain_seq, hash=entry.hash)
        entries.append((entry, posting))
        for line in posting.lines:
            if line.account not in accounts:
                accounts[line.account] = parse_account(line.account)
    return BatchPlan(
        entries=tuple(entries),
        alerts=tuple(alerts),
        accounts=tuple(accounts[code] for code in sorted(accounts)),
        duplicates=duplicates,
    )
