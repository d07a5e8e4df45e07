"""Section 二 in the casebook, pure: a department's list kept row by row; civil affairs'
follow-ups judged in log order — the first decision on a row stands, one naming no row
(or a row of another town, or a list recorded after it) is refused with its reason — so
that any split of the log into batches, in any order within a batch, gives one answer."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from schemas import intake as i
from schemas.envelope import Actor, Role
from services.casebook.adapters.http import create_app
from services.casebook.domain import hardship as h
from services.casebook.settings import CasebookSettings
from tests.unit.schemas.factories import CIVIL, LI, QIFENG, T0, TOWN_CLERK, WANG, WANG_ID

TIANZHUANG = "370321102"
DEPT = Actor(role=Role.DEPARTMENT, org="县医疗保障局")


def pushed(n: int = 1, town: str = QIFENG) -> i.HardshipListPushed:
    return i.HardshipListPushed(
        event_id=uuid.UUID(int=n),
        occurred_at=T0,
        town=town,
        actor=DEPT,
        correlation_id="hardship-upload-1",
        department="县医疗保障局",
        rows=(
            i.HardshipRow(household_ref=WANG, category=i.HardshipCategory.DISABLED, note="重度"),
            i.HardshipRow(household_ref=LI, category=i.HardshipCategory.CONTINUING_EXPENDITURE),
        ),
    )


def followed(
    n: int,
    row: int = 0,
    *,
    list_id: int = 1,
    town: str = QIFENG,
    outcome: i.HardshipOutcome = i.HardshipOutcome.NO_RELIEF_NEEDED,
    **more: object,
) -> i.HardshipFollowedUp:
    return i.HardshipFollowedUp(
        event_id=uuid.UUID(int=n),
        occurred_at=T0 + timedelta(hours=1),
        town=town,
        actor=CIVIL,
        correlation_id=i.hardship_row_correlation(uuid.UUID(int=list_id), row),
        list_event_id=uuid.UUID(int=list_id),
        row=row,
        outcome=outcome,
        reasons="入户核实，家庭收入高于低保标准",
        decided_by="王科长",
        **more,
    )


def at(offset: int, partition: int = 0) -> h.Where:
    return h.Where(partition, offset)


def known_for(record: i.HardshipListPushed, where: h.Where) -> dict[h.RowKey, h.Known]:
    return {
        (r.list_event_id, r.row_index): h.Known(town=r.town, list_at=where)
        for r in h.list_rows(record)
    }


def test_a_list_is_kept_row_by_row_with_the_hashed_households_only() -> None:
    record = pushed()
    kept = h.pushed(record, T0 + timedelta(seconds=1), at(3))
    assert (kept.event_id, kept.town, kept.rows, kept.org) == (
        record.event_id,
        QIFENG,
        2,
        "县医疗保障局",
    )
    rows = h.list_rows(record)
    assert [(r.row_index, r.household_ref, r.category, r.note) for r in rows] == [
        (0, WANG, "disabled", "重度"),
        (1, LI, "continuing_expenditure", ""),
    ]
    assert WANG_ID not in repr(rows)


def test_the_first_follow_up_of_a_row_stands_and_a_later_one_is_refused_with_its_reason() -> None:
    known = known_for(pushed(), at(3))
    first = h.follow_up(followed(10), T0, at(5))
    second = h.follow_up(
        followed(11, outcome=i.HardshipOutcome.REFERRED, referred_to="县残联"), T0, at(6)
    )
    other_row = h.follow_up(followed(12, row=1), T0, at(7))
    judged = h.judge(known, [second, other_row, first])  # the batch's order is not the log's
    assert [f.event_id for f in judged.kept] == [uuid.UUID(int=10), uuid.UUID(int=12)]
    [refusal] = judged.refused
    assert refusal.follow_up is second
    assert "already followed up (no_relief_needed)" in refusal.reason
    assert str(uuid.UUID(int=10)) in refusal.reason
    # the refusal's id is its follow-up's, derived: a rebuild writes the same row
    assert refusal.rejected_id == uuid.uuid5(uuid.UUID(int=11), h.REFUSAL_KIND)

    # stored, then read again: the kept one is no news; the later one is refused again
    stored = {
        **known,
        first.key: h.Known(
            town=QIFENG, list_at=at(3), kept=first.event_id, kept_outcome="no_relief_needed"
        ),
    }
    again = h.judge(stored, [first, second])
    assert again.kept == [] and [r.follow_up for r in again.refused] == [second]


@pytest.mark.parametrize(
    ("follow", "where", "reason"),
    [
        (followed(20, row=2), at(5), "no such row was pushed"),  # the list has rows 0 and 1
        (followed(21, list_id=99), at(5), "no such row was pushed"),  # no such list
        (followed(22, town=TIANZHUANG), at(5), f"the list is of town {QIFENG}, not {TIANZHUANG}"),
        (followed(23), at(2), "the list was recorded after the follow-up"),
        (followed(24), at(9, partition=1), "the list was recorded after the follow-up"),
        # the list's own place: a record is not before itself
        (followed(25), at(3), "the list was recorded after the follow-up"),
    ],
)
def test_a_follow_up_naming_no_row_of_its_town_before_it_is_refused(
    follow: i.HardshipFollowedUp, where: h.Where, reason: str
) -> None:
    judged = h.judge(known_for(pushed(), at(3)), [h.follow_up(follow, T0, where)])
    assert judged.kept == []
    assert [reason in r.reason for r in judged.refused] == [True]


def test_every_split_and_order_of_the_log_gives_the_same_answer() -> None:
    log = [
        h.follow_up(followed(30), T0, at(5)),
        h.follow_up(followed(31), T0, at(6)),
        h.follow_up(followed(32, row=1), T0, at(7)),
        h.follow_up(followed(33, row=1), T0, at(8)),
    ]
    base = known_for(pushed(), at(3))
    answers = set()
    for cut in range(len(log) + 1):
        for first_part in itertools.permutations(log[:cut]):
            one = h.judge(base, first_part)
            state = dict(base)
            for f in one.kept:
                state[f.key] = h.Known(
                    town=f.town, list_at=at(3), kept=f.event_id, kept_outcome=f.outcome
                )
            two = h.judge(state, reversed(log[cut:]))
            answers.add(
                (
                    tuple(sorted(f.event_id.int for f in one.kept + two.kept)),
                    tuple(sorted(r.follow_up.event_id.int for r in one.refused + two.refused)),
                )
            )
    assert answers == {((30, 32), (31, 33))}


def test_the_same_record_twice_in_a_batch_is_judged_once() -> None:
    f = h.follow_up(followed(40), T0, at(5))
    judged = h.judge(known_for(pushed(), at(3)), [f, f])
    assert judged.kept == [f] and judged.refused == []


# ---------------------------------------------------------------- the record


def test_a_follow_up_names_its_case_or_where_it_was_referred_and_is_civil_affairs_own() -> None:
    opened = followed(50, outcome=i.HardshipOutcome.CASE_OPENED, case_id="exp-7")
    assert opened.case_id == "exp-7" and opened.correlation_id.startswith("hardship-row-")
    with pytest.raises(ValidationError, match="case_id is required for, and only for"):
        followed(51, outcome=i.HardshipOutcome.CASE_OPENED)
    with pytest.raises(ValidationError, match="case_id is required for, and only for"):
        followed(52, case_id="exp-7")
    with pytest.raises(ValidationError, match="referred_to is required for, and only for"):
        followed(53, outcome=i.HardshipOutcome.REFERRED)
    with pytest.raises(ValidationError, match="referred_to is required for, and only for"):
        followed(54, referred_to="县残联")
    with pytest.raises(ValidationError, match="reasons"):
        followed(55).model_validate({**followed(55).model_dump(), "reasons": ""})
    with pytest.raises(ValidationError, match="county civil affairs follows up"):
        followed(56).model_validate({**followed(56).model_dump(), "actor": TOWN_CLERK})
    with pytest.raises(ValidationError, match="row"):
        followed(57, row=i.MAX_HARDSHIP_ROWS)


def test_an_id_number_typed_into_the_reasons_or_the_name_is_masked_before_the_record_exists() -> (
    None
):
    record = followed(60).model_validate(
        {
            **followed(60).model_dump(),
            "reasons": f"户主 {WANG_ID} 已去世",
            "decided_by": f"王 {WANG_ID}",
        }
    )
    assert WANG_ID not in record.model_dump_json()
    assert record.reasons.startswith("户主 ") and record.reasons.endswith(" 已去世")


def test_a_list_of_another_town_is_refused_whichever_way_the_town_codes_sort() -> None:
    # the list is Tianzhuang's (…102), the follow-up says Qifeng (…101): sorts before it
    known = known_for(pushed(town=TIANZHUANG), at(3))
    judged = h.judge(known, [h.follow_up(followed(70, town=QIFENG), T0, at(5))])
    assert judged.kept == []
    assert [
        r.reason.endswith(f"the list is of town {TIANZHUANG}, not {QIFENG}") for r in judged.refused
    ] == [True]


def test_a_list_on_another_partition_is_not_before_a_follow_up_whatever_its_offset() -> None:
    # one town's records share a partition: positions on two partitions are not ordered,
    # whichever partition number is the larger
    for list_at, follow_at in ((at(3, partition=1), at(5)), (at(3), at(5, partition=1))):
        judged = h.judge(known_for(pushed(), list_at), [h.follow_up(followed(71), T0, follow_at)])
        assert judged.kept == []
        assert ["recorded after the follow-up" in r.reason for r in judged.refused] == [True]


def test_a_row_whose_list_has_no_known_place_or_town_is_no_row_to_follow_up() -> None:
    key = (uuid.UUID(int=1), 0)
    f = h.follow_up(followed(72), T0, at(5))
    for known in (h.Known(town=QIFENG, list_at=None), h.Known(town=None, list_at=at(3))):
        judged = h.judge({key: known}, [f])
        assert judged.kept == []
        assert ["no such row was pushed" in r.reason for r in judged.refused] == [True]


def test_a_record_twice_in_a_batch_does_not_stop_the_records_after_it() -> None:
    f = h.follow_up(followed(73), T0, at(5))
    g = h.follow_up(followed(74, row=1), T0, at(6))
    late = h.follow_up(followed(75), T0, at(7))  # row 0 again: refused
    judged = h.judge(known_for(pushed(), at(3)), [f, g, f, late])
    assert judged.kept == [f, g]
    assert [r.follow_up for r in judged.refused] == [late]


def test_a_read_of_hardship_rows_returns_1_to_1000_rows_200_unless_asked() -> None:
    # the endpoint's bound is the domain's: a caller asking for more is refused (422)
    app = create_app(CasebookSettings())
    parameters = app.openapi()["paths"]["/v1/hardship-rows"]["get"]["parameters"]
    [limit] = [p["schema"] for p in parameters if p["name"] == "limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 1_000, 200)


def test_a_kept_follow_up_read_again_with_its_id_read_back_from_the_store_is_no_news() -> None:
    f = h.follow_up(followed(76), T0, at(5))
    # the store hands back an equal id, not the same object
    stored = h.Known(town=QIFENG, list_at=at(3), kept=uuid.UUID(str(f.event_id)), kept_outcome="x")
    again = h.judge({f.key: stored}, [f])
    assert again.kept == [] and again.refused == []


def test_a_rows_town_read_back_from_the_store_is_compared_by_value() -> None:
    f = h.follow_up(followed(77), T0, at(5))
    stored = h.Known(town="".join(["370321", "101"]), list_at=at(3))  # equal, not the same
    assert h.judge({f.key: stored}, [f]).kept == [f]
