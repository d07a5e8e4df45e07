"""The whole service as processes on the real Kafka and PostgreSQL, each on its own
topics, database and ports, as `./run up` starts it: ledger, casebook (consumer and
reads), the emergency processor and its clock, the dashboard, intake and the console."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from tests.integration.servers import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
START_TIMEOUT_S = 90.0
PRINCIPALS: dict[str, tuple[str, str, str | None]] = {
    "bureau": ("emergency_bureau", "桓台县应急管理局", None),
    "qifeng": ("town", "起凤镇人民政府", "370321101"),
    "tianzhuang": ("town", "田庄镇人民政府", "370321102"),
    "civil_affairs": ("civil_affairs", "桓台县民政局", None),
    "finance": ("finance", "桓台县财政局", None),
    "department": ("department", "县医疗保障局", None),
}


@dataclass
class Running:
    console: str
    intake: str
    casebook: str
    dashboard: str
    tokens: dict[str, str]
    service_token: str
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def in_thread(work: Callable[[], T]) -> T:
    """`work` in a thread of its own: pytest-asyncio may keep an event loop running in
    this one, where neither asyncio.run nor Playwright's sync API may run."""
    out: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def _on(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


async def _create_db(stack: local_stack.StackInfo, name: str) -> None:
    admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    finally:
        await admin.close()


async def _drop_db(stack: local_stack.StackInfo, name: str) -> None:
    admin = await asyncpg.connect(_on(stack.admin_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _processor_committed(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return False
    processor = body.get("processor") or {}
    return bool(processor.get("has_committed_offsets")) and processor.get("lag") == 0


@contextmanager
def whole_stack(stack: local_stack.StackInfo, tmp: Path) -> Iterator[Running]:
    unique = uuid.uuid4().hex[:10]
    db = f"console_{unique}"
    topics = {
        k: f"test.console.{k}.{unique}"
        for k in ("intake", "decisions", "postings", "rejected", "claims")
    }
    in_thread(lambda: asyncio.run(_create_db(stack, db)))
    in_thread(
        lambda: asyncio.run(
            ensure_topics(
                stack.kafka_bootstrap,
                partitions=PARTITIONS,
                names={
                    topics["intake"]: {"message.timestamp.type": "LogAppendTime"},
                    topics["decisions"]: {},
                    topics["postings"]: {},
                    topics["rejected"]: {},
                },
            )
        )
    )
    in_thread(  # P6 across towns: the county's claims topic has one partition
        lambda: asyncio.run(
            ensure_topics(
                stack.kafka_bootstrap,
                partitions=1,
                names={topics["claims"]: {"message.timestamp.type": "LogAppendTime"}},
            )
        )
    )
    tokens = {name: f"{name}-{uuid.uuid4().hex}" for name in PRINCIPALS}
    lines = []
    for name, (role, org, town) in PRINCIPALS.items():
        digest = hashlib.sha256(tokens[name].encode()).hexdigest()
        lines += ["[[tokens]]", f'sha256 = "{digest}"', f'role = "{role}"', f'org = "{org}"']
        lines += [f'town = "{town}"'] if town else []
    (tmp / "tokens.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    service = uuid.uuid4().hex
    service_hash = hashlib.sha256(service.encode()).hexdigest()
    finance_hash = hashlib.sha256(tokens["finance"].encode()).hexdigest()
    ports = {k: free_port() for k in ("casebook", "dashboard", "intake", "console", "web")}
    url = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RELIEF_DATABASE_URL": _on(stack.app_url, db),
        "RELIEF_DATABASE_OWNER_URL": _on(stack.owner_url, db),
        "RELIEF_INTAKE_TOPIC": topics["intake"],
        "RELIEF_DECISIONS_TOPIC": topics["decisions"],
        "RELIEF_POSTINGS_TOPIC": topics["postings"],
        "RELIEF_LEDGER_TOPIC": topics["postings"],
        "RELIEF_REJECTED_TOPIC": topics["rejected"],
        "RELIEF_CLAIMS_TOPIC": topics["claims"],
        "RELIEF_CLAIMS_APP_ID": f"test-console-claims-{unique}",
        "RELIEF_PARTITIONS": str(PARTITIONS),
        "RELIEF_EMERGENCY_APP_ID": f"test-console-{unique}",
        "RELIEF_EMERGENCY_DATA_DIR": str(tmp / "emergency"),
        "RELIEF_EMERGENCY_WEB_PORT": str(ports["web"]),
        "RELIEF_EMERGENCY_METRICS_PORT": "0",
        "RELIEF_LEDGER_METRICS_PORT": "0",
        "RELIEF_CASEBOOK_METRICS_PORT": "0",
        "RELIEF_CLOCK_INTERVAL_S": "5",
        "RELIEF_INTAKE_TOKENS_FILE": str(tmp / "tokens.toml"),
        "RELIEF_CASEBOOK_URL": url["casebook"],
        "RELIEF_CASEBOOK_TOKEN": service,
        "RELIEF_CASEBOOK_TOKEN_HASHES": service_hash,
        "RELIEF_CASEBOOK_PROGRESS_INTERVAL_S": "0.5",
        "RELIEF_LEDGER_URL": url["dashboard"],
        "RELIEF_LEDGER_TOKEN": service,
        "RELIEF_DASHBOARD_TOKEN_HASHES": f"finance:{finance_hash},service:{service_hash}",
        "RELIEF_DASHBOARD_INTERVAL_S": "0.5",
        "RELIEF_CONSOLE_INTAKE_URL": url["intake"],
        "RELIEF_CONSOLE_DASHBOARD_URL": url["dashboard"],
        "PYTHONUNBUFFERED": "1",
    }
    logs = tmp / "logs"
    logs.mkdir()
    for step in (["services.ledger", "migrate"], ["services.casebook", "migrate"]):
        subprocess.run(
            [sys.executable, "-m", *step], env=env, cwd=ROOT, check=True, capture_output=True
        )
    programs = {
        "ledger": ["services.ledger", "run"],
        "casebook": ["services.casebook", "run"],
        "casereads": ["services.casebook", "serve", "--port", str(ports["casebook"])],
        "emergency": ["services.emergency", "worker", "--loglevel", "warn"],
        "claims": ["services.emergency", "claims", "--loglevel", "warn"],
        "clock": ["services.emergency", "clock"],
        "dashboard": ["services.ledger", "serve", "--port", str(ports["dashboard"])],
        "intake": [
            "services.intake",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["intake"]),
        ],
        "console": ["services.console", "serve", "--port", str(ports["console"])],
    }
    running = Running(
        url["console"], url["intake"], url["casebook"], url["dashboard"], tokens, service, logs
    )
    try:
        for name, args in programs.items():
            out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it
            running.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", *args],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        for probe in (
            f"{url['console']}/livez",
            f"{url['intake']}/livez",
            f"{url['casebook']}/healthz",
            f"{url['dashboard']}/healthz",
        ):
            while not _answers(probe):
                dead = [p.args for p in running.procs if p.poll() is not None]
                assert not dead, f"exited: {dead}; logs in {logs}"
                assert time.monotonic() < deadline, f"{probe} never answered; logs in {logs}"
                time.sleep(0.3)
        # the processor has joined its group and is deciding (it committed the clock's
        # ticks), so the story's first page does not wait on the processor's start-up
        while not _processor_committed(f"{url['intake']}/healthz"):
            dead = [p.args for p in running.procs if p.poll() is not None]
            assert not dead, f"exited: {dead}; logs in {logs}"
            assert time.monotonic() < deadline, f"the processor never committed; logs in {logs}"
            time.sleep(0.5)
        yield running
    finally:
        for p in running.procs:
            p.terminate()
        for p in running.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        in_thread(lambda: asyncio.run(_drop_db(stack, db)))
