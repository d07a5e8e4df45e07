"""P6 across towns: the county's claims stage, pure (services/emergency/domain/claims.py),
and the towns' answers to its claims, as stories through the Town harness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import decisions as d
from schemas import intake as i
from schemas.claims import ClaimReleased
from services.emergency.domain import claims
from services.emergency.domain.common import Refuse
from services.emergency.domain.state import DUPLICATE_WINDOW, MAX_VALUE_BYTES
from tests.unit.emergency.builders import (
    CIVIL,
    QIFENG,
    RULES,
    T0,
    TIANZHUANG,
    Town,
    cancelled,
    hours,
    incident,
    urgent,
)


def person(n: int) -> str:
    return f"p_{n:032x}"


def check(store: dict[str, Any], record: i.ReliefRequested) -> i.Claim:
    book = claims.ClaimsBook(store.get)
    claim = claims.check(book, record, RULES.county)
    for key, value in book.changes():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    return claim


def release(store: dict[str, Any], released: ClaimReleased) -> None:
    book = claims.ClaimsBook(store.get)
    claims.release(book, released, released.released_at)
    for key, value in book.changes():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def marks(store: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in store.items() if k.startswith("g/")}


def released_of(record: i.ReliefRequested, *persons: str) -> ClaimReleased:
    return ClaimReleased(
        event_id=record.event_id,
        town=record.town,
        case_id=record.case_id,
        request_id=str(record.event_id),
        cause_key=f"{record.category.value}|{record.incident_id or '-'}",
        persons=persons or (record.household_ref,),
        released_at=T0 + hours(2),
        reason="cancelled",
    )


def test_a_free_claim_marks_each_person_under_a_key_of_its_own() -> None:
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG, member_refs=(person(1), person(2)))
    claim = check(store, first)
    assert claim.verdict is i.ClaimVerdict.FREE and claim.previous_case_id is None
    # three people, each marked for the flood and for "any incident" of the layer
    assert len(marks(store)) == 6
    for value in marks(store).values():
        assert value["town"] == QIFENG and value["case_id"] == "q-1"
        assert value["request_id"] == str(first.event_id)
        assert len(json.dumps(value)) < 300  # one small value per person mark
    assert store["t/county"]["marks"] == 6
    # nothing but keyed hashes: no 18-digit number anywhere in the stored state
    assert not any(ch.isdigit() and len(k) >= 18 and k.isdigit() for k in store for ch in k)


def test_a_member_asking_in_another_town_is_a_duplicate_naming_the_first_grant() -> None:
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG, member_refs=(person(1), person(2))))
    before = dict(store)
    later = T0 + hours(3)
    claim = check(
        store, urgent("t-1", at=later, household=9, town=TIANZHUANG, member_refs=(person(2),))
    )
    assert claim.verdict is i.ClaimVerdict.DUPLICATE
    assert (claim.previous_town, claim.previous_case_id) == (QIFENG, "q-1")
    assert claim.previous_grant_at == T0
    # a duplicate marks nothing: the first grant's marks stay as they were
    assert marks(store) == marks(before)


def test_another_layer_of_relief_for_the_same_flood_is_free() -> None:
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    hardship = urgent(
        "t-1", town=TIANZHUANG, category=i.ReliefCategory.TEMPORARY_HARDSHIP, at=T0 + hours(1)
    )
    assert check(store, hardship).verdict is i.ClaimVerdict.FREE  # R1: layers, not duplicates


def test_the_same_request_twice_is_free_both_times() -> None:
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG)
    assert check(store, first).verdict is i.ClaimVerdict.FREE
    assert check(store, first).verdict is i.ClaimVerdict.FREE  # its marks are its own


@pytest.mark.parametrize("first_built", [True, False])
def test_another_request_for_the_household_is_a_duplicate_whichever_way_their_ids_sort(
    first_built: bool,
) -> None:
    """P6 across towns: the first request marks the household; another request - another
    event id, smaller or larger - is a duplicate naming it."""
    qifeng = urgent("q-1", town=QIFENG)
    tianzhuang = urgent("t-1", town=TIANZHUANG)
    first, second = (qifeng, tianzhuang) if first_built else (tianzhuang, qifeng)
    store: dict[str, Any] = {}
    assert check(store, first).verdict is i.ClaimVerdict.FREE
    claim = check(store, second)
    assert claim.verdict is i.ClaimVerdict.DUPLICATE
    assert claim.previous_case_id == first.case_id


@pytest.mark.parametrize("own_built_first", [True, False])
def test_a_release_of_another_request_drops_nothing_whichever_way_their_ids_sort(
    own_built_first: bool,
) -> None:
    if own_built_first:
        own, other = urgent("q-1", town=QIFENG), urgent("t-1", town=TIANZHUANG)
    else:
        other, own = urgent("t-1", town=TIANZHUANG), urgent("q-1", town=QIFENG)
    store: dict[str, Any] = {}
    check(store, own)
    release(store, released_of(other, own.household_ref))
    assert len(case_marks(store, "q-1")) == 2


def test_the_same_request_again_counts_its_marks_once() -> None:
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG, member_refs=(person(1),))
    check(store, first)
    check(store, first)
    assert store["t/county"]["marks"] == len(marks(store)) == 4


def test_a_record_walks_only_the_days_since_the_last_one() -> None:
    """An empty day costs a read: the wheel walks each day once, from the day after the
    last one walked to the clock's, never again the days behind it."""
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    read: list[str] = []

    def lookup(key: str) -> Any:
        read.append(key)
        return store.get(key)

    book = claims.ClaimsBook(lookup)
    claims.check(
        book, urgent("q-2", town=QIFENG, household=2, at=T0 + timedelta(days=3)), RULES.county
    )
    walked = {int(k.split("/")[2]) for k in read if k.startswith("x/county/") and k.count("/") == 2}
    first = claims.day_of(T0)
    assert {d for d in walked if d <= first + 3} == {first + 1, first + 2, first + 3}


