"""Journal entries, their canonical encoding and the hash chain.

An entry's hash is sha256(prev_hash || canonical JSON of the entry). The canonical form
holds only what the posting says (its id, kind, town, correlation, causation, event time,
memo and lines) and the entry's place in its chain: never the wall clock, the Kafka
timestamp or the offset, so a replay of the topic into an empty database gives the same
hashes (docs/design.md "a replay gives the same ledger, byte for byte").

Chains are per town (the Kafka key): a town's postings keep their order on one partition,
however partitions interleave on a replay. The published head is the hash of all chain
heads, sorted by town.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from services.ledger.domain.accounts import COUNTY_SCOPE, AccountError, Side, parse_account

# Version of the canonical encoding: part of every hash, so a future encoding can never
# produce a hash that collides with this one's.
ENCODING_VERSION = 1
GENESIS_HASH = bytes(32)
HASH_BYTES = 32
# Limits (STYLE "a limit on everything"), as in the SQL CHECKs.
MAX_LINES = 64
MAX_MEMO = 2_000
MAX_KIND = 64
MAX_AMOUNT_FEN = 10_000_000 * 100  # schemas.money.MAX_AMOUNT_FEN


class PostingError(ValueError):
    """A posting that cannot enter the book as it is (goes to relief.rejected.v1)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Line:
    account: str
    side: str  # "debit" | "credit"
    amount_fen: int


@dataclasses.dataclass(frozen=True, slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclasses.dataclass(frozen=True, slots=True)
class IncomingPosting:
    """A posting as read from ledger.postings.v1, in the ledger's own terms."""

    posting_id: uuid.UUID
    kind: str
    town: str
    correlation_id: str
    causation_id: uuid.UUID | None
    occurred_at: datetime
    recorded_at: datetime | None
    memo: str
    lines: tuple[Line, ...]
    source: SourcePosition
    raw: str  # the record's JSON, kept with an alert if the reserve guard refuses it


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry: what is hashed, plus its link to the previous entry."""

    posting_id: uuid.UUID
    chain: str
    chain_seq: int
    kind: str
    town: str
    correlation_id: str
    causation_id: uuid.UUID | None
    occurred_at: datetime
    memo: str
    lines: tuple[Line, ...]
    prev_hash: bytes
    hash: bytes
    # the writer's HMAC over `hash` under the chain key (domain/seals.py); None: not sealed
    seal: bytes | None = None


def _has_nul(text: str) -> bool:
    return "\x00" in text


def check_posting(posting: IncomingPosting) -> None:
    """The book's own rules for a posting, whatever the record model already checked
    (STYLE "every invariant twice"). Raises PostingError."""
    if posting.occurred_at.tzinfo is None:
        raise PostingError("occurred_at has no time zone")
    if not 1 <= len(posting.kind) <= MAX_KIND:
        raise PostingError(f"kind must be 1..{MAX_KIND} characters")
    if len(posting.memo) > MAX_MEMO:
        raise PostingError(f"memo longer than {MAX_MEMO} characters")
    # PostgreSQL text cannot hold NUL: such a record would fail its batch forever
    if any(_has_nul(s) for s in (posting.kind, posting.memo, posting.town, posting.correlation_id)):
        raise PostingError("NUL character in a text field")
    if not 2 <= len(posting.lines) <= MAX_LINES:
        raise PostingError(f"a posting has 2..{MAX_LINES} lines, got {len(posting.lines)}")
    debit_fen = credit_fen = 0
    for line in posting.lines:
        try:
            account = parse_account(line.account)
        except AccountError as exc:
            raise PostingError(str(exc)) from exc
        # Only the town's own partition orders its reserve: a posting keyed by another town
        # could be applied before or after this town's postings on a replay, and the reserve
        # guard could decide differently. Town-scoped accounts must be the posting's own.
        if account.town not in (COUNTY_SCOPE, posting.town):
            raise PostingError(
                f"account {line.account} belongs to another town than the posting's {posting.town}"
            )
        if isinstance(line.amount_fen, bool) or not isinstance(line.amount_fen, int):
            raise PostingError("amount_fen must be an integer number of fen")
        if not 0 < line.amount_fen <= MAX_AMOUNT_FEN:
            raise PostingError(f"amount_fen must be 1..{MAX_AMOUNT_FEN}, got {line.amount_fen}")
        if line.side == Side.DEBIT:
            debit_fen += line.amount_fen
        elif line.side == Side.CREDIT:
            credit_fen += line.amount_fen
        else:
            raise PostingError(f"side must be debit or credit, got {line.side!r}")
    if debit_fen != credit_fen:
        raise PostingError(f"not balanced: debits {debit_fen} fen, credits {credit_fen} fen")


def format_time(moment: datetime) -> str:
    """UTC with microseconds and a Z: one spelling per instant."""
    if moment.tzinfo is None:
        raise PostingError("naive datetime in an entry")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    *,
    posting_id: uuid.UUID,
    chain: str,
    chain_seq: int,
    kind: str,
    town: str,
    correlation_id: str,
    causation_id: uuid.UUID | None,
    occurred_at: datetime,
    memo: str,
    lines: tuple[Line, ...],
) -> bytes:
    doc = {
        "v": ENCODING_VERSION,
        "posting_id": str(posting_id),
        "chain": chain,
        "chain_seq": chain_seq,
        "kind": kind,
        "town": town,
        "correlation_id": correlation_id,
        "causation_id": None if causation_id is None else str(causation_id),
        "occurred_at": format_time(occurred_at),
        "memo": memo,
        "lines": [[line.account, line.side, line.amount_fen] for line in lines],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    if len(prev_hash) != HASH_BYTES:
        raise PostingError("a previous hash is 32 bytes")
    return hashlib.sha256(prev_hash + canonical).digest()


def entry_hash(entry: Entry) -> bytes:
    """The hash `entry` should carry, recomputed from its content and prev_hash."""
    return chain_hash(
        entry.prev_hash,
        canonical_bytes(
            posting_id=entry.posting_id,
            chain=entry.chain,
            chain_seq=entry.chain_seq,
            kind=entry.kind,
            town=entry.town,
            correlation_id=entry.correlation_id,
            causation_id=entry.causation_id,
            occurred_at=entry.occurred_at,
            memo=entry.memo,
            lines=entry.lines,
        ),
    )


def make_entry(posting: IncomingPosting, chain_seq: int, prev_hash: bytes) -> Entry:
    canonical = canonical_bytes(
        posting_id=posting.posting_id,
        chain=posting.town,
        chain_seq=chain_seq,
        kind=posting.kind,
        town=posting.town,
        correlation_id=posting.correlation_id,
        causation_id=posting.causation_id,
        occurred_at=posting.occurred_at,
        memo=posting.memo,
        lines=posting.lines,
    )
    return Entry(
        posting_id=posting.posting_id,
        chain=posting.town,
        chain_seq=chain_seq,
        kind=posting.kind,
        town=posting.town,
        correlation_id=posting.correlation_id,
        causation_id=posting.causation_id,
        occurred_at=posting.occurred_at,
        memo=posting.memo,
        lines=posting.lines,
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, canonical),
    )


def head_hash(chain_heads: Mapping[str, bytes]) -> bytes:
    """The one hash to publish: sha256 over the sorted (chain, head) pairs."""
    doc = [[chain, chain_heads[chain].hex()] for chain in sorted(chain_heads)]
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).digest()
