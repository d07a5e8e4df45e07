"""Reads through intake's ledger read side, fed by the real rules' postings."""

from __future__ import annotations

from datetime import timedelta

from schemas.postings import Posting
from services.emergency.domain.decide import Output
from services.intake.adapters.reads import LedgerReadSource
from services.ledger.adapters import postgres as ledger
from tests.unit.emergency.builders import QIFENG, T0, Town, hours, incident, paid, urgent
from tests.unit.ledger.stories import incoming


async def _store(url: str, outputs: list[Output], first_offset: int) -> None:
    postings = [o.record for o in outputs if isinstance(o.record, Posting)]
    pool = await ledger.connect_pool(url, 1)
    try:
        store = ledger.LedgerStore(pool, ledger.RetryPolicy(3, 0.1, 1.0))
        batch = [incoming(p, offset=first_offset + n) for n, p in enumerate(postings)]
        await store.store_batch(batch, {("ledger.postings.v1", 0): first_offset + len(batch)})
    finally:
        await pool.close()


async def test_open_deadlines_are_the_towns_unpaid_advances(ledger_url: str) -> None:
    town = Town()
    town(incident("flood-0720"))
    town(urgent("case-1", 80_000, at=T0, household=1))
    town(urgent("case-2", 50_000, at=T0 + hours(1), household=2))
    await _store(ledger_url, town.outputs, 0)
    reads = LedgerReadSource(ledger_url, 1, relief_deadline=timedelta(hours=24))
    try:
        open_now = await reads.deadlines(QIFENG)
        assert [(d.case_id, d.kind) for d in open_now] == [
            ("case-1", "relief_24h"),
            ("case-2", "relief_24h"),
        ]
        assert open_now[0].due_at == T0 + hours(24)  # R5: 24 h from the advance

        n = len(town.outputs)
        town(paid("case-1", 80_000, at=T0 + hours(2)))
        await _store(ledger_url, town.outputs[n:], 100)
        assert [d.case_id for d in await reads.deadlines(QIFENG)] == ["case-2"]
        assert await reads.deadlines("370321102") == []  # another town sees none of these
    finally:
        await reads.close()
