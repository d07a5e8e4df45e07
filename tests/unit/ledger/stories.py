"""Postings that tell a story: a flood in Suozhen and Qifeng, reserves funded, families'
advances granted and paid, one voided, a grant the reserve cannot cover. Shared by the
unit and the integration tests."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from schemas.envelope import Actor, Role, derived_id
from schemas.postings import Posting, transfer
from services.ledger.domain.entries import IncomingPosting, Line, SourcePosition

SUOZHEN = "370321001"
QIFENG = "370321101"
TANGSHAN = "370321106"
RESERVE_FEN = 5_000_000  # R4: 50,000 yuan
FLOOD_AT = datetime(2024, 7, 1, 0, 30, tzinfo=UTC)  # 08:30 CST
PROCESSOR = Actor(role=Role.SYSTEM, org="relief-emergency")


def posting(
    town: str,
    kind: str,
    debit: str,
    credit: str,
    amount_fen: int,
    *,
    n: int,
    memo: str = "",
    story: str = "flood-2024",
) -> Posting:
    pid = derived_id(f"{story}:{town}:{n}", kind)
    return Posting(
        event_id=pid,
        posting_id=pid,
        occurred_at=FLOOD_AT + timedelta(minutes=n),
        town=town,
        actor=PROCESSOR,
        correlation_id=f"case-{town}-{n}",
        causation_id=derived_id(f"{story}:{town}:{n}", "cause"),
        kind=kind,
        memo=memo or f"{kind} #{n}",
        lines=transfer(debit, credit, amount_fen),
    )


def funded(town: str, n: int = 0, amount_fen: int = RESERVE_FEN) -> Posting:
    return posting(
        town, "reserve_funded", f"town_reserve:{town}", "county_fund:county", amount_fen, n=n
    )


def granted(town: str, n: int, amount_fen: int) -> Posting:
    return posting(
        town,
        "advance_granted",
        f"town_reserve_held:{town}",
        f"town_reserve:{town}",
        amount_fen,
        n=n,
        memo=f"紧急救助 advance, case {n}",
    )


def paid(town: str, n: int, amount_fen: int) -> Posting:
    return posting(
        town,
        "payment_confirmed",
        f"relief_paid:{town}",
        f"town_reserve_held:{town}",
        amount_fen,
        n=n,
    )


def voided(town: str, n: int, amount_fen: int) -> Posting:
    return posting(
        town,
        "advance_voided",
        f"town_reserve:{town}",
        f"town_reserve_held:{town}",
        amount_fen,
        n=n,
    )


def flood(
    postings_per_town: int,
    towns: tuple[str, ...] = (SUOZHEN, QIFENG, TANGSHAN),
    seed: int = 7,
    max_grant_fen: int = 100_000,
) -> list[Posting]:
    """Each town's reserve funded, then advances granted and paid, some voided; each town
    ends with one grant bigger than what is left (the reserve guard must refuse it).
    Per-town order is the story's order; towns are interleaved."""
    rng = random.Random(seed)
    per_town: dict[str, list[Posting]] = {}
    for town in towns:
        items = [funded(town)]
        left = RESERVE_FEN
        n = 1
        while len(items) < postings_per_town - 1:
            amount = rng.randint(1, max_grant_fen)  # up to 1,000 yuan by default (P3)
            if amount > left:
                break
            left -= amount
            items.append(granted(town, n, amount))
            if rng.random() < 0.1:
                items.append(voided(town, n + 1, amount))
                left += amount
            else:
                items.append(paid(town, n + 1, amount))
            n += 2
        items.append(granted(town, n, left + 1))  # one fen too many: refused
        per_town[town] = items
    out: list[Posting] = []
    while any(per_town.values()):
        for town in towns:
            if per_town[town]:
                out.append(per_town[town].pop(0))
    return out


def incoming(
    p: Posting, offset: int = 0, topic: str = "ledger.postings.v1", partition: int = 0
) -> IncomingPosting:
    return IncomingPosting(
        posting_id=p.posting_id,
        kind=p.kind,
        town=p.town,
        correlation_id=p.correlation_id,
        causation_id=p.causation_id,
        occurred_at=p.occurred_at,
        recorded_at=None,
        memo=p.memo,
        lines=tuple(Line(x.account, str(x.side), x.amount_fen) for x in p.lines),
        source=SourcePosition(topic, partition, offset),
        raw=p.model_dump_json(),
    )


def raw_incoming(town: str, lines: list[tuple[str, str, int]], n: int = 0) -> IncomingPosting:
    """A posting that bypasses the record model (to test the book's own checks)."""
    return IncomingPosting(
        posting_id=uuid.uuid5(uuid.NAMESPACE_URL, f"raw:{town}:{n}:{lines}"),
        kind="test",
        town=town,
        correlation_id="c",
        causation_id=None,
        occurred_at=FLOOD_AT,
        recorded_at=None,
        memo="",
        lines=tuple(Line(*x) for x in lines),
        source=SourcePosition("t", 0, n),
        raw="{}",
    )
