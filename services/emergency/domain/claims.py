"""P6 across towns: the county's claims stage, pure (docs/design.md "one household, many
towns").

Every request for relief passes here before it reaches its town. The claims topic has one
partition, keyed by the county, so requests are checked one after another: of two towns
asking for the same household and cause, the first is marked and the second is found a
duplicate - both can never win. The check and the marks are the town's own
(`duplicates.py`: the household and its members, a layer of relief and its incident, the
P6 window), kept here in the county's `ClaimsBook`:

    t/county                      ClaimsState: the stage's clock and expiry position
    g/county/<person|cause>       ClaimMark: one per person and cause granted (P6)
    x/county/<day>                WheelHead: how many pages of marks expire that day
    x/county/<day>/<page>         up to WHEEL_PAGE mark keys to look at that day

One stored value per person mark, never one for the county or a town (Kafka refuses a
changelog record over 1 MB); a mark leaves through the day wheel once the P6 window has
passed, so the state is sized by the grants of the last year. No resident ID number is
here: persons are the keyed hashes made at intake.

`check` gives the request's `Claim`: free (its persons are now marked for the cause, with
the town, case and request that hold them), or a duplicate naming the first grant. The
town's processor then refuses a duplicate with the first grant named, or decides as it
always did; when it ends a request without relief (refused, rejected, cancelled) it
writes a `ClaimReleased`, and `release` drops that request's marks - only those, matched by
the request's event id, so a later grant that overwrote a mark keeps it.

County civil affairs may grant a second time for a good reason (P6): such a request is
still a duplicate here (its first grant named); the town checks the reason and the role.
Its persons keep the first grant's marks, which go on blocking a third request.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from schemas.claims import ClaimReleased
from schemas.intake import Claim, ClaimVerdict, ReliefRequested
from schemas.topics import CLAIMS_KEY
from schemas.towns import County, UnknownTown
from services.emergency.domain import duplicates
from services.emergency.domain.book import Book, Lookup, Page, WheelHead
from services.emergency.domain.common import Refuse, at_of
from services.emergency.domain.state import DUPLICATE_WINDOW, GrantMark

COUNTY = CLAIMS_KEY  # the claims book's one "town": the county
WHEEL_PAGE = 100  # mark keys per stored page of a day (a day's pages: book.MAX_WHEEL_PAGES)
# Days one record may walk: an empty day costs one read, so a stage idle for two years
# catches up on its next record (and a longer silence over a few records).
MAX_EXPIRY_WALK_DAYS = 800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_of(at: datetime) -> int:
    return (at - _EPOCH).days


class ClaimMark(GrantMark):
    """P6, county-wide: this person has relief for this cause, granted in `town` on
    `case_id` by the request `request_id` (whose release alone drops the mark)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    town: str = Field(max_length=12)
    request_id: str = Field(max_length=36)


