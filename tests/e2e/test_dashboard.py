"""The finance dashboard in a real browser: headless Chromium opens the page, a posting
lands in the ledger, and the town's bar drops without a reload (server-sent events).
Screenshots go to test-artifacts/.

Chromium is driven through its DevTools protocol over a WebSocket (aiohttp), so no
browser-automation package is needed; Debian's `chromium` package provides the browser.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.local import stack as local_stack
from tests.conftest import need_tool
from tests.integration.ledger.conftest import ledger_database
from tests.integration.metrics.conftest import CASEBOOK_TOKEN, Story, casebook_side
from tests.unit.emergency.builders import QIFENG

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "finance-wall-screen-token"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def chromium() -> str:
    for candidate in (
        os.environ.get("RELIEF_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    need_tool("chromium not installed (Debian: apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Browser:
    """Just enough of the Chrome DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads((await asyncio.wait_for(self.ws.receive(), 30)).data)
            if msg.get("id") == n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    async def js(self, expression: str) -> Any:
        got = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return got["result"].get("value")

    async def until(self, expression: str, timeout_s: float = 20) -> Any:
        for _ in range(int(timeout_s * 10)):
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true in the page: {expression}")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        shot = await self.call("Page.captureScreenshot", format="png")
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture
async def story(stack: local_stack.StackInfo) -> AsyncIterator[Story]:
    async with ledger_database(stack) as db, casebook_side(stack) as casebook:
        s = Story(db, datetime.now(UTC).replace(microsecond=0), casebook)
        await s.opening()
        yield s


@pytest.fixture
def dashboard(story: Story, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RELIEF_DATABASE_URL": story.db.app_url,
        "RELIEF_DASHBOARD_TOKEN_HASHES": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "RELIEF_DASHBOARD_INTERVAL_S": "0.5",
        "RELIEF_DASHBOARD_OPEN_CASES_INTERVAL_S": "0.5",  # the page follows the cases live
        # open cases come from the casebook
        "RELIEF_CASEBOOK_URL": story.casebook.url,
        "RELIEF_CASEBOOK_TOKEN": CASEBOOK_TOKEN,
        "RELIEF_KAFKA_BOOTSTRAP": "",  # the page needs no Kafka
    }
    log = open(tmp_path / "dashboard.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ledger", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        for _ in range(300):
            if active.exists() and active.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                b = Browser(ws)
                await b.call("Page.enable")
                await b.call("Runtime.enable")
                yield b
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_a_towns_bar_drops_live_when_a_posting_lands(
    story: Story, dashboard: str, browser: Browser
) -> None:
    # unpaid past its 24 hours, and the clock's tick has judged it: breached
    await story.apply(story.advance("wall-1", 100_000, hours_ago=25), story.tick())
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{dashboard}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    bar = f"document.getElementById('bar-{QIFENG}')"
    # the page without a session goes to the sign-in form; the token goes into a cookie
    await browser.call("Page.navigate", url=f"{dashboard}/")
    await browser.until("location.pathname === '/signin' && !!document.getElementById('token')")
    await browser.js(
        f"document.getElementById('token').value = {TOKEN!r};"
        "document.getElementById('login').submit(); true"
    )
    await browser.until(f"{bar} && {bar}.dataset.availableFen === '4900000'")
    width_before = await browser.js(f"{bar}.getBoundingClientRect().width")
    # no address held the token, the page's script cannot read it; the page is live
    assert await browser.js("location.href") == f"{dashboard}/"
    assert "relief_dashboard" not in await browser.js("document.cookie")
    await browser.until("document.getElementById('status').dataset.state === 'live'")
    assert await browser.js("document.querySelector('#cases tr.breached td').textContent") == (
        "wall-1"
    )
    await browser.js("window.__same_page = 'not reloaded'")
    await browser.screenshot("dashboard-before.png")

    # four more advances of 1,000 yuan reach the ledger: 45,000 yuan left
    await story.apply(*(story.advance(f"wall-{n}", 100_000, hours_ago=0.2) for n in range(2, 6)))
    await browser.until(f"{bar}.dataset.availableFen === '4500000'")
    await asyncio.sleep(0.8)  # the bar's width transition
    width_after = await browser.js(f"{bar}.getBoundingClientRect().width")
    assert width_after < width_before
    assert abs(width_after / width_before - 45_000 / 49_000) < 0.02
    assert await browser.js("window.__same_page") == "not reloaded"
    assert await browser.js("document.getElementById('cases').children.length") == 5
    text = await browser.js("document.body.innerText")
    assert "45,000.00" in text and "起凤镇" in text and "Qifeng" in text
    shot = await browser.screenshot("dashboard.png")
    assert shot.stat().st_size > 10_000


async def test_without_a_token_the_page_asks_for_one(dashboard: str, browser: Browser) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{dashboard}/") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    await browser.call("Page.navigate", url=f"{dashboard}/")
    await browser.until("location.pathname === '/signin' && !!document.getElementById('token')")
    await browser.js(
        "document.getElementById('token').value = 'wrong';"
        "document.getElementById('login').submit(); true"
    )
    await browser.until(
        "!!document.getElementById('signin-error')"
        " && !document.getElementById('signin-error').hidden"
    )
    assert await browser.js("document.getElementById('board')") is None
