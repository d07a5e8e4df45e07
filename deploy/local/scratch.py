"""The whole service as processes on the real Kafka and PostgreSQL, on topics, a database
and ports of its own, as `./run up` starts it: ledger, casebook (consumer and reads), the
emergency processor and its clock, the dashboard, intake and the console. The whole-stack
tests run on it, and so does the end-to-end benchmark (more partitions, workers, intake
instances and ledger shards); everything it made is removed when it ends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas.towns import load_county

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
# each further processor worker joins the group with a rebalance of its own, and its
# standby replicas restore from the changelogs
START_TIMEOUT_PER_WORKER_S = 45.0
PRINCIPALS: dict[str, tuple[str, str, str | None]] = {
    "bureau": ("emergency_bureau", "桓台县应急管理局", None),
    "qifeng": ("town", "起凤镇人民政府", "370321101"),
    "tianzhuang": ("town", "田庄镇人民政府", "370321102"),
    "civil_affairs": ("civil_affairs", "桓台县民政局", None),
    "finance": ("finance", "桓台县财政局", None),
    "department": ("department", "县医疗保障局", None),
}


@dataclass(frozen=True)
class Shape:
    """How big: partitions of every topic, processor workers, intake instances (one port,
    SO_REUSEPORT), ledger and casebook consumers (each sharded by partition)."""

    partitions: int = 2
    workers: int = 1
    intakes: int = 1
    ledgers: int = 1
    casebooks: int = 1
    console: bool = True
    name: str = "console"  # topics test.<name>.*, database <name>_*


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
    names: list[str] = field(default_factory=list)  # each process's program, as procs
    topics: dict[str, str] = field(default_factory=dict)
    database: str = ""  # the service role's URL
    owner_database: str = ""
    app_id: str = ""  # the processor's consumer group
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _processor_committed(url: str) -> bool:
    try:
        body = httpx.get(url, timeout=2).json()  # 503 while behind: its body says so
    except (httpx.HTTPError, ValueError):
        return False
    processor = body.get("processor") or {}
    return bool(processor.get("has_committed_offsets")) and processor.get("lag") == 0


class StackFailed(RuntimeError):
    """A process of the stack exited, or did not get ready in time."""


def _check_alive(running: Running, deadline: float, what: str) -> None:
    dead = [p.args for p in running.procs if p.poll() is not None]
    if dead:
        raise StackFailed(f"exited: {dead}; logs in {running.logs}")
    if time.monotonic() >= deadline:
        raise StackFailed(f"{what} in time; logs in {running.logs}")


@contextmanager
def whole_stack(
    stack: local_stack.StackInfo, tmp: Path, shape: Shape | None = None
) -> Iterator[Running]:
    shape = shape or Shape()
    unique = uuid.uuid4().hex[:10]
    db = f"{shape.name}_{unique}"
    topics = {
        k: f"test.{shape.name}.{k}.{unique}"
        for k in ("intake", "decisions", "postings", "rejected", "claims")
    }
    in_thread(lambda: asyncio.run(_create_db(stack, db)))
    # replicated as the stack's own topics are: 3 and min.insync.replicas 2 on a cluster
    rf, isr = local_stack.replication(len(stack.kafka_bootstrap.split(",")))
    replicated = {"min.insync.replicas": str(isr)}
    in_thread(
        lambda: asyncio.run(
            ensure_topics(
                stack.kafka_bootstrap,
                partitions=shape.partitions,
                replication_factor=rf,
                names={
                    topics["intake"]: {"message.timestamp.type": "LogAppendTime", **replicated},
                    topics["decisions"]: replicated,
                    topics["postings"]: replicated,
                    topics["rejected"]: replicated,
                },
            )
        )
    )
    in_thread(  # P6 across towns: the county's claims topic has one partition
        lambda: asyncio.run(
            ensure_topics(
                stack.kafka_bootstrap,
                partitions=1,
                replication_factor=rf,
                names={topics["claims"]: {"message.timestamp.type": "LogAppendTime", **replicated}},
            )
        )
    )
    principals = dict(PRINCIPALS)
    for town in load_county().towns:  # a clerk's token in every town of the county
        office = "办事处" if town.name_zh.endswith("街道") else "人民政府"
        principals.setdefault(f"town-{town.code}", ("town", town.name_zh + office, town.code))
    tokens = {name: f"{name}-{uuid.uuid4().hex}" for name in principals}
    lines = []
    for name, (role, org, town_code) in principals.items():
        digest = hashlib.sha256(tokens[name].encode()).hexdigest()
        lines += ["[[tokens]]", f'sha256 = "{digest}"', f'role = "{role}"', f'org = "{org}"']
        lines += [f'town = "{town_code}"'] if town_code else []
    (tmp / "tokens.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    service = uuid.uuid4().hex
    service_hash = hashlib.sha256(service.encode()).hexdigest()
    finance_hash = hashlib.sha256(tokens["finance"].encode()).hexdigest()
    ports = {k: free_port() for k in ("casebook", "dashboard", "intake", "console")}
    url = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RELIEF_EMERGENCY_CHANGELOG_REPLICATION": str(rf),
        "RELIEF_DATABASE_URL": _on(stack.app_url, db),
        "RELIEF_DATABASE_OWNER_URL": _on(stack.owner_url, db),
        "RELIEF_INTAKE_TOPIC": topics["intake"],
        "RELIEF_DECISIONS_TOPIC": topics["decisions"],
        "RELIEF_POSTINGS_TOPIC": topics["postings"],
        "RELIEF_LEDGER_TOPIC": topics["postings"],
        "RELIEF_REJECTED_TOPIC": topics["rejected"],
        "RELIEF_CLAIMS_TOPIC": topics["claims"],
        "RELIEF_CLAIMS_APP_ID": f"test-{shape.name}-claims-{unique}",
        "RELIEF_CLAIMS_METRICS_PORT": "0",
        "RELIEF_PARTITIONS": str(shape.partitions),
        "RELIEF_EMERGENCY_APP_ID": f"test-{shape.name}-{unique}",
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
        # a test watches the page follow the cases within a second; a benchmark (no
        # console) asks the casebook as production does
        **({"RELIEF_DASHBOARD_OPEN_CASES_INTERVAL_S": "0.5"} if shape.console else {}),
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
    programs: dict[str, tuple[list[str], dict[str, str]]] = {}
    for k in range(shape.ledgers):
        shard = {"RELIEF_LEDGER_SHARD": f"{k}/{shape.ledgers}"} if shape.ledgers > 1 else {}
        programs[f"ledger-{k}"] = (["services.ledger", "run"], shard)
    for k in range(shape.casebooks):
        shard = {"RELIEF_CASEBOOK_SHARD": f"{k}/{shape.casebooks}"} if shape.casebooks > 1 else {}
        programs[f"casebook-{k}" if shape.casebooks > 1 else "casebook"] = (
            ["services.casebook", "run"],
            shard,
        )
    programs["casereads"] = (["services.casebook", "serve", "--port", str(ports["casebook"])], {})
    for k in range(shape.workers):
        programs[f"emergency-{k}"] = (
            ["services.emergency", "worker", "--loglevel", "warn"],
            {
                "RELIEF_EMERGENCY_DATA_DIR": str(tmp / f"emergency-{k}"),
                "RELIEF_EMERGENCY_WEB_PORT": str(free_port()),
            },
        )
    # P6 across towns: the county's claims stage, before the towns
    programs["claims"] = (
        ["services.emergency", "claims", "--loglevel", "warn"],
        {"RELIEF_EMERGENCY_DATA_DIR": str(tmp / "claims")},
    )
    programs["clock"] = (["services.emergency", "clock"], {})
    programs["dashboard"] = (["services.ledger", "serve", "--port", str(ports["dashboard"])], {})
    intake_args = [
        "services.intake",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["intake"]),
    ]
    for k in range(shape.intakes):
        reuse = ["--reuse-port"] if shape.intakes > 1 else []
        programs[f"intake-{k}"] = (intake_args + reuse, {})
    if shape.console:
        programs["console"] = (
            ["services.console", "serve", "--port", str(ports["console"])],
            {},
        )
    running = Running(
        url["console"],
        url["intake"],
        url["casebook"],
        url["dashboard"],
        tokens,
        service,
        logs,
        topics=topics,
        database=env["RELIEF_DATABASE_URL"],
        owner_database=env["RELIEF_DATABASE_OWNER_URL"],
        app_id=env["RELIEF_EMERGENCY_APP_ID"],
        env=env,
    )
    try:
        for name, (args, extra) in programs.items():
            out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it
            running.names.append(name)
            running.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", *args],
                    cwd=ROOT,
                    env={**env, **extra},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = (
            time.monotonic() + START_TIMEOUT_S + START_TIMEOUT_PER_WORKER_S * (shape.workers - 1)
        )
        probes = [
            f"{url['intake']}/livez",
            f"{url['casebook']}/healthz",
            f"{url['dashboard']}/healthz",
        ]
        probes += [f"{url['console']}/livez"] if shape.console else []
        for probe in probes:
            while not _answers(probe):
                _check_alive(running, deadline, f"{probe} never answered")
                time.sleep(0.3)
        # the processor has joined its group and is deciding (it committed the clock's
        # ticks), so the first request does not wait on the processor's start-up
        while not _processor_committed(f"{url['intake']}/healthz"):
            _check_alive(running, deadline, "the processor never committed")
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