def test_a_release_drops_only_the_marks_of_its_own_request() -> None:
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG)
    check(store, first)
    other = urgent("q-1", town=TIANZHUANG)  # the same case id in another town
    release(store, released_of(other))
    assert len(marks(store)) == 2  # another request's release: nothing dropped
    release(store, released_of(first))
    assert marks(store) == {} and store["t/county"]["marks"] == 0
    again = urgent("t-2", town=TIANZHUANG, at=T0 + hours(5))
    assert check(store, again).verdict is i.ClaimVerdict.FREE


def test_a_mark_blocks_for_the_p6_window_and_then_leaves_the_state() -> None:
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    year = timedelta(days=365)
    inside = urgent("t-1", town=TIANZHUANG, at=T0 + year - timedelta(seconds=1))
    assert check(store, inside).verdict is i.ClaimVerdict.DUPLICATE
    outside = urgent("t-2", town=TIANZHUANG, at=T0 + year, inc=None)
    assert check(store, outside).verdict is i.ClaimVerdict.FREE
    # the old grant's marks leave through the day wheel as the stage's clock passes them
    later = urgent("t-3", town=TIANZHUANG, household=5, at=T0 + year + timedelta(days=40))
    check(store, later)
    left = [v for v in marks(store).values() if v["case_id"] == "q-1"]
    assert left == []
    assert not [k for k in store if k.startswith("x/") and store[k] is None]


def test_many_marks_expiring_on_one_day_are_kept_a_hundred_to_a_page_and_all_leave() -> None:
    """A flood's day: hundreds of households granted at once expire on one day of the
    wheel. Each stored page holds at most WHEEL_PAGE keys (a value stays small however
    many), and every page is walked when the day comes: no mark is left behind."""
    store: dict[str, Any] = {}
    for n in range(1, 126):  # 125 households, two keys each: 250 keys, pages of 100
        check(store, urgent(f"q-{n}", town=QIFENG, household=n))
    (day,) = {k.split("/")[2] for k in store if k.startswith("x/")}
    assert store[f"x/county/{day}"]["pages"] == 3
    pages = [store[f"x/county/{day}/{n}"]["refs"] for n in range(3)]
    assert [len(refs) for refs in pages] == [claims.WHEEL_PAGE, claims.WHEEL_PAGE, 50]
    assert len(marks(store)) == 250 == store["t/county"]["marks"]
    later = T0 + timedelta(days=365 + 40)
    check(store, urgent("t-1", town=TIANZHUANG, household=999, at=later, inc=None))
    assert {v["case_id"] for v in marks(store).values()} == {"t-1"}
    assert store["t/county"]["marks"] == len(marks(store))
    assert not [k for k in store if k.startswith(f"x/county/{day}")]


def test_the_wheel_passes_over_the_marks_a_release_dropped_already() -> None:
    """A request cancelled in its town releases its marks at once; when its day comes
    the wheel finds the keys empty and walks on."""
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG)
    check(store, first)
    check(store, urgent("q-2", town=QIFENG, household=2))
    release(store, released_of(first))
    later = T0 + timedelta(days=365 + 40)
    check(store, urgent("t-1", town=TIANZHUANG, household=3, at=later, inc=None))
    assert {v["case_id"] for v in marks(store).values()} == {"t-1"}
    assert store["t/county"]["marks"] == len(marks(store))


