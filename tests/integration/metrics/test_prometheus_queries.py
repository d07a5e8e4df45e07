"""The real Prometheus scrapes the processor's and the ledger's /metrics; every Grafana
panel query and every alert rule is evaluated through its HTTP API and returns data — no
typo'd metric name survives."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, start_http_server

from deploy.grafana import build as grafana
from deploy.local import stack as local_stack
from deploy.prometheus import tools
from relief_platform.topics import ensure_topics
from schemas.intake import ClockTick
from services.casebook.app import DisclosureWatcher, RunMetrics
from services.casebook.settings import CasebookSettings
from services.emergency.adapters.metrics import ProcessorMetrics
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.web.app import build_app
from services.ledger.web.settings import DashboardSettings
from tests.conftest import need_tool
from tests.integration.metrics.conftest import Casebook, Story
from tests.unit.emergency.builders import RULES, tick

pytestmark = pytest.mark.integration

SCRAPE_S = 1
PANEL_SUBSTITUTIONS = {"$town": ".*", "$__rate_interval": "30s"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def prometheus_bin() -> Path:
    try:
        return tools.prometheus()
    except tools.ToolMissing as exc:
        need_tool(str(exc))


class Processor:
    """The processor's metrics fed with the real rules' outputs for the story's town."""

    def __init__(self, story: Story) -> None:
        self.story = story
        self.metrics = ProcessorMetrics(CollectorRegistry())
        self.metrics.init_towns(RULES.county.codes())
        self.seen = 0

    async def apply(self, *records: object) -> None:
        await self.story.apply(*records)
        town = self.story.town
        assert town.state is not None
        # a tick's broker time by its partition, as the engine reports it (one partition here)
        stamps = [r.recorded_at or r.occurred_at for r in records if isinstance(r, ClockTick)]
        ticks = {0: stamps[-1]} if stamps else {}
        self.metrics.observe(
            town.outputs[self.seen :], {town.code: town.book()}, consumed=len(records), ticks=ticks
        )
        self.seen = len(town.outputs)


@pytest.fixture
def processor(story: Story) -> Iterator[Processor]:
    p = Processor(story)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=p.metrics.registry)
    p.port = port  # type: ignore[attr-defined]
    yield p
    server.shutdown()
    thread.join(5)


@pytest.fixture
async def ledger_web(
    story: Story, stack: local_stack.StackInfo, unique: str
) -> AsyncIterator[tuple[int, dict[str, str]]]:
    streams = {
        s: f"test.metrics.{s}.{unique}" for s in ("intake", "decisions", "postings", "rejected")
    }
    await ensure_topics(
        stack.kafka_bootstrap, partitions=2, names={t: {} for t in streams.values()}
    )
    settings = DashboardSettings(
        database_url=story.db.app_url,
        dashboard_token_hashes="",
        dashboard_interval_s=0.2,
        dashboard_verify_interval_s=1,
        dashboard_lag_interval_s=0.5,
        kafka_bootstrap=stack.kafka_bootstrap,
        emergency_app_id=f"test-metrics-{unique}",
        intake_topic=streams["intake"],
        decisions_topic=streams["decisions"],
        ledger_topic=streams["postings"],
        rejected_topic=streams["rejected"],
    )
    runner = web.AppRunner(build_app(settings, LedgerMetrics(CollectorRegistry())))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, streams
    finally:
        await runner.cleanup()


@pytest.fixture
async def casebook_metrics(casebook: Casebook) -> AsyncIterator[int]:
    """The casebook consumer's P7 gauges over the story's casebook, on /metrics."""
    metrics = RunMetrics(CollectorRegistry())
    await DisclosureWatcher(casebook.store.pool, metrics, CasebookSettings()).step()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    yield port
    server.shutdown()
    thread.join(5)


