"""The fault suite's world: a Kafka cluster of three brokers and a PostgreSQL of its own
(other ports, a temporary state folder), so the suite's single broker is left alone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from schemas import decisions as d
from schemas.envelope import Record
from tests.integration.emergency.test_faults import feed
from tests.integration.emergency.test_worker import PARTITIONS, Env, consume_until, stop_processes

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY_DOC = ROOT / "docs" / "reliability.md"


def free_ports() -> dict[str, str]:
    """Ports for a cluster beside the suite's own broker and database, and beside another
    run of this suite on the same machine: six in a row for the brokers and their
    controllers, then one for PostgreSQL, all free."""
    for base in range(29_092, 39_092, 10):
        if all(_free(port) for port in range(base, base + 7)):
            return {
                "RELIEF_LOCAL_KAFKA_PORT": str(base),
                "RELIEF_LOCAL_KAFKA_CONTROLLER_PORT": str(base + 1),
                "RELIEF_LOCAL_PG_PORT": str(base + 6),
            }
    raise AssertionError("no seven free ports in a row between 29092 and 39092")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Cluster:
    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, **free_ports(), "RELIEF_STATE_DIR": str(state)}

    def up(self) -> None:
        done = subprocess.run(
            [sys.executable, "deploy/local/stack.py", "up", "--brokers", "3"],
            cwd=ROOT,
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"the cluster did not start:\n{done.stdout}\n{done.stderr}"

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "deploy/local/stack.py", "down"],
            cwd=ROOT,
            env=self.env,
            check=False,
            capture_output=True,
            timeout=120,
        )

    @property
    def bootstrap(self) -> str:
        first = int(self.env["RELIEF_LOCAL_KAFKA_PORT"])
        return ",".join(f"127.0.0.1:{first + 2 * i}" for i in range(3))

    def pid(self, node_id: int) -> int | None:
        return local_stack.read_pid(
            Path(self.env["RELIEF_STATE_DIR"]) / "kafka" / f"node-{node_id}" / "kafka.pid"
        )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    # not under pytest's temporary folders: another pytest run on the machine removes
    # all but its three newest, in use or not, and with them a running cluster's files
    state = Path(tempfile.mkdtemp(prefix="relief-faults-"))
    c = Cluster(state)
    try:
        c.up()
        yield c
    finally:
        c.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def env(cluster: Cluster, unique: str, tmp_path: Path) -> AsyncIterator[Env]:
    # one cluster for the suite: whatever a story stopped and did not start again is
    # started here (a no-op when every node and PostgreSQL are up)
    await asyncio.to_thread(cluster.up)
    e = Env(cluster.bootstrap, unique, tmp_path)
    e.vars["RELIEF_EMERGENCY_CHANGELOG_REPLICATION"] = "3"
    await ensure_topics(
        cluster.bootstrap,
        partitions=PARTITIONS,
        replication_factor=3,
        names={
            e.intake: {"message.timestamp.type": "LogAppendTime", "min.insync.replicas": "2"},
            e.decisions: {"min.insync.replicas": "2"},
            e.postings: {"min.insync.replicas": "2"},
            e.rejected: {"min.insync.replicas": "2"},
        },
    )
    yield e


def start_service(
    args: Sequence[str], log: Path, settings: dict[str, str], drop_prefix: str
) -> subprocess.Popen[bytes]:
    """`python -m ARGS` from the project's folder, its output appended to `log`: this
    process's environment without the variables starting with `drop_prefix` (the
    service's own settings), plus `settings`."""
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(drop_prefix)},
            **settings,
        },
        stdout=out,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def worker(env: Env) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_processes(procs, wait_s=60)


@pytest.fixture
def consumers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A story's consumer processes (the ledger's, the casebook's), each restart appended:
    whatever still runs when the story ends, passed or failed, is stopped."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_processes(procs, wait_s=30)


@contextlib.contextmanager
def cluster_frozen(cluster: Cluster, longest_s: float) -> Iterator[None]:
    """Every broker of the cluster stopped (SIGSTOP) for the body, resumed (SIGCONT) after
    it whatever happens: to its clients Kafka is unreachable, connections neither refused
    nor answered, as when the network to it is cut. A detached watchdog resumes the
    brokers after `longest_s` + 30 s too, should this process die before its `finally`."""
    pids = [pid for node in (1, 2, 3) if (pid := cluster.pid(node)) is not None]
    assert len(pids) == 3, f"brokers running: {pids}"
    resume = "; ".join(f"kill -CONT -{pid}" for pid in pids)
    watchdog = subprocess.Popen(
        ["sh", "-c", f"sleep {int(longest_s) + 30}; {resume}"], start_new_session=True
    )
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.killpg(pid, signal.SIGCONT)
        os.killpg(watchdog.pid, signal.SIGKILL)
        watchdog.wait()


