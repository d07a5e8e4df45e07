"""A migrated ledger database on the real PostgreSQL, filled with postings that the real
rules (`services.emergency.domain.decide.handle`) emitted for a story in Qifeng."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from deploy.local import stack as local_stack
from schemas.postings import Posting
from schemas.registry import encode
from services.ledger.adapters.kafka import parse_record
from services.ledger.adapters.postgres import LedgerStore
from tests.integration.ledger.conftest import LedgerDb, ledger_database
from tests.unit.emergency.builders import Town, incident, paid, urgent

TOPIC = "test.metrics.postings"
_offsets = itertools.count()


class Story:
    """Qifeng's flood as it reaches the ledger: records through the rules, the postings
    they produce stored by the ledger's own writer."""

    def __init__(self, db: LedgerDb, now: datetime) -> None:
        self.db = db
        self.now = now
        self.town = Town()
        self.households = itertools.count(1)
        self.store = LedgerStore(db.pool)

    async def apply(self, *records: object) -> list[Posting]:
        before = len(self.town.outputs)
        for record in records:
            self.town(record)  # type: ignore[arg-type]
        postings = [o.record for o in self.town.outputs[before:] if isinstance(o.record, Posting)]
        await self.store_postings(postings)
        return postings

    async def store_postings(self, postings: Sequence[Posting]) -> None:
        incoming = []
        last = 0
        for p in postings:
            last = next(_offsets)
            incoming.append(parse_record(TOPIC, 0, last, None, encode(p)))
        await self.store.store_batch(incoming, {(TOPIC, 0): last + 1} if incoming else {})

    def advance(self, case: str, amount_fen: int, hours_ago: float) -> object:
        return urgent(
            case,
            amount_fen,
            household=next(self.households),
            at=self.now - timedelta(hours=hours_ago),
        )

    def payment(self, case: str, amount_fen: int, hours_ago: float) -> object:
        return paid(case, amount_fen, at=self.now - timedelta(hours=hours_ago))

    async def opening(self) -> None:
        await self.apply(incident("flood-0720", at=self.now - timedelta(hours=30)))


@pytest.fixture
async def ledger(stack: local_stack.StackInfo) -> AsyncIterator[LedgerDb]:
    async with ledger_database(stack) as db:
        yield db


@pytest.fixture
async def story(ledger: LedgerDb) -> Story:
    s = Story(ledger, datetime.now(UTC).replace(microsecond=0))
    await s.opening()
    return s
