"""One town's stored values as the rules see them while they decide: the `Book`.

The rules read and write a town's state through a book: the town's figures, each open
case under its own key, the marks that keep commands from applying twice (P6 grants,
applied event ids, finished cases) and the wheel that says what falls due when. A book
reads through a `Lookup` (the worker's table, or a dict in tests) and keeps what the
rules wrote until the caller takes it with `changes()`; it does no I/O of its own.

Keys, all of them in the town's partition (the worker writes them there):

    t/<town>                      TownState
    c/<town>/<case id>            Case (open)
    d/<town>/<case id>            CaseMark (finished)
    g/<town>/<household|cause>    GrantMark (P6)
    i/<town>/<incident id>        IncidentMark
    e/<town>/<event id>           AppliedMark
    w/<town>/<minute>             WheelHead: how many pages the minute has
    w/<town>/<minute>/<page>      up to WHEEL_PAGE references to what falls due then

The wheel is how time reaches thousands of cases without scanning them: whatever must be
looked at again at a moment (a deadline's warning or due time, an instalment, a mark's
expiry) puts a reference in that moment's minute, and a tick (docs/design.md "time is an event")
looks only at the minutes it has passed. Its cost follows what falls due, not what is open.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from services.emergency.domain.state import (
    APPLIED_RETENTION,
    CASE_MARK_RETENTION,
    MAX_CAUSE_KEY,
    AppliedMark,
    Case,
    CaseMark,
    GrantMark,
    IncidentMark,
    TownState,
)

WHEEL_PAGE = 100  # references per stored page of a minute (a page stays < MAX_VALUE_BYTES)
MAX_REF = 2 + max(MAX_CAUSE_KEY, 36)  # the longest key a reference names, and its kind
MAX_WHEEL_PAGES = 100_000  # 20 million things due in one minute of one town: a bug
# How many minutes one tick may walk (a clock away for weeks catches up over a few ticks).
MAX_WHEEL_WALK_MINUTES = 60 * 24 * 31

Lookup = Callable[[str], Any]
"""Reads a stored value by key: its JSON text as bytes (the worker's store) or the
JSON-compatible value (a dict in tests); None when there is none."""

M = TypeVar("M", bound=BaseModel)


class WheelHead(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pages: int = Field(ge=1, le=MAX_WHEEL_PAGES)


Ref = Annotated[str, Field(max_length=MAX_REF)]  # "<kind>:<key>", e.g. "c:<case id>"


class Page(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    refs: tuple[Ref, ...] = Field(max_length=WHEEL_PAGE)


def minute_of(at: datetime) -> int:
    """The wheel's minute of a moment: whole minutes since 1970-01-01 UTC (stored in keys)."""
    return int(at.timestamp() // 60)


_MISSING = object()


class Book:
    """A town's values, read through `lookup`, written in memory until `changes()`."""

    def __init__(self, town: str, lookup: Lookup) -> None:
        self.town = town
        self._town_key = f"t/{town}"
        self._lookup = lookup
        self._values: dict[str, BaseModel | None] = {}  # decoded: read or written
        self._before: dict[str, Any] = {}  # as stored before this book: what was read
        self._written: dict[str, None] = {}  # written keys, in order
        self._undo: list[tuple[str, object, bool]] | None = None

    # ------------------------------------------------------------- the raw layer

    def _get(self, key: str, model: type[M]) -> M | None:
        if key in self._values:
            value = self._values[key]
        else:
            raw = self._lookup(key)
            self._before.setdefault(key, raw)
            if raw is None:
                value = None
            elif isinstance(raw, bytes):
                value = model.model_validate_json(raw)
            else:
                value = model.model_validate(raw)
            self._values[key] = value
        if value is not None and not isinstance(value, model):
            raise TypeError(f"{key} holds a {type(value).__name__}, not a {model.__name__}")
        return value

    def _set(self, key: str, value: BaseModel | None) -> None:
        if key not in self._before:
            self._before[key] = self._lookup(key)
        if self._undo is not None:
            self._undo.append((key, self._values.get(key, _MISSING), key in self._written))
        self._values[key] = value
        self._written[key] = None

    # ------------------------------------------------------------- all or nothing per record

    def begin(self) -> None:
        """Start a record: what it writes can be taken back whole with `rollback()`."""
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        for key, before, was_written in reversed(self._undo or []):
            if before is _MISSING:
                self._values.pop(key, None)
            else:
                self._values[key] = before  # type: ignore[assignment]
            if not was_written:
                self._written.pop(key, None)
        self._undo = None

    def changes(self, *, raw: bool = False) -> list[tuple[str, Any]]:
        """What to store, JSON-compatible (None: delete), the town's figures last; with
        `raw`, each value as its JSON text in bytes instead (what the worker stores).

        The town's value goes last on purpose: its changelog record follows every other
        record of the same batch in the same partition, so whoever finds it there finds
        all of them (the worker relies on this after a crash)."""
        keys = [k for k in self._written if k != self._town_key]
        if self._town_key in self._written:
            keys.append(self._town_key)
        out: list[tuple[str, Any]] = []
        for key in keys:
            value = self._values[key]
            if value is None:
                out.append((key, None))
            elif raw:
                out.append((key, value.__pydantic_serializer__.to_json(value)))
            else:
                out.append((key, value.model_dump(mode="json")))
        return out

    def before_images(self) -> list[tuple[str, Any]]:
        """Every written key with its value as stored before this book (None: absent), as
        the lookup gave it, for a caller that must be able to take a half-stored batch
        back."""
        return [(key, self._before[key]) for key in self._written]

    # ------------------------------------------------------------- the town

    @property
    def state(self) -> TownState | None:
        return self._get(self._town_key, TownState)

    @property
    def s(self) -> TownState:
        state = self.state
        if state is None:
            raise LookupError(f"town {self.town} has no state yet")
        return state

    def put_state(self, state: TownState) -> None:
        self._set(self._town_key, state)

    def update(self, **changes: Any) -> TownState:
        state = self.s.model_copy(update=changes)
        self.put_state(state)
        return state

    # ------------------------------------------------------------- cases

    def case(self, case_id: str) -> Case | None:
        return self._get(f"c/{self.town}/{case_id}", Case)

    def put_case(self, case: Case) -> Case:
        """Store an open case; the town's counters follow its change exactly."""
        old = self.case(case.case_id)
        self._recount(old, case)
        self._set(f"c/{self.town}/{case.case_id}", case)
        return case

    def finish_case(self, case: Case, at: datetime) -> None:
        """The case leaves the hot state; a mark stays for CASE_MARK_RETENTION."""
        self._recount(self.case(case.case_id), None)
        self._set(f"c/{self.town}/{case.case_id}", None)
        mark = CaseMark(
            request_id=case.request_id,
            status=case.status,
            finished_at=at,
            cause_key=case.cause_key,
            persons=case.persons,
        )
        self.mark_finished(case.case_id, mark)

    def mark_finished(self, case_id: str, mark: CaseMark) -> None:
        """A case that ended (or never opened: a refused request) keeps its id for
        CASE_MARK_RETENTION; the same request again then changes nothing."""
        self._set(f"d/{self.town}/{case_id}", mark)
        self.schedule(mark.finished_at + CASE_MARK_RETENTION, f"d:{case_id}")

    def finished_case(self, case_id: str) -> CaseMark | None:
        return self._get(f"d/{self.town}/{case_id}", CaseMark)

    def forget_finished_case(self, case_id: str) -> None:
        self._set(f"d/{self.town}/{case_id}", None)

    def _recount(self, old: Case | None, new: Case | None) -> None:
        """The town's counters follow a case from `old` to `new` (None: absent)."""
        before = old.tally() if old is not None else None
        after = new.tally() if new is not None else None
        if before == after:
            return
        state = self.s
        counts = state.counts
        if before is not None:
            counts = counts.plus(before, -1)
        if after is not None:
            counts = counts.plus(after)
        self.put_state(state.model_copy(update={"counts": counts}))

    # ------------------------------------------------------------- marks

    def grant(self, cause_key: str) -> GrantMark | None:
        return self._get(f"g/{self.town}/{cause_key}", GrantMark)

    def put_grant(self, cause_key: str, mark: GrantMark) -> None:
        """P6. It leaves with its case's finished mark (CASE_MARK_RETENTION is longer than
        the P6 window), or is overwritten by a later grant for the same cause."""
        self._set(f"g/{self.town}/{cause_key}", mark)

    def drop_grant(self, cause_key: str) -> None:
        self._set(f"g/{self.town}/{cause_key}", None)

    def incident(self, incident_id: str) -> IncidentMark | None:
        return self._get(f"i/{self.town}/{incident_id}", IncidentMark)

    def put_incident(self, incident_id: str, mark: IncidentMark) -> None:
        self._set(f"i/{self.town}/{incident_id}", mark)

    def drop_incident(self, incident_id: str) -> None:
        self._set(f"i/{self.town}/{incident_id}", None)

    def applied(self, event_id: str) -> AppliedMark | None:
        return self._get(f"e/{self.town}/{event_id}", AppliedMark)

    def mark_applied(self, event_id: str, at: datetime) -> None:
        self._set(f"e/{self.town}/{event_id}", AppliedMark(applied_at=at))
        self.schedule(at + APPLIED_RETENTION, f"e:{event_id}")

    def drop_applied(self, event_id: str) -> None:
        self._set(f"e/{self.town}/{event_id}", None)

    # ------------------------------------------------------------- the wheel

    def schedule(self, at: datetime, ref: str) -> None:
        """Look at `ref` again when a tick reaches `at` (to the minute). A moment the
        wheel has already passed goes into the minute the next tick looks at."""
        minute = minute_of(at)
        state = self.state
        if state is not None and state.wheel_minute is not None:
            minute = max(minute, state.wheel_minute)
        head_key = f"w/{self.town}/{minute}"
        stored_head = self._get(head_key, WheelHead)
        head = stored_head or WheelHead.model_construct(pages=1)
        last = head.pages - 1
        page = self._get(f"{head_key}/{last}", Page) or Page.model_construct(refs=())
        if ref in page.refs:
            return
        if len(page.refs) >= WHEEL_PAGE:
            last += 1
            page = Page.model_construct(refs=())
            head = WheelHead.model_construct(pages=last + 1)
        if len(ref) > MAX_REF or head.pages > MAX_WHEEL_PAGES:
            raise ValueError(f"wheel reference {ref[:80]!r} or page {head.pages} out of bounds")
        if head is not stored_head:
            self._set(head_key, head)
        # (validated by hand above: a page is rebuilt on every append, on the hot path)
        self._set(f"{head_key}/{last}", Page.model_construct(refs=(*page.refs, ref)))

    def due_at_minute(self, minute: int) -> list[str]:
        head_key = f"w/{self.town}/{minute}"
        head = self._get(head_key, WheelHead)
        if head is None:
            return []
        refs: list[str] = []
        for n in range(head.pages):
            page = self._get(f"{head_key}/{n}", Page)
            if page is not None:
                refs.extend(page.refs)
        return list(dict.fromkeys(refs))

    def drop_minute(self, minute: int) -> None:
        head_key = f"w/{self.town}/{minute}"
        head = self._get(head_key, WheelHead)
        if head is None:
            return
        for n in range(head.pages):
            self._set(f"{head_key}/{n}", None)
        self._set(head_key, None)