@contextlib.asynccontextmanager
async def cluster_database(cluster: Cluster, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """An empty database on the cluster's PostgreSQL owned by relief_owner: its owner's
    and its service role's URLs; dropped afterwards."""
    import asyncpg

    port = int(cluster.env["RELIEF_LOCAL_PG_PORT"])
    # the cluster's roles have passwords, kept in its state folder
    passwords = local_stack.pg_passwords(Path(cluster.env["RELIEF_STATE_DIR"])) or {}
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    def url(role: str, db: str) -> str:
        return local_stack.pg_url(role, db, port=port, passwords=passwords)

    admin = await asyncpg.connect(url(local_stack.ADMIN_ROLE, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{local_stack.OWNER_ROLE}"')
    finally:
        await admin.close()
    try:
        yield url(local_stack.OWNER_ROLE, name), url(local_stack.APP_ROLE, name)
    finally:
        admin = await asyncpg.connect(url(local_stack.ADMIN_ROLE, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# --------------------------------------------------------------------- a steady load


class Load:
    """A steady stream of requests produced straight to the intake topic while a story
    injects its fault. Records from a gate's index on wait until the story opens it, so
    each phase of the fault has requests arriving during it, however fast the worker
    decides. `fault_over()` marks the fault's end: from then on a watcher waits until
    every request accepted before it is decided, and `recovery_s()` says how long that
    took (the backlog the fault left, drained)."""

    def __init__(self, env: Env, records: Sequence[Record], gates: dict[str, int]) -> None:
        self.env = env
        self.records = records
        self.gates = {name: asyncio.Event() for name in gates}
        self.gate_at = {at: self.gates[name] for name, at in gates.items()}
        self.accepted = 0  # acknowledged by Kafka so far
        self._fault_over_at: float | None = None
        self._drained: asyncio.Task[float] | None = None

    def open(self, gate: str) -> None:
        self.gates[gate].set()

    def acked(self, n: int) -> None:
        self.accepted = n

    def fault_over(self, caught_up: CaughtUp | None = None) -> None:
        """The fault has ended. `caught_up(backlog)`: whether the part the fault hit has
        taken in every case accepted before now (a story of the ledger asks the ledger);
        by default, whether the processor has decided them."""
        self._fault_over_at = time.monotonic()
        backlog = {r.correlation_id for r in self.records[: self.accepted]}
        if caught_up is None:
            watch = drained_at(self.env, backlog, DRAIN_WATCH_S)
        else:
            watch = polled_until(caught_up, backlog, DRAIN_WATCH_S)
        self._drained = asyncio.create_task(watch)

    async def recovery_s(self) -> float | None:
        """Seconds from the fault's end until its backlog was decided; None if the story
        never marked the end or the backlog was not drained within the watch."""
        if self._drained is None or self._fault_over_at is None:
            return None
        done_at = await self._drained
        return None if done_at == float("inf") else max(0.0, done_at - self._fault_over_at)


DRAIN_WATCH_S = 600.0
CaughtUp = Callable[[set[str]], Awaitable[bool]]


async def polled_until(caught_up: CaughtUp, backlog: set[str], timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.TimeoutError):  # a server still away
            if await caught_up(backlog):
                return time.monotonic()
        await asyncio.sleep(0.5)
    return float("inf")


async def drained_at(env: Env, cases: set[str], timeout_s: float) -> float:
    """The moment (monotonic) every case of `cases` has a decision on the decisions
    topic; infinity if not within `timeout_s`."""

    def done(got: list[Any]) -> bool:
        return cases <= {r.correlation_id for r in got if isinstance(r, d.AdvanceGranted)}

    got = await consume_until(env.bootstrap, env.decisions, done, timeout_s)
    return time.monotonic() if done(got) else float("inf")


@contextlib.asynccontextmanager
async def steady_load(
    env: Env,
    records: Sequence[Record],
    *,
    chunk: int,
    pause_s: float,
    drain_s: float,
    gates: dict[str, int] | None = None,
) -> AsyncIterator[Load]:
    """The load runs while the body injects the fault; after the body the rest of it is
    produced (within `drain_s`); if the body fails, the load is stopped."""
    load = Load(env, records, gates or {})
    producing = asyncio.create_task(
        feed(
            env.bootstrap,
            env.intake,
            records,
            chunk=chunk,
            pause_s=pause_s,
            gates=load.gate_at,
            acked=load.acked,
        )
    )
    try:
        yield load
        await asyncio.wait_for(producing, drain_s)
    finally:
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing


# ---------------------------------------------------------- the reliability table


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one fault story measured, for docs/reliability.md."""

    fault: str  # what was done, in a few words
    sent: int  # requests sent (distinct cases)
    accepted: int  # answered 202 / acknowledged by Kafka
    lost: int  # accepted and never decided
    duplicated: int  # decided more than once (two decision ids, or refused as applied twice)
    recovery_s: float | None  # from the fault's end until its backlog was decided


_FIGURES: dict[str, Figures] = {}
_OUTCOMES: dict[str, str] = {}


def lost_and_duplicated(decisions: Sequence[Any], accepted: set[str]) -> tuple[int, int]:
    ids: dict[str, set[uuid.UUID]] = defaultdict(set)
    refused: set[str] = set()
    for r in decisions:
        if isinstance(r, d.AdvanceGranted):
            ids[r.correlation_id].add(r.event_id)
        elif isinstance(r, d.AdvanceRefused):
            refused.add(r.correlation_id)
    lost = len(accepted - set(ids))
    duplicated = len({c for c, n in ids.items() if len(n) > 1} | (refused & set(ids)))
    return lost, duplicated


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Callable[..., Figures]:
    """Record the story's figures (before its assertions, so a failing story shows what
    went wrong in the table too): `reliability(fault=..., sent=..., accepted=set of case
    ids, decisions=[...], recovery_s=...)`."""

    def record(
        *,
        fault: str,
        sent: int,
        accepted: set[str],
        decisions: Sequence[Any],
        recovery_s: float | None,
    ) -> Figures:
        lost, duplicated = lost_and_duplicated(decisions, accepted)
        figures = Figures(fault, sent, len(accepted), lost, duplicated, recovery_s)
        _FIGURES[request.node.name] = figures
        return figures

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[item.name] = report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _FIGURES:
        write_reliability(RELIABILITY_DOC, _FIGURES, _OUTCOMES)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    return (
        f"{os.cpu_count()} × {cpu}{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


TABLE_HEAD = (
    "| story | fault | sent | accepted | lost | duplicated | recovery s | result | measured |\n"
    "|---|---|---:|---:|---:|---:|---:|---|---|\n"
)


def write_reliability(path: Path, figures: dict[str, Figures], outcomes: dict[str, str]) -> None:
    """docs/reliability.md: this run's rows, and the rows of stories not run this time as
    they were (each row says when it was measured)."""
    rows: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| `test_") and len(cells) == 9:
                rows[cells[0].strip("`")] = line
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for name, outcome in outcomes.items():  # ran, and failed before it measured anything
        if name not in figures:
            empty = "(failed before it measured) | | | | | "
            rows[name] = f"| `{name}` | {empty}| {outcome} | {today} |"
    for name, f in figures.items():
        recovery = "—" if f.recovery_s is None else f"{f.recovery_s:.0f}"
        rows[name] = (
            f"| `{name}` | {f.fault} | {f.sent:,} | {f.accepted:,} | {f.lost} | "
            f"{f.duplicated} | {recovery} | {outcomes.get(name, 'not finished')} | {today} |"
        )
    path.write_text(
        "# Reliability: the fault suite's figures\n\n"
        "Generated by `./run faults` (tests/faults/, `write_reliability` in its conftest.py):\n"
        "do not edit by hand. Each story runs a steady load of urgent cases through a\n"
        "three-broker Kafka cluster of its own, injects its fault, and accounts for every\n"
        "request. **sent**: distinct cases sent; **accepted**: answered 202 by intake, or\n"
        "acknowledged by Kafka where the story produces straight to the intake topic;\n"
        "**lost**: accepted and never decided; **duplicated**: decided more than once;\n"
        "**recovery s**: from the end of the fault until every case accepted before then\n"
        "was decided (the backlog the fault left, drained), unless the row names another\n"
        "recovery (the ledger's, the clock's). A row whose story did not run\n"
        "in the last run keeps its earlier figures and date.\n\n"
        f"Last run: {today}, on {machine()}.\n\n"
        + TABLE_HEAD
        + "\n".join(rows[name] for name in sorted(rows))
        + "\n",
        encoding="utf-8",
    )