def test_the_days_of_the_wheel_are_counted_from_1970_as_they_are_stored() -> None:
    """The wheel's keys (`x/county/<day>`) and the stage's expiry position live in the
    changelog across versions: a day is the number of UTC days since 1970-01-01."""
    assert claims.day_of(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert claims.day_of(datetime(2026, 7, 20, 23, 59, tzinfo=UTC)) == 20_654
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    assert store["t/county"]["expired_day"] == claims.day_of(T0)


def case_marks(store: dict[str, Any], case_id: str) -> list[Any]:
    return [v for v in marks(store).values() if v["case_id"] == case_id]


def test_the_expiry_position_follows_the_stages_clock_day_by_day() -> None:
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    later = T0 + timedelta(days=10, hours=5)
    check(store, urgent("q-2", town=QIFENG, household=2, at=later))
    assert store["t/county"]["expired_day"] == claims.day_of(later)


def test_a_stage_idle_for_years_catches_up_a_bounded_number_of_days_a_record() -> None:
    """Each empty day costs a read: one record walks at most MAX_EXPIRY_WALK_DAYS of the
    wheel, and the records after it walk on from there until the clock is reached."""
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    first = claims.day_of(T0)
    at = T0 + timedelta(days=1_000)
    check(store, urgent("q-2", town=QIFENG, household=2, at=at))
    assert store["t/county"]["expired_day"] == first + claims.MAX_EXPIRY_WALK_DAYS == first + 800
    check(store, urgent("q-3", town=QIFENG, household=3, at=at))
    assert store["t/county"]["expired_day"] == claims.day_of(at)
    assert case_marks(store, "q-1") == []  # walked on the second record's way


def test_a_mark_leaves_when_a_record_comes_on_its_own_day_of_the_wheel() -> None:
    """A mark is looked at again on the day after its P6 window ends; a record stamped that
    very day walks that day too, and the mark leaves then."""
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    on_the_day = T0 + DUPLICATE_WINDOW + timedelta(days=1, hours=1)
    check(store, urgent("q-2", town=QIFENG, household=2, at=on_the_day, inc=None))
    assert case_marks(store, "q-1") == []


@pytest.mark.parametrize("granted_at", [T0 + hours(1), T0 + hours(23)])
def test_a_mark_is_never_lost_from_the_wheel_before_its_window_ends(
    granted_at: datetime,
) -> None:
    """Whatever the hour of the grant and of the records that come near the end of its P6
    window, the mark is on the wheel until it leaves: a record a day before its day, or
    on the last day of its window, drops nothing and loses nothing."""
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG, at=granted_at))
    for at in (
        granted_at + DUPLICATE_WINDOW - timedelta(days=1),
        granted_at + DUPLICATE_WINDOW - timedelta(hours=2),
    ):
        check(store, urgent(f"q-{at:%j%H}", town=QIFENG, household=7, at=at, inc=None))
        assert len(case_marks(store, "q-1")) == 2
    check(store, urgent("q-late", town=QIFENG, household=8, at=T0 + timedelta(days=400)))
    assert case_marks(store, "q-1") == []


def test_a_mark_a_later_grant_put_back_stays_past_the_first_grants_day() -> None:
    """P6: a request cancelled in its town frees its household; a later request marks the
    same person and cause again, and the first grant's day on the wheel, when it comes,
    leaves that later mark in place for its own window."""
    store: dict[str, Any] = {}
    first = urgent("q-1", town=QIFENG)
    check(store, first)
    release(store, released_of(first))
    second = urgent("t-1", town=TIANZHUANG, at=T0 + timedelta(days=10))
    assert check(store, second).verdict is i.ClaimVerdict.FREE
    after_first_day = T0 + DUPLICATE_WINDOW + timedelta(days=2)
    again = urgent("q-2", town=QIFENG, at=after_first_day)
    claim = check(store, again)
    assert claim.verdict is i.ClaimVerdict.DUPLICATE and claim.previous_case_id == "t-1"


def test_the_count_of_marks_held_is_never_negative() -> None:
    with pytest.raises(ValidationError):
        claims.ClaimsState(clock=T0, expired_day=0, marks=-1)


