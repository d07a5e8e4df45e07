"""A migrated ledger database on the real PostgreSQL, filled with postings that the real
rules (`services.emergency.domain.decide`) emitted for a story in Qifeng; and a casebook
(its own database, its HTTP reads a real server) holding their decisions, where the
dashboard reads its open cases."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from deploy.local import stack as local_stack
from schemas.decisions import Decision
from schemas.postings import Posting
from schemas.registry import encode
from services.casebook.adapters import postgres as casebook_postgres
from services.casebook.adapters.http import create_app as casebook_app
from services.casebook.settings import CasebookSettings
from services.ledger.adapters.kafka import parse_record
from services.ledger.adapters.postgres import LedgerStore
from tests.integration.casebook.conftest import casebook_database
from tests.integration.ledger.conftest import SEALER, LedgerDb, ledger_database
from tests.integration.servers import serving
from tests.unit.emergency.builders import Town, incident, paid, tick, urgent

TOPIC = "test.metrics.postings"
CASEBOOK_TOKEN = "dashboard-reads-casebook-token"
_offsets = itertools.count()


@dataclasses.dataclass(frozen=True)
class Casebook:
    url: str  # its HTTP reads, with CASEBOOK_TOKEN
    store: casebook_postgres.CasebookStore


@contextlib.asynccontextmanager
async def casebook_side(stack: local_stack.StackInfo) -> AsyncIterator[Casebook]:
    async with casebook_database(stack) as db:
        settings = CasebookSettings(
            database_url=db.app_url,
            casebook_token_hashes=hashlib.sha256(CASEBOOK_TOKEN.encode()).hexdigest(),
        )
        pool = await casebook_postgres.connect_pool(db.app_url, 2)
        try:
            with serving(casebook_app(settings)) as url:
                yield Casebook(url, casebook_postgres.CasebookStore(pool, settings.seal_sealer()))
        finally:
            await pool.close()


class Story:
    """Qifeng's flood as it reaches the ledger: records through the rules, the postings
    they produce stored by the ledger's own writer."""

    def __init__(self, db: LedgerDb, now: datetime, casebook: Casebook) -> None:
        self.db = db
        self.now = now
        self.casebook = casebook
        self.town = Town()
        self.households = itertools.count(1)
        self.store = LedgerStore(db.pool, SEALER)

    async def apply(self, *records: object) -> list[Posting]:
        before = len(self.town.outputs)
        for record in records:
            self.town(record)  # type: ignore[arg-type]
        made = [o.record for o in self.town.outputs[before:]]
        # the casebook first: when the ledger moves, the dashboard finds the case there
        await self.store_decisions([r for r in made if isinstance(r, Decision)])
        postings = [r for r in made if isinstance(r, Posting)]
        await self.store_postings(postings)
        return postings

    async def store_decisions(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            await self.casebook.store.store(
                casebook_postgres.Batch(
                    decisions=[
                        casebook_postgres.ReadDecision(d, 0, next(_offsets), encode(d).decode())
                        for d in decisions
                    ]
                )
            )

    def tick(self) -> object:
        """The clock's tick now: what fell due is decided (a breach, R5)."""
        return tick(self.now)

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
async def casebook(stack: local_stack.StackInfo) -> AsyncIterator[Casebook]:
    async with casebook_side(stack) as side:
        yield side


@pytest.fixture
async def story(ledger: LedgerDb, casebook: Casebook) -> Story:
    s = Story(ledger, datetime.now(UTC).replace(microsecond=0), casebook)
    await s.opening()
    return s
