"""The fault suite's world: a Kafka cluster of three brokers and a PostgreSQL of its own
(other ports, a temporary state folder), so the suite's single broker is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.local import stack as local_stack
from relief_platform.topics import ensure_topics
from tests.integration.emergency.test_worker import PARTITIONS, Env

ROOT = Path(__file__).resolve().parents[2]
PORTS = {  # a cluster beside the suite's own broker and database
    "RELIEF_LOCAL_KAFKA_PORT": "29092",
    "RELIEF_LOCAL_KAFKA_CONTROLLER_PORT": "29093",
    "RELIEF_LOCAL_PG_PORT": "25432",
}


class Cluster:
    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, **PORTS, "RELIEF_STATE_DIR": str(state)}

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
        return ",".join(f"127.0.0.1:{29092 + 2 * i}" for i in range(3))

    def pid(self, node_id: int) -> int | None:
        return local_stack.read_pid(
            Path(self.env["RELIEF_STATE_DIR"]) / "kafka" / f"node-{node_id}" / "kafka.pid"
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
async def env(cluster: Cluster, unique: str, tmp_path: Path) -> AsyncIterator[Env]:
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
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