class ClaimsState(BaseModel):
    """The stage's figures: its clock (the latest claims-topic stamp) and the last day
    whose expiring marks have been looked at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clock: datetime
    expired_day: int  # every day up to this one has been walked
    marks: int = Field(default=0, ge=0)  # person marks held (a gauge, not a rule)


class ClaimsBook(Book):
    """The county's claim marks, read through `lookup`, written in memory until
    `changes()` (the town's `Book` layer: all or nothing per record, state last)."""

    def __init__(self, lookup: Lookup) -> None:
        super().__init__(COUNTY, lookup)

    @property
    def claims(self) -> ClaimsState | None:
        return self._get(self._town_key, ClaimsState)

    def put_claims(self, state: ClaimsState) -> None:
        self._set(self._town_key, state)

    def grant(self, cause_key: str) -> ClaimMark | None:
        return self._get(f"g/{COUNTY}/{cause_key}", ClaimMark)

    def put_grant(self, cause_key: str, mark: GrantMark) -> None:
        if not isinstance(mark, ClaimMark):
            raise TypeError("the claims book keeps ClaimMarks")
        self._count(+1 if self.grant(cause_key) is None else 0)
        self._set(f"g/{COUNTY}/{cause_key}", mark)

    def drop_grant(self, cause_key: str) -> None:
        self._count(-1 if self.grant(cause_key) is not None else 0)
        self._set(f"g/{COUNTY}/{cause_key}", None)

    def _count(self, delta: int) -> None:
        state = self.claims
        if delta and state is not None:
            self.put_claims(state.model_copy(update={"marks": state.marks + delta}))

    # ------------------------------------------------------------- the day wheel

    def expire_on(self, day: int, keys: list[str]) -> None:
        """Look at these mark keys again on `day`."""
        head_key = f"x/{COUNTY}/{day}"
        head = self._get(head_key, WheelHead) or WheelHead.model_construct(pages=1)
        last = head.pages - 1
        page = self._get(f"{head_key}/{last}", Page) or Page.model_construct(refs=())
        for key in keys:
            if len(page.refs) >= WHEEL_PAGE:
                self._set(f"{head_key}/{last}", page)
                last += 1
                page = Page.model_construct(refs=())
                head = WheelHead(pages=last + 1)  # validated: bounded (book.MAX_WHEEL_PAGES)
            page = Page.model_construct(refs=(*page.refs, key))
        self._set(head_key, head)
        self._set(f"{head_key}/{last}", page)

    def walk_day(self, day: int, now: datetime) -> None:
        """Drop the marks of `day` whose P6 window has passed, and the day itself."""
        head_key = f"x/{COUNTY}/{day}"
        head = self._get(head_key, WheelHead)
        if head is None:
            return
        for n in range(head.pages):
            page = self._get(f"{head_key}/{n}", Page)
            for key in page.refs if page is not None else ():
                mark = self.grant(key)
                # (a later grant overwrote it: it expires on its own day)
                if mark is not None and now - mark.granted_at >= DUPLICATE_WINDOW:
                    self.drop_grant(key)
            self._set(f"{head_key}/{n}", None)
        self._set(head_key, None)


def _advance(book: ClaimsBook, at: datetime) -> None:
    """The stage's clock moves to `at` (never back), and the marks whose window passed
    leave, a bounded number of days at a time."""
    state = book.claims
    if state is None:
        book.put_claims(ClaimsState(clock=at, expired_day=day_of(at)))
        return
    clock = max(state.clock, at)
    target = min(day_of(clock), state.expired_day + MAX_EXPIRY_WALK_DAYS)
    book.put_claims(state.model_copy(update={"clock": clock}))
    for day in range(state.expired_day + 1, target + 1):
        book.walk_day(day, clock)
    if target > state.expired_day:
        book.put_claims(book.claims.model_copy(update={"expired_day": target}))  # type: ignore[union-attr]


def check(book: ClaimsBook, record: ReliefRequested, county: County) -> Claim:
    """P6 across towns: the request's claim, and its persons marked when it is free.
    Raises Refuse (a dead letter, nothing changed) for a request no town could take."""
    try:
        county.town(record.town)
    except UnknownTown:
        raise Refuse(f"unknown town {record.town!r}: not in the county's configuration") from None
    if record.claim is not None:
        raise Refuse("a request on the claims topic already carries a claim")
    at = at_of(record)
    _advance(book, at)
    clock = book.claims.clock  # type: ignore[union-attr]
    persons = duplicates.persons_of_request(record)
    category = record.category.value
    request_id = str(record.event_id)
    previous = duplicates.previous_grant(book, persons, category, record.incident_id, at)
    if previous is not None and previous.request_id != request_id:
        return Claim(
            verdict=ClaimVerdict.DUPLICATE,
            claimed_at=at,
            previous_town=previous.town,
            previous_case_id=previous.case_id,
            previous_request_id=previous.request_id,
            previous_grant_at=previous.granted_at,
        )
    # (the same request again - a retry that reached the topic twice - is free again:
    # its marks are its own, and the town keeps the request once by its event id)
    cause_key = duplicates.cause_of(category, record.incident_id)
    grant = ClaimMark(
        case_id=record.case_id, granted_at=at, town=record.town, request_id=request_id
    )
    duplicates.put_marks(book, persons, cause_key, grant)
    expires = max(at, clock) + DUPLICATE_WINDOW + timedelta(days=1)
    book.expire_on(day_of(expires), duplicates.marked_keys(persons, cause_key))
    return Claim(verdict=ClaimVerdict.FREE, claimed_at=at)


def release(book: ClaimsBook, released: ClaimReleased, at: datetime) -> None:
    """A request that came to nothing blocks nothing: its marks leave."""
    _advance(book, at)
    duplicates.drop_marks(
        book,
        released.persons,
        released.cause_key,
        lambda mark: mark.request_id == released.request_id,
    )


def forwarded(record: ReliefRequested, claim: Claim) -> ReliefRequested:
    """The request as the town receives it: the same event id, with the claim."""
    return record.model_copy(update={"claim": claim})