@pytest.fixture
def prometheus(
    prometheus_bin: Path, processor: Processor, ledger_web: tuple[int, dict[str, str]],
    casebook_metrics: int, tmp_path: Path,
) -> Iterator[str]:  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": "1s"},
                "rule_files": [str(tools.RULES)],
                "scrape_configs": [
                    {
                        "job_name": "relief-emergency",
                        "static_configs": [{"targets": [f"127.0.0.1:{processor.port}"]}],  # type: ignore[attr-defined]
                    },
                    {
                        "job_name": "relief-ledger",
                        "static_configs": [{"targets": [f"127.0.0.1:{ledger_web[0]}"]}],
                    },
                    {
                        "job_name": "relief-casebook",
                        "static_configs": [{"targets": [f"127.0.0.1:{casebook_metrics}"]}],
                    },
                ],
            }
        )
    )
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [
            str(prometheus_bin),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> list[Any]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as r:
        body = await r.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def wait_for(http: aiohttp.ClientSession, base: str, expr: str, timeout_s: float) -> None:
    for _ in range(int(timeout_s * 5)):
        try:
            if await query(http, base, expr):
                return
        except (aiohttp.ClientError, AssertionError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{expr} never returned data")


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for name, board in grafana.build().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for k, v in PANEL_SUBSTITUTIONS.items():
                    expr = expr.replace(k, v)
                out.append((f"{name}: {panel['title']}", expr))
    return out


def rule_metric_names() -> dict[str, set[str]]:
    """alert name -> the metric names its expression reads"""
    names: dict[str, set[str]] = {}
    current = None
    for line in tools.RULES.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\s*- alert: (\w+)", line):
            current = m.group(1)
            names[current] = set()
        elif current and (line.strip().startswith(("expr:", "or ", "sum", "deriv"))):
            found = re.findall(r"\b(relief_[a-z_]+|up)\b(?=[{\[\s)]|$)", line)
            names[current].update(found)
    return names


async def test_every_panel_and_alert_reads_metrics_that_exist(
    story: Story, processor: Processor, prometheus: str, ledger_web: tuple[int, dict[str, str]],
    stack: local_stack.StackInfo,
) -> None:  # fmt: skip
    now = story.now
    # before the first scrape: Qifeng's flood, three advances, one paid, one refused
    await processor.apply(
        story.advance("p-1", 100_000, hours_ago=23),
        story.advance("p-2", 100_000, hours_ago=3),
        story.advance("p-3", 100_000, hours_ago=1),
        story.payment("p-3", 100_000, hours_ago=0.5),
    )
    async with aiohttp.ClientSession() as http:
        await wait_for(http, prometheus, 'up{job="relief-ledger"} == 1', 30)
        await wait_for(http, prometheus, 'up{job="relief-emergency"} == 1', 30)
        await wait_for(http, prometheus, "relief_consumer_lag", 30)
        # after it: more of the story, so rates and histograms move between scrapes
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait(ledger_web[1]["postings"], b"{}", partition=n % 2)
        finally:
            await producer.stop()
        await processor.apply(
            story.payment("p-2", 100_000, hours_ago=0.1),
            story.advance("p-4", 100_000, hours_ago=0.1),
            tick(now - timedelta(minutes=1)),  # p-1 is within 2 h of its deadline
        )
        await asyncio.sleep(4 * SCRAPE_S + 1)
        await wait_for(http, prometheus, "relief_urgent_cases_due_soon > 0", 15)

        empty = []
        for where, expr in panel_queries():
            if not await query(http, prometheus, expr):
                empty.append(f"{where}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        missing = []
        for alert, metric_names in rule_metric_names().items():
            assert metric_names, f"no metric found in {alert}'s expression"
            for metric in metric_names:
                if not await query(http, prometheus, f'group({{__name__="{metric}"}})'):
                    missing.append(f"{alert}: {metric}")
        assert not missing, "alert rules read metrics nobody exports:\n" + "\n".join(missing)

        async with http.get(f"{prometheus}/api/v1/rules") as r:
            rules = (await r.json())["data"]["groups"]
        evaluated = [rule for g in rules for rule in g["rules"]]
        assert len(evaluated) == len(rule_metric_names())  # every alert of the rules file
        assert all(rule["health"] == "ok" for rule in evaluated), evaluated
        # the story's near-deadline case fires its alert (pending: it has no `for`)
        await wait_for(http, prometheus, 'ALERTS{alertname="ReliefDeadlineNear"}', 15)
        # the variable of the finance dashboard lists the towns
        assert await query(http, prometheus, "relief_reserve_size_yuan")


def test_the_provisioned_dashboards_are_built_from_build_py() -> None:
    for name, board in grafana.build().items():
        on_disk = (grafana.DASHBOARDS / name).read_text(encoding="utf-8")
        assert on_disk == grafana.render(board), f"run python -m deploy.grafana.build ({name})"
