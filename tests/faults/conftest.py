"""The fault suite's world: a Kafka cluster of three brokers and a PostgreSQL of its own
(other ports, a temporary state folder), so the suite's single broker is left alone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from tests.integration.emergency.test_worker import PARTITIONS, Env, stop_processes

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def worker(env: Env) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    stop_processes(procs, wait_s=60)


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
