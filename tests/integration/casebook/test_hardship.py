"""Section 二 on the real Kafka and PostgreSQL: a department's list, pushed for two towns,
is kept row by row; the rows waiting for civil affairs are read (a town's own only);
civil affairs' written follow-ups are folded — the first decision on a row stands, a
second one and one naming no row are refused with their reasons, which their submissions
answer — and a rebuild from the topics gives the same rows."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from deploy.local import stack as local_stack
from schemas import intake as i
from schemas.envelope import Actor, Role
from schemas.registry import encode
from services.casebook.app import rebuild
from tests.integration.casebook.conftest import (
    CasebookDb,
    Processor,
    Topics,
    eventually,
    produce,
    reader,
    rows,
    running,
    settings_for,
)
from tests.unit.emergency.builders import CIVIL, QIFENG, T0, TIANZHUANG, env, hh

DEPT = Actor(role=Role.DEPARTMENT, org="县医疗保障局")


def pushed(town: str, *households: int) -> i.HardshipListPushed:
    return i.HardshipListPushed(
        **env(town, "hardship-upload-0721", T0, DEPT),
        department="县医疗保障局",
        rows=tuple(
            i.HardshipRow(
                household_ref=hh(n),
                category=i.HardshipCategory.CONTINUING_EXPENDITURE,
                note=f"住院{n}次",
            )
            for n in households
        ),
    )


def followed(
    listed: i.HardshipListPushed, row: int, outcome: i.HardshipOutcome, **more: str
) -> i.HardshipFollowedUp:
    fields = env(
        listed.town,
        i.hardship_row_correlation(listed.event_id, row),
        T0 + timedelta(hours=2),
        CIVIL,
    )
    fields["recorded_at"] = None
    return i.HardshipFollowedUp(
        **fields,
        list_event_id=listed.event_id,
        row=row,
        outcome=outcome,
        reasons="入户核实：" + outcome.value,
        decided_by="民政局 王科长",
        **more,
    )


async def test_a_list_its_waiting_rows_their_follow_ups_and_a_rebuild_gives_the_same_rows(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    settings = settings_for(stack, casebook_db, topics)
    processor = Processor(stack.kafka_bootstrap, topics)
    qifeng = pushed(QIFENG, 1, 2, 3)
    tianzhuang = pushed(TIANZHUANG, 4)
    await produce(
        stack.kafka_bootstrap, topics.intake, [(r.town, encode(r)) for r in (qifeng, tianzhuang)]
    )
    # section 二: the processor decides nothing on a list (a town's first record opens its
    # reserve in the ledger, nothing more)
    assert [r for r in await processor.step() if getattr(r, "type", "") != "Posting"] == []

    async with running(settings), reader(settings) as cb:

        async def waiting(**params: str) -> list[tuple[str, int]]:
            body = (await cb.get("/v1/hardship-rows", params=params)).json()
            return [(r["town"], r["row_index"]) for r in body["rows"]]

        async def all_four() -> bool:
            return len(await waiting()) == 4

        await eventually(all_four, "the pushed rows listed")
        body = (await cb.get("/v1/hardship-rows", params={"town": QIFENG})).json()
        assert body["total"] == 3
        first = body["rows"][0]
        assert first["household_ref"] == hh(1) and first["category"] == "continuing_expenditure"
        assert (first["department"], first["pushed_by"], first["note"]) == (
            "县医疗保障局",
            "县医疗保障局",
            "住院1次",
        )
        assert first["list_event_id"] == str(qifeng.event_id) and first["follow_up"] is None
        # scoped like the other reads: a town reads its own rows only
        assert await waiting(scope_town=TIANZHUANG) == [(TIANZHUANG, 0)]
        other = await cb.get("/v1/hardship-rows", params={"town": QIFENG, "scope_town": TIANZHUANG})
        assert other.status_code == 403 and hh(1) not in other.text
        assert (await cb.get("/v1/hardship-rows", params={"state": "all"})).status_code == 422

        # civil affairs decides: a case opened, a referral; a second decision on row 0, a
        # row the list does not have, and a row named under the wrong town are refused
        opened = followed(qifeng, 0, i.HardshipOutcome.CASE_OPENED, case_id="exp-0721-1")
        referred = followed(qifeng, 2, i.HardshipOutcome.REFERRED, referred_to="县残疾人联合会")
        again = followed(qifeng, 0, i.HardshipOutcome.NO_RELIEF_NEEDED)
        missing = followed(qifeng, 7, i.HardshipOutcome.NO_RELIEF_NEEDED)
        wrong_town = followed(tianzhuang, 0, i.HardshipOutcome.NO_RELIEF_NEEDED).model_copy(
            update={"town": QIFENG, "event_id": uuid.uuid4()}
        )
        follow_ups = [opened, referred, again, missing, wrong_town]
        await produce(
            stack.kafka_bootstrap, topics.intake, [(r.town, encode(r)) for r in follow_ups]
        )
        assert await processor.step() == []  # accepted, decided nothing, refused nothing

        async def status(record: i.HardshipFollowedUp) -> str:
            return str((await cb.get(f"/v1/submissions/{record.event_id}")).json()["status"])

        async def all_answered() -> bool:
            return [await status(r) for r in follow_ups] == [
                "decided",
                "decided",
                "rejected",
                "rejected",
                "rejected",
            ]

        await eventually(all_answered, "every follow-up decided or rejected")
        reasons = [
            (await cb.get(f"/v1/submissions/{r.event_id}")).json()["reason"]
            for r in (again, missing, wrong_town)
        ]
        assert (
            "already followed up (case_opened)" in reasons[0] and str(opened.event_id) in reasons[0]
        )
        assert "no such row was pushed" in reasons[1]
        assert f"the list is of town {TIANZHUANG}, not {QIFENG}" in reasons[2]

        assert sorted(await waiting()) == [(QIFENG, 1), (TIANZHUANG, 0)]
        done = (await cb.get("/v1/hardship-rows", params={"state": "followed_up"})).json()
        decided = {r["row_index"]: r["follow_up"] for r in done["rows"]}
        assert set(decided) == {0, 2} and done["total"] == 2
        assert (decided[0]["outcome"], decided[0]["case_id"], decided[0]["referred_to"]) == (
            "case_opened",
            "exp-0721-1",
            None,
        )
        assert decided[2]["referred_to"] == "县残疾人联合会"
        assert (decided[0]["decided_by"], decided[0]["org"]) == ("民政局 王科长", "桓台县民政局")
        assert decided[0]["reasons"] == "入户核实：case_opened"

    # append-only, as the story and the publications are
    conn = await asyncpg.connect(casebook_db.app_url)
    try:
        for table in ("hardship_lists", "hardship_rows", "hardship_follow_ups"):
            try:
                await conn.execute(f"DELETE FROM casebook.{table}")
            except asyncpg.PostgresError as exc:
                assert "refused" in str(exc) or "permission denied" in str(exc)
            else:
                raise AssertionError(f"casebook.{table} let a row be deleted")
    finally:
        await conn.close()

    live = await rows(casebook_db.app_url)
    await rebuild(settings)
    rebuilt = await rows(casebook_db.app_url)
    for table in (
        "hardship_lists",
        "hardship_rows",
        "hardship_follow_ups",
        "rejections",
        "submissions",
    ):
        assert rebuilt[table] == live[table], f"casebook.{table} differs after a rebuild"
    assert (
        len(live["hardship_lists"]),
        len(live["hardship_rows"]),
        len(live["hardship_follow_ups"]),
    ) == (
        2,
        4,
        2,
    )
