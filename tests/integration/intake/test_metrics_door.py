"""`/metrics` on the public HTTP ports — intake's API, the casebook's reads, the finance
dashboard — answers loopback (Prometheus on the same machine, as the local stack runs it)
or a metrics token, and nobody else (issue 13, item 9). Each is a real server listening
on every address; "the network" is this machine's own non-loopback address."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.local import stack as local_stack
from services.casebook.adapters.http import create_app as casebook_app
from services.casebook.settings import CasebookSettings
from services.intake.app import create_app
from services.ledger.adapters.metrics import LedgerMetrics
from services.ledger.web.app import build_app as ledger_app
from services.ledger.web.settings import DashboardSettings
from tests.conftest import need_tool
from tests.integration.intake.conftest import SERVICE_HASH, settings_for
from tests.integration.servers import free_port, outside_address, serve_uvicorn
from tests.unit.intake.people import token_table

pytestmark = pytest.mark.integration

METRICS_TOKEN = "prometheus-scrape-token-for-tests"
METRICS_HASH = hashlib.sha256(METRICS_TOKEN.encode()).hexdigest()


@pytest.fixture(scope="module")
def outside() -> str:
    address = outside_address()
    if address is None:
        need_tool("an address other than loopback, to ask from outside this machine")
    return address


@pytest.fixture(scope="module")
def ports(stack: local_stack.StackInfo, read_database: str) -> Iterator[dict[str, int]]:
    """intake, the casebook's reads and the dashboard, each on 0.0.0.0."""
    servers = []
    intake_url, srv, thread = serve_uvicorn(
        create_app(
            settings_for(
                stack.kafka_bootstrap, "test.intake.metrics", metrics_token_hashes=METRICS_HASH
            ),
            tokens=token_table(),
        ),
        host="0.0.0.0",
    )
    servers.append((srv, thread))
    casebook_url, srv, thread = serve_uvicorn(
        casebook_app(
            CasebookSettings(
                database_url=read_database,
                casebook_token_hashes=SERVICE_HASH,
                metrics_token_hashes=METRICS_HASH,
            )
        ),
        host="0.0.0.0",
    )
    servers.append((srv, thread))
    dashboard_port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(
        ledger_app(
            DashboardSettings(
                database_url=read_database,
                dashboard_token_hashes=f"service:{SERVICE_HASH}",
                metrics_token_hashes=METRICS_HASH,
                kafka_bootstrap="",
                dashboard_verify_interval_s=3600,
            ),
            LedgerMetrics(CollectorRegistry()),
        )
    )
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "0.0.0.0", dashboard_port).start())
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    try:
        yield {
            "intake": int(intake_url.rsplit(":", 1)[1]),
            "casebook reads": int(casebook_url.rsplit(":", 1)[1]),
            "dashboard": dashboard_port,
        }
    finally:
        for srv, thread in servers:
            srv.should_exit = True
            thread.join(10)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


SERVICES = ["intake", "casebook reads", "dashboard"]


@pytest.mark.parametrize("service", SERVICES)
async def test_metrics_are_not_for_the_network(
    service: str, ports: dict[str, int], outside: str
) -> None:
    port = ports[service]
    async with httpx.AsyncClient(timeout=10, follow_redirects=True) as http:
        from_outside = await http.get(f"http://{outside}:{port}/metrics")
        assert from_outside.status_code == 404, from_outside.text[:200]
        assert "python_info" not in from_outside.text and "relief_" not in from_outside.text
        wrong = await http.get(
            f"http://{outside}:{port}/metrics", headers={"Authorization": "Bearer guess"}
        )
        assert wrong.status_code == 404
        # a proxy on this machine forwarding the network's request is not loopback
        proxied = await http.get(
            f"http://127.0.0.1:{port}/metrics", headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert proxied.status_code == 404
        # Prometheus on another machine, with the scrape token
        scraped = await http.get(
            f"http://{outside}:{port}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        )
        assert scraped.status_code == 200 and "# TYPE" in scraped.text
        # Prometheus on this machine (the local stack's)
        local = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert local.status_code == 200 and "# TYPE" in local.text
