"""P6: same household, same cause -> no second grant (国发〔2014〕47号), read with R1.

What is one cause: the kind of relief (its category) and the incident. R1 links three
layers of relief to one accident or disaster - emergency relief, then transitional
living relief, then temporary hardship relief - so the same flood asked for in another
layer is not a duplicate; the same layer for the same flood is. A request that leaves
out the incident id cannot slip past: it collides with any grant of its layer to the
household within the window, and a grant made without an incident blocks every request
of its layer.

Who is one household: the people on the request - the head's keyed hash
(`household_ref`) and every member's (`member_refs`, made at intake from the members'
resident ID numbers: docs/design.md "personal data stays out of the log"). A grant is
marked for each of them (section 六: one record per person), so another member of the same
household asking as its head is found through the members they share.

A grant is marked when its case opens - a request awaiting approval or deliberation
already blocks a second one - and released when the case is refused, rejected or
cancelled. (Known gap: a person's "any incident" mark names their latest grant of the
layer; releasing it while an older grant of that layer for another incident still runs
lets a request that names no incident through. Two disasters in one layer within a year
for one household, the later one cancelled, is the case.) The cost: two marks per person
per grant where there was one per household (about 15 % fewer decisions a second in the
core benchmark on a loaded 2-core machine). County civil affairs may grant a second time
for a good reason, recorded (decide.py: SecondGrantAllowed). The check covers one town's
partition; across towns the county's claims stage (claims.py) checks the same marks
with these functions before the request reaches a town (docs/design.md "one household,
many towns").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from schemas.intake import ReliefRequested
from services.emergency.domain.book import Book
from services.emergency.domain.state import (
    DUPLICATE_WINDOW,
    MAX_CASE_PERSONS,
    Case,
    CaseMark,
    GrantMark,
)

G = TypeVar("G", bound=GrantMark)

NO_INCIDENT = "-"
ANY_INCIDENT = "*"


def persons_of(household_ref: str, member_refs: Iterable[str]) -> tuple[str, ...]:
    """The household and its members, each once, in the order given."""
    people = tuple(dict.fromkeys((household_ref, *member_refs)))
    return people[:MAX_CASE_PERSONS]


def persons_of_request(record: ReliefRequested) -> tuple[str, ...]:
    return persons_of(record.household_ref, record.member_refs)


def cause_of(category: str, incident_id: str | None) -> str:
    """One cause: a layer of relief (category) for one incident, or for none."""
    return f"{category}|{incident_id or NO_INCIDENT}"


def marked_keys(persons: Iterable[str], cause_key: str) -> list[str]:
    """The marks a grant leaves: per person, its exact cause and 'any incident' of its
    layer."""
    category, _, _ = cause_key.partition("|")
    keys: list[str] = []
    for person in persons:
        keys.append(f"{person}|{cause_key}")
        keys.append(f"{person}|{category}|{ANY_INCIDENT}")
    return keys


def checked_keys(persons: Iterable[str], category: str, incident_id: str | None) -> list[str]:
    """The marks a request collides with: with an incident, a grant for that incident or
    a grant that named none; without one, any grant of its layer."""
    keys: list[str] = []
    for person in persons:
        if incident_id is None:
            keys.append(f"{person}|{category}|{ANY_INCIDENT}")
        else:
            keys.append(f"{person}|{category}|{incident_id}")
            keys.append(f"{person}|{category}|{NO_INCIDENT}")
    return keys


class Marks(Protocol[G]):
    """Where grant marks are kept, by key: a town's book, or the county's claims book
    (claims.py) - the same functions check and mark in both."""

    def grant(self, cause_key: str) -> G | None: ...

    def put_grant(self, cause_key: str, mark: G) -> None: ...

    def drop_grant(self, cause_key: str) -> None: ...


def previous_grant(
    book: Marks[G], persons: Iterable[str], category: str, incident_id: str | None, at: datetime
) -> G | None:
    """The grant (within the P6 window) a new request for this cause would repeat."""
    for key in checked_keys(persons, category, incident_id):
        mark = book.grant(key)
        if mark is not None and at - mark.granted_at < DUPLICATE_WINDOW:
            return mark
    return None


def put_marks(book: Marks[G], persons: Iterable[str], cause_key: str, grant: G) -> None:
    """P6: the persons have (or are about to have) relief for the cause; the latest grant
    overwrites an older one's mark."""
    for key in marked_keys(persons, cause_key):
        book.put_grant(key, grant)


def drop_marks(
    book: Marks[G], persons: Iterable[str], cause_key: str, owns: Callable[[G], bool]
) -> None:
    """Drop the marks of one grant (`owns` says which), where no later grant has
    overwritten them."""
    for key in marked_keys(persons, cause_key):
        grant = book.grant(key)
        if grant is not None and owns(grant):
            book.drop_grant(key)


def mark(book: Book, case: Case, at: datetime) -> None:
    """P6: the case's household and members have (or are about to have) relief for its
    cause."""
    put_marks(book, case.persons, case.cause_key, GrantMark(case_id=case.case_id, granted_at=at))


def release(book: Book, case: Case) -> None:
    """P6: a grant that did not happen (cancelled, rejected, refused) blocks nothing."""
    forget(book, case.case_id, case.persons, case.cause_key)


def forget(book: Book, case_id: str, persons: Iterable[str], cause_key: str | None) -> None:
    """Drop the marks a case left, where no later grant has overwritten them."""
    if cause_key is None:
        return
    drop_marks(book, persons, cause_key, lambda grant: grant.case_id == case_id)


def forget_finished(book: Book, case_id: str, finished: CaseMark) -> None:
    """Long past the P6 window: the marks leave with the finished case's mark."""
    forget(book, case_id, finished.persons, finished.cause_key)
