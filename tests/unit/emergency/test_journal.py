"""A batch stored in part is found whole or not at all by the next owner of the partition.

The worker stores a town's batch as a sequence of key writes (journal, values, the town's
figures, its position). A crash can cut that sequence anywhere, and the changelog then
holds any prefix of it. Here every prefix is tried: the next owner reads the journal and
must see exactly the state before the batch or exactly the state after it.
"""

from __future__ import annotations

from typing import Any

from services.emergency.adapters.faust_app import Engine
from services.emergency.domain.book import Book
from services.emergency.domain.decide import decide
from services.emergency.domain.state import IncidentMark
from tests.unit.emergency.builders import QIFENG, RULES, T0, hours, incident, paid, tick, urgent


class Recorder(dict[str, Any]):
    """A table that remembers the order of its writes (None: a delete)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writes: list[tuple[str, Any]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None))
        super().__delitem__(key)


def _business(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if not k.startswith("j/")}


def _batch(engine: Engine, table: dict[str, Any], records: list[Any], position: int) -> None:
    book = Book(QIFENG, table.get)
    for record in records:
        decide(book, record, RULES)
    engine.store(book, position)


def test_every_cut_of_a_stored_batch_reads_back_as_before_or_after() -> None:
    base = Recorder()
    engine = Engine(RULES, None, base, 3)  # type: ignore[arg-type]
    _batch(engine, base, [incident("flood-0720"), urgent("c-1", 80_000)], position=1)
    before = dict(base)

    after = Recorder(before)
    engine = Engine(RULES, None, after, 3)  # type: ignore[arg-type]
    second = [
        urgent("c-2", 50_000, household=2, at=T0 + hours(1)),
        paid("c-1", 80_000, at=T0 + hours(2)),
        tick(T0 + hours(30)),  # breaches c-2's 24 hours, drops passed wheel minutes
    ]
    _batch(engine, after, second, position=4)
    writes = after.writes
    assert len(writes) > 10

    for cut in range(len(writes) + 1):
        table = dict(before)
        for key, value in writes[:cut]:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        Engine(RULES, None, table, 3).check_journal(QIFENG)  # type: ignore[arg-type]
        got = _business(table)
        if table.get(f"p/{QIFENG}") == 4:
            assert got == _business(dict(after)), f"cut at {cut}: not the stored batch"
        else:
            assert got == _business(before), f"cut at {cut}: not the state before the batch"


def test_a_stored_batch_is_written_again_whole_on_the_first_touch() -> None:
    """The local store may hold a batch the changelog lacks: the first touch of a town
    in a new process writes the whole batch again (and its position last)."""
    table = Recorder()
    engine = Engine(RULES, None, table, 3)  # type: ignore[arg-type]
    _batch(engine, table, [incident("flood-0720"), urgent("c-1", 80_000)], position=1)
    stored = dict(table)
    table.writes.clear()
    Engine(RULES, None, table, 3).check_journal(QIFENG)  # type: ignore[arg-type]
    written = dict(table.writes)
    assert table.writes[-1] == (f"p/{QIFENG}", 1)
    assert {k: stored[k] for k in written} == written
    assert set(written) >= {f"t/{QIFENG}", f"c/{QIFENG}/c-1", f"j/{QIFENG}"}
    assert dict(table) == stored


def test_a_record_taken_back_leaves_the_book_as_it_was() -> None:
    """All or nothing per record (a refused request, a request half-claimed): what a
    record wrote is taken back whole - a key it made is gone again, a key it changed has
    its value back - and nothing it wrote is left to store."""
    store: dict[str, Any] = {"i/370321101/flood-0720": {"status": "open"}}
    book = Book(QIFENG, store.get)
    book.put_incident("fire-0721", IncidentMark(status="open"))  # written before the record
    book.begin()
    book.put_incident("flood-0720", IncidentMark(status="closed", closed_at=T0))
    book.put_incident("storm-0722", IncidentMark(status="open"))
    book.put_incident("fire-0721", IncidentMark(status="closed", closed_at=T0))
    book.rollback()
    assert book.incident("flood-0720") == IncidentMark(status="open")
    assert book.incident("storm-0722") is None
    assert book.incident("fire-0721") == IncidentMark(status="open")
    assert [k for k, _ in book.changes()] == ["i/370321101/fire-0721"]
