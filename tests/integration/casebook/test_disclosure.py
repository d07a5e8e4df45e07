"""P7 on the real Kafka and PostgreSQL: the disclosure list of a town's month holds every
approved expenditure-type case of it and nothing personal beyond the masked name; urgent
cases are never listed; a publication covers what was approved before it; a town reads
its own list; CSV cells a spreadsheet would run are escaped; the overdue gauge counts
what is past its publish-by date and unpublished."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry

from deploy.local import stack as local_stack
from schemas import intake as i
from schemas.decisions import ReliefApproved
from schemas.envelope import to_cst
from schemas.identity import public_name
from schemas.registry import encode
from schemas.workdays import load_calendar
from services.casebook.adapters import postgres
from services.casebook.app import DisclosureWatcher, RunMetrics
from services.casebook.domain.disclosure import publish_by
from tests.integration.casebook.conftest import (
    CasebookDb,
    Processor,
    Topics,
    eventually,
    produce,
    reader,
    running,
    settings_for,
)
from tests.unit.emergency.builders import CIVIL, QIFENG, T0, TIANZHUANG, TOWN, env, hh, urgent

CALENDAR = load_calendar()
ROW_KEYS = {
    "case_id",
    "public_name",
    "category",
    "amount_fen",
    "amount_yuan",
    "approver_level",
    "approved_on",
    "publish_by",
    "published",
    "published_on",
}


def expenditure(
    case: str,
    fen: int,
    name: str,
    town: str = QIFENG,
    household: int = 7,
    category: i.ReliefCategory = i.ReliefCategory.SERIOUS_ILLNESS,
) -> i.ReliefRequested:
    # section 八: the town registers it, and approves it within its authority (P2)
    return i.ReliefRequested(
        **env(town, case, T0, TOWN),
        urgency=i.Urgency.EXPENDITURE,
        category=category,
        household_ref=hh(household),
        requested_fen=fen,
        reason="大病医疗支出过大，住院三次",
        public_name=public_name(name),
    )


def published(town: str, period: str) -> i.DisclosurePublished:
    return i.DisclosurePublished(
        **env(town, f"disclosure-{period}", T0, TOWN), period=period, note="镇政务公开栏"
    )


def confirmed(case: str, fen: int) -> i.CaseReviewed:
    return i.CaseReviewed(
        **env(QIFENG, case, T0 + timedelta(hours=1), CIVIL),
        outcome=i.ReviewOutcome.CONFIRMED,
        approved_fen=fen,
    )


async def test_a_months_list_holds_every_approved_expenditure_case_and_nothing_personal(
    stack: local_stack.StackInfo, casebook_db: CasebookDb, topics: Topics
) -> None:
    settings = settings_for(stack, casebook_db, topics, casebook_disclosure_interval_s=0)
    processor = Processor(stack.kafka_bootstrap, topics)
    first = [
        expenditure("exp-1", 280_000, "张三丰", household=11),  # P2: the town approves
        expenditure("exp-2", 500_000, "李四", household=12),  # the county approves, below
        expenditure(
            "-exp-3", 50_000, "王五", household=13, category=i.ReliefCategory.TEMPORARY_HARDSHIP
        ),  # a case id a spreadsheet would read as a formula
        expenditure("exp-9", 600_000, "钱七", household=14),  # awaits the county: not listed
        urgent("urg-1", 80_000, household=15, town=QIFENG),  # P7: urgent, never listed
        expenditure("exp-1", 290_000, "赵六", town=TIANZHUANG, household=21),
        confirmed("exp-2", 500_000),
    ]
    await produce(stack.kafka_bootstrap, topics.intake, [(r.town, encode(r)) for r in first])
    sent = await processor.step()
    approvals = [d for d in sent if isinstance(d, ReliefApproved)]
    assert sorted((d.town, d.correlation_id) for d in approvals) == sorted(
        [(QIFENG, "exp-1"), (QIFENG, "exp-2"), (QIFENG, "-exp-3"), (TIANZHUANG, "exp-1")]
    )
    period = to_cst(approvals[0].occurred_at).strftime("%Y-%m")
    qifeng_expected = {d.correlation_id for d in approvals if d.town == QIFENG}

    async with running(settings), reader(settings) as cb:

        async def listed(town: str) -> set[str]:
            answer = await cb.get(f"/v1/disclosures/{town}", params={"period": period})
            return {r["case_id"] for r in answer.json()["rows"]}

        async def qifeng_complete() -> bool:
            return await listed(QIFENG) == qifeng_expected

        await eventually(qifeng_complete, "Qifeng's approvals on its list")
        answer = await cb.get(f"/v1/disclosures/{QIFENG}", params={"period": period})
        assert answer.status_code == 200
        body = answer.json()
        assert (body["town"], body["period"], body["working_days"]) == (QIFENG, period, 10)
        by_id = {r["case_id"]: r for r in body["rows"]}
        assert by_id["exp-1"]["public_name"] == "张＊＊"
        assert (by_id["exp-1"]["approver_level"], by_id["exp-2"]["approver_level"]) == (
            "town",
            "county",
        )
        assert (by_id["exp-2"]["amount_fen"], by_id["exp-2"]["amount_yuan"]) == (500_000, "5000.00")
        assert body["total_fen"] == sum(r["amount_fen"] for r in body["rows"])
        for d in approvals:
            if d.town == QIFENG:
                row = by_id[d.correlation_id]
                due = publish_by(CALENDAR, d.occurred_at, 10)
                assert row["publish_by"] == (None if due is None else due.isoformat())
                assert row["approved_on"] == to_cst(d.occurred_at).date().isoformat()
                assert row["published"] is False
        # nothing personal beyond the masked name: no household ref, no reason, no name
        assert all(set(r) == ROW_KEYS for r in body["rows"])
        text = answer.text
        refs = [hh(n) for n in (11, 12, 13, 21)]
        for secret in (*refs, "大病医疗", "三丰", "李四", "钱七", "urg-1", "exp-9"):
            assert secret not in text

        # a town reads its own list; the same case id in the other town is the other's
        assert await listed(TIANZHUANG) == {"exp-1"}
        own = await cb.get(
            f"/v1/disclosures/{TIANZHUANG}", params={"period": period, "scope_town": TIANZHUANG}
        )
        assert own.json()["rows"][0]["public_name"] == "赵＊"
        other = await cb.get(
            f"/v1/disclosures/{QIFENG}", params={"period": period, "scope_town": TIANZHUANG}
        )
        assert other.status_code == 403 and "rows" not in other.text
        assert (
            await cb.get(f"/v1/disclosures/{QIFENG}", params={"period": "2026-13"})
        ).status_code == 422

        # CSV: the formula-looking case id is escaped; the same rows
        got = await cb.get(f"/v1/disclosures/{QIFENG}", params={"period": period, "format": "csv"})
        assert got.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
        assert table[0][:2] == ["case_id", "name"]
        assert sorted(r[0] for r in table[1:]) == sorted(
            "'-exp-3" if c == "-exp-3" else c for c in qifeng_expected
        )
        assert "三丰" not in got.text and hh(11) not in got.text

        # the page in Chinese
        html_page = await cb.get(f"/disclosures/{QIFENG}", params={"period": period})
        assert html_page.status_code == 200 and "公示名单" in html_page.text
        assert "张＊＊" in html_page.text and "三丰" not in html_page.text

        # the overdue gauge: past the publish-by date and unpublished
        registry = RunMetrics(CollectorRegistry())
        pool = await postgres.connect_pool(casebook_db.app_url, 2)
        try:
            watcher = DisclosureWatcher(pool, registry, settings)
            due = publish_by(CALENDAR, approvals[0].occurred_at, 10)
            later = (
                datetime.combine(due, datetime.min.time(), to_cst(T0).tzinfo) + timedelta(days=1)
                if due is not None
                else None
            )
            await watcher.step(later)
            value = registry.registry.get_sample_value
            name = "relief_casebook_disclosure_overdue_cases"
            undated = "relief_casebook_disclosure_undated_cases"
            if later is not None:
                assert value(name, {"town": QIFENG}) == 3
                assert value(name, {"town": TIANZHUANG}) == 1
            else:  # the calendar does not reach the date: counted, never guessed
                assert value(undated, {"town": QIFENG}) == 3

            # Qifeng publishes its list: covered; Tianzhuang's is still overdue
            await produce(
                stack.kafka_bootstrap, topics.intake, [(QIFENG, encode(published(QIFENG, period)))]
            )
            assert await processor.step() == []  # the processor decides nothing on it

            async def all_published() -> bool:
                answer = await cb.get(f"/v1/disclosures/{QIFENG}", params={"period": period})
                return all(r["published"] for r in answer.json()["rows"])

            await eventually(all_published, "Qifeng's list published")
            await watcher.step(later)
            if later is not None:
                assert value(name, {"town": QIFENG}) == 0
                assert value(name, {"town": TIANZHUANG}) == 1

            # approved after the publication: not covered until published again
            await produce(
                stack.kafka_bootstrap,
                topics.intake,
                [(QIFENG, encode(expenditure("exp-5", 280_000, "孙八", household=16)))],
            )
            await processor.step()

            async def exp5_listed() -> bool:
                return "exp-5" in await listed(QIFENG)

            await eventually(exp5_listed, "a later approval on the list")
            rows = (await cb.get(f"/v1/disclosures/{QIFENG}", params={"period": period})).json()
            flags = {r["case_id"]: r["published"] for r in rows["rows"]}
            if to_cst(datetime.now(tz=T0.tzinfo)).strftime("%Y-%m") == period:
                assert flags["exp-5"] is False and flags["exp-1"] is True
        finally:
            await pool.close()

    # the publication is kept append-only
    conn = await asyncpg.connect(casebook_db.app_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM casebook.publications") == 1
    finally:
        await conn.close()
