"""The console's pages rendered over a stand-in for intake and the casebook (no servers):
civil affairs' inbox shows the rows departments pushed with a form to decide each and
what became of those decided; the disclosure list has bilingual headings, yuan and
Chinese dates; the inbox stands when the casebook does not answer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.console.adapters.upstream import Answer, Me, Unreachable, Upstream
from services.console.app import COOKIE, create_app
from services.console.settings import ConsoleSettings

QIFENG = "370321101"
LIST_ID = uuid.UUID(int=42)
REF = "h_" + "ab" * 16
PUSHED_AT = "2026-07-20T01:30:00Z"  # 09:30 in Huantai


def hardship_row(row: int, follow_up: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "list_event_id": str(LIST_ID),
        "row_index": row,
        "town": QIFENG,
        "household_ref": REF,
        "category": "disabled",
        "note": "重度残疾",
        "department": "县残疾人联合会",
        "pushed_by": "县残联",
        "pushed_at": PUSHED_AT,
        "follow_up": follow_up,
    }


DONE = {
    "event_id": str(uuid.UUID(int=7)),
    "outcome": "referred",
    "case_id": None,
    "referred_to": "县医保局",
    "reasons": "已享受医疗救助，转医保局核定",
    "decided_by": "王科长",
    "org": "桓台县民政局",
    "decided_at": "2026-07-20T06:00:00Z",
}


class Stand(Upstream):
    """Intake and the casebook as the pages see them."""

    def __init__(self, casebook_up: bool = True) -> None:
        super().__init__("http://intake", "http://casebook", "", "http://dash", 1, 1, 10)
        self.casebook_up = casebook_up
        self.writes: list[tuple[str, Any]] = []

    async def me(self, token: str) -> Me | None:
        return Me("civil_affairs", "桓台县民政局", None) if token == "tok-civil" else None

    async def read(self, token: str, path: str, params: Any = None) -> Answer:
        return Answer(200, {"total": 0, "cases": []})

    async def write(self, token: str, path: str, body: Any, key: str | None) -> Answer:
        self.writes.append((path, body))
        return Answer(
            202,
            {
                "event_id": str(uuid.UUID(int=9)),
                "type": "HardshipFollowedUp",
                "town": QIFENG,
                "correlation_id": "hardship-row-x",
                "recorded_at": PUSHED_AT,
            },
        )

    async def hardship_rows(self, state: str, limit: int) -> Answer:
        if not self.casebook_up:
            raise Unreachable("the casebook does not answer (ConnectError)")
        rows = [hardship_row(0), hardship_row(1)] if state == "waiting" else [hardship_row(2, DONE)]
        return Answer(200, {"total": len(rows), "rows": rows})

    async def disclosure(
        self, town: str, period: str, csv: bool, scope_town: str | None = None
    ) -> Answer:
        row = {
            "case_id": "exp-1",
            "public_name": "张＊＊",
            "category": "serious_illness",
            "amount_fen": 280_050,
            "amount_yuan": "2800.50",
            "approver_level": "town",
            "approved_on": "2026-07-20",
            "publish_by": "2026-08-03",
            "published": False,
            "published_on": None,
        }
        return Answer(200, {"town": town, "period": period, "rows": [row]})


def client(stand: Stand) -> httpx.AsyncClient:
    app = create_app(ConsoleSettings(console_cookie_secure=False), upstream=stand)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://console",
        cookies={COOKIE: "tok-civil"},
    )


async def test_the_inbox_shows_each_waiting_row_with_a_form_and_what_became_of_the_decided() -> (
    None
):
    async with client(Stand()) as c:
        page = await c.get("/civil-affairs")
    assert page.status_code == 200
    text = page.text
    assert "部门推送的困难名单" in text and "Hardship lists from departments" in text
    assert text.count('class="inbox-item hardship-row"') == 2
    assert f'hx-post="/civil-affairs/hardship/{QIFENG}/{LIST_ID}/1"' in text
    assert "残疾人" in text and "重度残疾" in text and "2026年7月20日 09:30" in text
    assert 'name="decided_by"' in text and 'name="reasons"' in text
    # decided: the outcome in words, where it went, the reasons and who
    assert "转介其他部门" in text and "县医保局" in text and "已享受医疗救助" in text
    assert "王科长" in text
    assert REF[:12] in text  # the keyed hash, shortened; never an ID number


async def test_a_follow_up_goes_to_intake_for_its_row_with_the_written_reasons() -> None:
    stand = Stand()
    async with client(stand) as c:
        answer = await c.post(
            f"/civil-affairs/hardship/{QIFENG}/{LIST_ID}/1",
            data={
                "idem": str(uuid.uuid4()),
                "outcome": "no_relief_needed",
                "case_id": "",
                "reasons": "家庭收入高于标准",
                "decided_by": "王科长",
            },
        )
        assert answer.status_code == 200 and "已收到" in answer.text
        refused = await c.post(
            f"/civil-affairs/hardship/{QIFENG}/{LIST_ID}/1",
            data={"outcome": "case_opened", "reasons": "", "decided_by": "王科长"},
        )
    assert stand.writes == [
        (
            f"/v1/hardship-lists/{LIST_ID}/rows/1/follow-ups",
            {
                "town": QIFENG,
                "outcome": "no_relief_needed",
                "reasons": "家庭收入高于标准",
                "decided_by": "王科长",
            },
        )
    ]  # the form with problems sent nothing
    assert 'data-field="case_id"' in refused.text and 'data-field="reasons"' in refused.text


async def test_the_inbox_stands_when_the_casebook_does_not_answer() -> None:
    async with client(Stand(casebook_up=False)) as c:
        page = await c.get("/civil-affairs")
    assert page.status_code == 200
    assert 'id="hardship-unavailable"' in page.text and "Approvals above" in page.text


async def test_the_disclosure_list_has_bilingual_headings_yuan_and_chinese_dates() -> None:
    async with client(Stand()) as c:
        page = await c.get(f"/disclosures/{QIFENG}", params={"period": "2026-07"})
    text = page.text
    assert page.status_code == 200
    assert "2026年7月" in text
    for heading in ("编号", "姓名", "救助类别", "救助金额", "审批层级", "审批日期", "公示截止"):
        assert '<th scope="col"' in text and heading in text
    assert '<span class="en">amount</span>' in text
    assert "¥2,800.50" in text and "2026年7月20日" in text and "2026年8月3日" in text
    assert "镇（街道）审批" in text and "重特大疾病" in text and "未公示" in text
    # the raw column names are no longer headings
    for raw in ('<th scope="col">case_id', "amount_fen</th>", "approved_on</th>"):
        assert raw not in text
