"""The dashboard's read side against the real PostgreSQL: tokens, the snapshot, the
server-sent events and the ledger's /metrics, after postings the real rules produced."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from schemas.envelope import to_cst
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.web.app import build_app
from services.ledger.web.settings import DashboardSettings
from tests.integration.metrics.conftest import CASEBOOK_TOKEN, Story
from tests.unit.emergency.builders import QIFENG

pytestmark = pytest.mark.integration

FINANCE_TOKEN = "finance-token-for-tests"
COUNTY_TOKEN = "county-token-for-tests"


def settings_for(app_url: str, casebook_url: str = "") -> DashboardSettings:
    return DashboardSettings(
        database_url=app_url,
        casebook_url=casebook_url,
        casebook_token=CASEBOOK_TOKEN,
        dashboard_token_hashes=",".join(
            [
                hashlib.sha256(FINANCE_TOKEN.encode()).hexdigest(),
                "county:" + hashlib.sha256(COUNTY_TOKEN.encode()).hexdigest(),
            ]
        ),
        dashboard_interval_s=0.1,
        dashboard_open_cases_interval_s=0.1,
        dashboard_verify_interval_s=0.5,
        kafka_bootstrap="",  # lag is tested on its own
    )


@pytest.fixture
async def client(story: Story) -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(
        settings_for(story.db.app_url, story.casebook.url), LedgerMetrics(CollectorRegistry())
    )
    async with TestClient(TestServer(app)) as c:
        for _ in range(100):
            if (await c.get("/healthz")).status == 200:
                break
            await asyncio.sleep(0.05)
        yield c


def auth(token: str = FINANCE_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def snapshot(c: TestClient[Any, Any]) -> dict[str, Any]:
    r = await c.get("/api/snapshot", headers=auth())
    assert r.status == 200
    body: dict[str, Any] = await r.json()
    data: dict[str, Any] = body["data"]
    return data


def town(data: dict[str, Any], code: str = QIFENG) -> dict[str, Any]:
    return next(t for t in data["towns"] if t["code"] == code)


async def test_without_a_finance_or_county_token_nothing_is_shown(
    client: TestClient[Any, Any],
) -> None:
    assert (await client.get("/api/snapshot")).status == 401
    assert (await client.get("/api/snapshot", headers=auth("guess"))).status == 401
    assert (await client.get("/events")).status == 401
    assert (await client.get("/events", headers=auth("guess"))).status == 401
    assert (await client.get("/api/snapshot", headers=auth(COUNTY_TOKEN))).status == 200
    page = await client.get("/")
    assert page.status == 200
    assert "储备金" in await page.text() and "Town reserves" in await page.text()


async def test_the_snapshot_shows_reserves_open_cases_today_and_the_chain(
    story: Story, client: TestClient[Any, Any]
) -> None:
    await story.apply(
        story.advance("case-a", 100_000, hours_ago=26),  # unpaid past 24 h: a tick breaches it
        story.advance("case-b", 100_000, hours_ago=2),
        story.advance("case-c", 100_000, hours_ago=1),
        story.payment("case-c", 100_000, hours_ago=0.5),
        story.tick(),
    )
    await asyncio.sleep(0.8)  # a refresh and a verification
    data = await snapshot(client)
    q = town(data)
    assert q["size"]["yuan"] == "50,000.00"
    assert q["available"]["fen"] == 4_700_000  # three advances of 1,000 yuan held
    assert q["held"]["fen"] == 200_000 and q["paid"]["fen"] == 100_000
    assert [c["case"] for c in data["open_cases"]] == ["case-a", "case-b"]
    assert [c["breached"] for c in data["open_cases"]] == [True, False]
    assert data["open_by_town"] == {QIFENG: {"open": 2, "breached": 1}}
    assert data["open_cases"][0]["amount"]["yuan"] == "1,000.00"

    # "today" is the day in Huantai (CST): shortly after midnight there, some of the
    # story's grants and its payment were yesterday's
    def today(hours_ago: float) -> bool:
        then = story.now - timedelta(hours=hours_ago)
        return to_cst(then).date() == to_cst(story.now).date()

    assert data["today"]["grants"]["count"] == sum(today(h) for h in (26, 2, 1))
    if today(0.5):
        assert data["today"]["payments"] == {"count": 1, "fen": 100_000, "yuan": "1,000.00"}
    else:
        assert data["today"]["payments"]["count"] == 0
    assert data["postings"][0]["kind"] == "payment_confirmed"
    assert data["head"]["hash"] == data["postings"][0]["hash"]
    assert data["entries"] == 5
    assert data["verification"]["ok"] is True
    # untouched towns show their full size and no figures of their own
    assert town(data, "370321001")["opened"] is False


async def _next_snapshot(events: ClientResponse) -> dict[str, Any]:
    event: list[str] = []
    while True:
        line = (await asyncio.wait_for(events.content.readline(), 10)).decode().rstrip("\n")
        if line:
            event.append(line)
            continue
        if any(x.startswith("event: snapshot") for x in event):
            data = next(x for x in event if x.startswith("data: "))[len("data: ") :]
            return json.loads(data)["data"]  # type: ignore[no-any-return]
        event = []


async def test_server_sent_events_push_a_new_snapshot_when_a_posting_lands(
    story: Story, client: TestClient[Any, Any]
) -> None:
    events = await client.get("/events", headers={"Cookie": f"relief_dashboard={FINANCE_TOKEN}"})
    assert events.status == 200
    assert events.headers["Content-Type"].startswith("text/event-stream")
    first = await _next_snapshot(events)
    assert town(first)["available"]["fen"] == 5_000_000
    await story.apply(story.advance("case-sse", 100_000, hours_ago=0.1))
    while True:  # a verification may push an unchanged picture first
        later = await _next_snapshot(events)
        if town(later)["available"]["fen"] != 5_000_000:
            break
    assert town(later)["available"]["fen"] == 4_900_000
    assert later["open_cases"][-1]["case"] == "case-sse"
    events.close()


async def test_metrics_reflect_the_book(story: Story, client: TestClient[Any, Any]) -> None:
    await story.apply(
        story.advance("m-1", 100_000, hours_ago=3),
        story.advance("m-2", 100_000, hours_ago=3),
        story.advance("m-3", 100_000, hours_ago=3),
    )
    await asyncio.sleep(0.8)
    text = await (await client.get("/metrics")).text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("relief_ledger_reserve_available_yuan", (("town", QIFENG),))] == 47_000.0
    assert samples[("relief_ledger_reserve_held_yuan", (("town", QIFENG),))] == 3_000.0
    assert samples[("relief_ledger_open_advances", (("town", QIFENG),))] == 3
    assert samples[("relief_ledger_open_advances_overdue", (("town", QIFENG),))] == 0
    assert samples[("relief_ledger_postings_total", (("kind", "advance_granted"),))] == 3
    assert samples[("relief_ledger_postings_total", (("kind", "reserve_funded"),))] == 1
    assert samples[("relief_ledger_verify_ok", ())] == 1
    assert samples[("relief_ledger_entries", ())] == 4
    count = samples[("relief_ledger_pg_transaction_seconds_count", (("operation", "snapshot"),))]
    assert count >= 1


async def test_a_token_never_rides_in_an_address_the_page_signs_in_for_a_cookie(
    client: TestClient[Any, Any],
) -> None:
    # a token in the query is not a credential: proxies, logs and history keep addresses
    assert (await client.get(f"/events?token={FINANCE_TOKEN}")).status == 401
    assert (await client.get(f"/api/snapshot?token={FINANCE_TOKEN}")).status == 401
    # the page without a session sends the person to the sign-in form
    form = await client.get("/signin")
    assert form.status == 200 and 'action="/signin"' in await form.text()
    assert "token" not in form.headers.get("Set-Cookie", "")

    wrong = await client.post("/signin", data={"token": "guess"}, allow_redirects=False)
    assert wrong.status == 401 and "Set-Cookie" not in wrong.headers
    assert "令牌无效" in await wrong.text()
    # another site cannot sign a browser in (nor out)
    foreign = await client.post(
        "/signin",
        data={"token": FINANCE_TOKEN},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert foreign.status == 403 and "Set-Cookie" not in foreign.headers

    signed = await client.post("/signin", data={"token": FINANCE_TOKEN}, allow_redirects=False)
    assert signed.status == 303 and signed.headers["Location"] == "/"
    cookie = signed.headers["Set-Cookie"]
    assert cookie.startswith(f"relief_dashboard={FINANCE_TOKEN};")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert any(f.startswith("max-age=") for f in flags)

    session = {"Cookie": f"relief_dashboard={FINANCE_TOKEN}"}
    events = await client.get("/events", headers=session)  # EventSource's every reconnect
    assert events.status == 200
    assert (await _next_snapshot(events))["towns"]
    events.close()
    assert (await client.get("/api/snapshot", headers=session)).status == 200
    # a write with the cookie from another site's page is refused; from ours it runs
    cross = await client.post("/api/verify", headers={**session, "Origin": "https://evil.example"})
    assert cross.status == 403
    ours = await client.post(
        "/api/verify", headers={**session, "Origin": str(client.make_url("")).rstrip("/")}
    )
    assert ours.status == 200 and (await ours.json())["ok"] is True

    out = await client.post("/signout", headers=session, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/signin"
    assert out.headers["Set-Cookie"].startswith('relief_dashboard="";')