def test_a_request_no_town_could_take_changes_nothing() -> None:
    store: dict[str, Any] = {}
    check(store, urgent("q-1", town=QIFENG))
    before = json.dumps(store, sort_keys=True, default=str)
    book = claims.ClaimsBook(store.get)
    with pytest.raises(Refuse, match="unknown town"):
        claims.check(book, urgent("x-1", town="370321999"), RULES.county)
    claimed = claims.forwarded(
        urgent("q-2", town=QIFENG),
        i.Claim(verdict=i.ClaimVerdict.FREE, claimed_at=T0),
    )
    with pytest.raises(Refuse, match="already carries a claim"):
        claims.check(claims.ClaimsBook(store.get), claimed, RULES.county)
    assert json.dumps(store, sort_keys=True, default=str) == before


def test_the_largest_mark_is_far_below_the_value_limit() -> None:
    mark = claims.ClaimMark(case_id="c" * 64, granted_at=T0, town="3" * 12, request_id="r" * 36)
    assert len(mark.model_dump_json()) < MAX_VALUE_BYTES // 20
    store: dict[str, Any] = {}
    members = tuple(person(n) for n in range(21))
    check(store, urgent("q-1", town=QIFENG, member_refs=members))
    assert max(len(json.dumps(v)) for v in store.values()) < MAX_VALUE_BYTES


# ---------------------------------------------------------------- through the towns


def test_the_first_grant_cancelled_frees_the_household_in_another_town() -> None:
    county = Town()
    county(incident("flood-0720", town=QIFENG))
    county(incident("flood-0720", town=TIANZHUANG))
    [grant, _] = county(urgent("em-q", 80_000, town=QIFENG))
    assert isinstance(grant, d.AdvanceGranted)
    [refused] = county(urgent("em-t", 80_000, town=TIANZHUANG, at=T0 + hours(1)))
    assert isinstance(refused, d.AdvanceRefused)
    assert refused.figures["previous_town"] == QIFENG and "em-q" in refused.reasons
    assert county.claim_outputs == []  # a duplicate claim marked nothing: nothing to release
    county(cancelled("em-q", T0 + hours(2)))
    [released] = county.claim_outputs
    assert isinstance(released, ClaimReleased) and released.case_id == "em-q"
    assert released.reason == "cancelled"
    [granted, _] = county(urgent("em-t2", 80_000, town=TIANZHUANG, at=T0 + hours(3)))
    assert isinstance(granted, d.AdvanceGranted)


def test_a_request_refused_in_its_town_releases_its_claim() -> None:
    county = Town()
    out = county(urgent("em-q", 80_000, town=QIFENG, inc="no-such-flood"))
    [refused] = [r for r in out if isinstance(r, d.AdvanceRefused)]
    [released] = county.claim_outputs
    assert isinstance(released, ClaimReleased)
    assert released.request_id == str(refused.causation_id) and released.reason == "refused"
    assert marks(county.claims_store) == {}


def test_civil_affairs_grants_a_second_time_across_towns_with_the_first_named() -> None:
    county = Town()
    county(incident("flood-0720", town=QIFENG))
    county(incident("flood-0720", town=TIANZHUANG))
    county(urgent("em-q", 80_000, town=QIFENG))
    second = urgent("em-t", 80_000, town=TIANZHUANG, at=T0 + hours(1)).model_copy(
        update={"actor": CIVIL, "second_grant_reason": "房屋再次受损，县民政局研究同意再次救助"}
    )
    out = county(second)
    [allowed] = [r for r in out if isinstance(r, d.SecondGrantAllowed)]
    assert allowed.previous_case_id == "em-q" and allowed.figures["previous_town"] == QIFENG
    assert any(isinstance(r, d.AdvanceGranted) for r in out)


def test_a_forwarded_request_keeps_the_time_the_county_recorded_it() -> None:
    """R5's 24 hours run from intake's 202 (the claims topic's stamp), not from when the
    stage forwarded the request: a stage an hour behind moves no deadline later."""
    from datetime import timedelta

    from services.emergency.adapters.faust_app import recorded_when_claimed

    claimed = claims.forwarded(
        urgent("q-9", town=QIFENG, at=T0 + timedelta(hours=1)),
        i.Claim(verdict=i.ClaimVerdict.FREE, claimed_at=T0),
    )
    assert recorded_when_claimed(claimed).recorded_at == T0
    plain = urgent("q-10", town=QIFENG, at=T0 + timedelta(hours=1))
    assert recorded_when_claimed(plain) is plain  # no claim: as the intake topic says
    later = claims.forwarded(
        plain, i.Claim(verdict=i.ClaimVerdict.FREE, claimed_at=T0 + timedelta(hours=2))
    )
    assert recorded_when_claimed(later).recorded_at == T0 + timedelta(hours=1)
