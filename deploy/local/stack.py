"""The local stack: a real Kafka (KRaft: one node, or a cluster of three) and a real
PostgreSQL on loopback.

No Docker. Kafka runs from Apache Kafka's own jars (resolved by Maven from `pom.xml`
beside this file), PostgreSQL from the system's binaries with a data folder of its own.
Everything lives under one state folder (`.local/` at the project root, git-ignored,
or `RELIEF_STATE_DIR`).

    python deploy/local/stack.py up        # start what is not running, wait until it answers
    python deploy/local/stack.py up --brokers 3   # a three-broker Kafka cluster instead
    python deploy/local/stack.py status    # what runs, restarts, and whether it answers
    python deploy/local/stack.py logs kafka|postgres|supervisor|<service>
    python deploy/local/stack.py down      # stop everything this folder started

`up` is idempotent: what already answers is left alone. The application services are
started by `deploy/local/services.py` on top of this, under one supervisor that restarts
a crashed service (`deploy/local/supervisor.py`); the README's first command does both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

KAFKA_PORT = int(os.environ.get("RELIEF_LOCAL_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("RELIEF_LOCAL_KAFKA_CONTROLLER_PORT", "19093"))
PG_PORT = int(os.environ.get("RELIEF_LOCAL_PG_PORT", "15432"))
KAFKA_HEAP = os.environ.get("RELIEF_LOCAL_KAFKA_HEAP", "512m")

# Generous on a 2-core machine: a cold JVM takes 10-20 s, a first Maven resolve a minute.
KAFKA_START_TIMEOUT_S = 120.0
PG_START_TIMEOUT_S = 60.0
MAVEN_TIMEOUT_S = 600.0

DB_NAME = "relief"
ADMIN_ROLE = "relief_admin"  # superuser: local stack and tests only
OWNER_ROLE = "relief_owner"  # owns the schema, runs migrations
APP_ROLE = "relief_app"  # what the services connect as: INSERT and SELECT only (ledger P10)
READ_ROLE = "relief_read"  # the dashboard and the casebook's reads: SELECT only


class StackError(RuntimeError):
    """Something the operator has to fix; the message says what."""


@dataclasses.dataclass(frozen=True)
class StackInfo:
    kafka_bootstrap: str
    admin_url: str
    owner_url: str
    app_url: str

    def env(self) -> dict[str, str]:
        """The settings every service reads (see docs/contracts.md)."""
        return {
            "RELIEF_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "RELIEF_DATABASE_URL": self.app_url,
            "RELIEF_DATABASE_OWNER_URL": self.owner_url,
            "RELIEF_DATABASE_ADMIN_URL": self.admin_url,
            # the processor's changelogs are replicated like every other topic
            "RELIEF_EMERGENCY_CHANGELOG_REPLICATION": str(
                replication(len(self.kafka_bootstrap.split(",")))[0]
            ),
        }


def state_dir() -> Path:
    return Path(os.environ.get("RELIEF_STATE_DIR", ROOT / ".local")).resolve()


def local_info() -> StackInfo:
    base = f"postgresql://{{role}}@127.0.0.1:{PG_PORT}/{DB_NAME}"
    return StackInfo(
        kafka_bootstrap=kafka_bootstrap(),
        admin_url=base.format(role=ADMIN_ROLE),
        owner_url=base.format(role=OWNER_ROLE),
        app_url=base.format(role=APP_ROLE),
    )


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


# --------------------------------------------------------------------------- processes


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def stop_pid(pidfile: Path, name: str, timeout_s: float = 30.0) -> None:
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return
    log(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and read_pid(pidfile) is not None:
        time.sleep(0.2)
    if read_pid(pidfile) is not None:
        log(f"{name} did not stop in {timeout_s:.0f} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def spawn(cmd: list[str], logfile: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process group (so `down` can stop it and its children)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=ROOT,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def need(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise StackError(f"{tool} not found on PATH: {hint}")
    return found


# --------------------------------------------------------------------------- Kafka


def kafka_dir() -> Path:
    return state_dir() / "kafka"


def ensure_kafka_jars() -> Path:
    libs = kafka_dir() / "libs"
    marker = libs / ".complete"
    pom = HERE / "pom.xml"
    if marker.exists() and marker.read_text() == pom.read_text():
        return libs
    need("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = need("mvn", "install Maven (Debian: apt-get install maven)")
    log("resolving Apache Kafka's jars from Maven Central (first run only)")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    try:
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
            timeout=MAVEN_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        raise StackError(f"Maven could not resolve Kafka's jars (exit {exc.returncode})") from exc
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven finished but {libs} holds no kafka_2.13 jar")
    marker.write_text(pom.read_text())
    return libs


BROKERS_FILE = "brokers"  # in kafka_dir(): how many brokers the last `up` started


@dataclasses.dataclass(frozen=True)
class KafkaNode:
    """One Kafka process: a broker and a controller of the KRaft quorum (combined mode)."""

    node_id: int
    port: int
    controller_port: int
    home: Path  # its configuration, data, logs and pid file

    @property
    def pidfile(self) -> Path:
        return self.home / "kafka.pid"


def chosen_brokers() -> int:
    """How many brokers the local Kafka has: `RELIEF_LOCAL_KAFKA_BROKERS`, else what the
    last `up --brokers N` chose, else one."""
    if env := os.environ.get("RELIEF_LOCAL_KAFKA_BROKERS"):
        return int(env)
    chosen = kafka_dir() / BROKERS_FILE
    return int(chosen.read_text()) if chosen.exists() else 1


def kafka_nodes(brokers: int | None = None) -> list[KafkaNode]:
    """The nodes of the local Kafka. One node lives in kafka_dir() itself; a cluster's
    nodes in kafka_dir()/node-<id>, each on the next pair of ports."""
    n = brokers if brokers is not None else chosen_brokers()
    if n not in (1, 3):
        raise StackError(f"the local stack runs 1 or 3 Kafka brokers, not {n}")
    if n == 1:
        return [KafkaNode(1, KAFKA_PORT, KAFKA_CONTROLLER_PORT, kafka_dir())]
    return [
        KafkaNode(
            i,
            KAFKA_PORT + 2 * (i - 1),
            KAFKA_CONTROLLER_PORT + 2 * (i - 1),
            kafka_dir() / f"node-{i}",
        )
        for i in range(1, n + 1)
    ]


def kafka_bootstrap(brokers: int | None = None) -> str:
    return ",".join(f"127.0.0.1:{node.port}" for node in kafka_nodes(brokers))


def replication(brokers: int | None = None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for every topic: 3 and 2 on a cluster,
    so a broker can fail without stopping writes or losing an acknowledged record."""
    return (3, 2) if len(kafka_nodes(brokers)) >= 3 else (1, 1)


def write_kafka_config(
    node: KafkaNode | None = None, cluster: int | None = None
) -> tuple[Path, Path]:
    nodes = kafka_nodes(cluster)
    node = node or nodes[0]
    d = node.home
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    rf, isr = replication(cluster)
    if len(nodes) == 1:
        quorum = [
            "# single node, KRaft combined mode (what Kafka's config/server.properties ships)",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}",
        ]
    else:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
        quorum = [
            f"# a cluster of {len(nodes)}: every node a broker and a voter of the KRaft quorum",
            f"controller.quorum.voters={voters}",
            f"default.replication.factor={rf}",
            "# min.insync.replicas=2 is set on the service's topics (a test's own topics of",
            "# one replica must stay writable)",
        ]
    props = d / "server.properties"
    props.write_text(
        "\n".join(
            [
                *quorum,
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}",
                "inter.broker.listener.name=PLAINTEXT",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={d / 'data'}",
                "num.partitions=6",
                f"# every internal topic has {rf} replica(s)",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=6",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={isr}",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={isr}",
                "# consumers start often in tests and the demo: no wait before the first rebalance",
                "group.initial.rebalance.delay.ms=0",
                "# the service creates its topics explicitly with their partition counts",
                "auto.create.topics.enable=true",
                "log.retention.hours=-1",
                "",
            ]
        )
    )
    log4j = d / "log4j2.properties"
    log4j.write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = file",
                f"appender.file.fileName = {d / 'logs' / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = file",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
    )
    return props, log4j


def java_cmd(
    libs: Path, main: str, *args: str, heap: str = KAFKA_HEAP, home: Path | None = None
) -> list[str]:
    # what Kafka's bin/kafka-run-class.sh and kafka-server-start.sh do, with a smaller heap
    return [
        need("java", "install a Java 17+ runtime"),
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={(home or kafka_dir()) / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={(home or kafka_dir()) / 'logs'}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


async def kafka_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(int(port), host or "127.0.0.1"):
        return False  # nothing listens yet: skip the client's own connection-error logging

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def kafka_up(info: StackInfo, brokers: int | None = None) -> None:
    """Start the local Kafka (each node that is not running) and wait until every node
    answers. `brokers` chooses one node or a cluster of three; it is remembered."""
    nodes = kafka_nodes(brokers)
    running = running_kafka_nodes()
    others = [n for n in running if n not in nodes]
    if others:
        raise StackError(
            f"a Kafka of {len(kafka_nodes(None if brokers is None else chosen_brokers()))} "
            f"broker(s) is running here; stop it first (./run down)"
        )
    kafka_dir().mkdir(parents=True, exist_ok=True)
    (kafka_dir() / BROKERS_FILE).write_text(f"{len(nodes)}\n")
    bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    if len(running) == len(nodes) and asyncio.run(kafka_answers(bootstrap)):
        log(f"kafka already running on {bootstrap}")
        return
    for node in nodes:
        if read_pid(node.pidfile) is not None:
            continue
        for port in (node.port, node.controller_port):
            if port_open(port):
                raise StackError(
                    f"port {port} is taken by another program; stop it or set "
                    "RELIEF_LOCAL_KAFKA_PORT / RELIEF_LOCAL_KAFKA_CONTROLLER_PORT"
                )
    libs = ensure_kafka_jars()
    cluster_id: str | None = None
    for node in nodes:
        props, _ = write_kafka_config(node, len(nodes))
        if (node.home / "data" / "meta.properties").exists():
            continue
        log(f"formatting Kafka storage of node {node.node_id}")
        if cluster_id is None:
            cluster_id = (
                subprocess.run(
                    java_cmd(libs, "kafka.tools.StorageTool", "random-uuid", heap="256m"),
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
        # one node: a dynamic quorum of itself; a cluster: the static voters of its config
        quorum = ["--standalone"] if len(nodes) == 1 else []
        subprocess.run(
            java_cmd(
                libs,
                "kafka.tools.StorageTool",
                "format",
                *quorum,
                "-t",
                cluster_id,
                "-c",
                str(props),
                heap="256m",
                home=node.home,
            ),
            check=True,
            capture_output=True,
            text=True,
        )
    for node in nodes:
        if read_pid(node.pidfile) is None:
            log(f"starting kafka node {node.node_id} on 127.0.0.1:{node.port}")
            spawn(
                java_cmd(libs, "kafka.Kafka", str(node.home / "server.properties"), home=node.home),
                node.home / "logs" / "stdout.log",
                node.pidfile,
            )
    deadline = time.monotonic() + KAFKA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for node in nodes:
            if read_pid(node.pidfile) is None:
                raise StackError(
                    f"kafka node {node.node_id} exited during start-up; see "
                    f"{node.home / 'logs' / 'server.log'} and {node.home / 'logs' / 'stdout.log'}"
                )
        if all(
            asyncio.run(kafka_answers(f"127.0.0.1:{n.port}", timeout_s=3.0)) for n in nodes
        ) and asyncio.run(brokers_in_cluster(bootstrap)) >= len(nodes):
            log("kafka answers" + (f" ({len(nodes)} brokers)" if len(nodes) > 1 else ""))
            return
        time.sleep(1.0)
    raise StackError(f"kafka did not answer within {KAFKA_START_TIMEOUT_S:.0f} s")


def running_kafka_nodes() -> list[KafkaNode]:
    """The nodes (of either layout) whose process runs."""
    return [n for b in (1, 3) for n in kafka_nodes(b) if read_pid(n.pidfile) is not None]


def kafka_down(timeout_s: float = 30.0) -> None:
    """Stop every node at once: a cluster's last node stopped alone waits for a quorum
    that is already gone."""
    nodes = running_kafka_nodes()
    for node in nodes:
        pid = read_pid(node.pidfile)
        if pid is not None:
            log(f"stopping kafka node {node.node_id} (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(read_pid(n.pidfile) for n in nodes):
        time.sleep(0.2)
    for node in nodes:
        stop_pid(node.pidfile, f"kafka node {node.node_id}", timeout_s=5.0)


async def brokers_in_cluster(bootstrap: str, timeout_s: float = 5.0) -> int:
    """How many brokers the cluster's metadata names (0 when it does not answer)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        described = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return len(described.get("brokers", []))
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def partition_leaders(bootstrap: str, names: list[str]) -> dict[str, list[int]]:
    """Each topic's partition leaders (broker ids, -1: none), in partition order."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    await admin.start()
    try:
        out: dict[str, list[int]] = {}
        for topic in await admin.describe_topics(names):
            parts = sorted(topic.get("partitions", []), key=lambda p: p["partition"])
            out[topic["topic"]] = [int(p["leader"]) for p in parts]
        return out
    finally:
        await admin.close()


# --------------------------------------------------------------------------- PostgreSQL


def pg_bin() -> Path:
    """The PostgreSQL server binaries; installs Debian's package when they are missing."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if candidates:
        return candidates[0].parent
    if shutil.which("pg_ctl") and shutil.which("initdb"):
        return Path(shutil.which("pg_ctl") or "").parent
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("PostgreSQL server not found: installing Debian's postgresql package")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
            check=True,
            env=env,
        )
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
        if candidates:
            return candidates[0].parent
    raise StackError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install Debian's postgresql package"
    )


def pg_dir() -> Path:
    return state_dir() / "postgres"


def pg_as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the `postgres` system user."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
    return ["runuser", "-u", "postgres", "--"]


async def pg_answers(url: str, timeout_s: float = 3.0) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except Exception:
        return False
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


def pg_up(info: StackInfo) -> None:
    d = pg_dir()
    data = d / "data"
    if asyncio.run(pg_answers(info.admin_url)):
        log(f"postgres already running on 127.0.0.1:{PG_PORT}")
        pg_bootstrap(info)
        return
    if port_open(PG_PORT):
        raise StackError(f"port {PG_PORT} is taken by another program; set RELIEF_LOCAL_PG_PORT")
    bindir = pg_bin()
    runas = pg_as_user()
    d.mkdir(parents=True, exist_ok=True)
    if runas:
        subprocess.run(["chown", "-R", "postgres:postgres", str(d)], check=True)
        # the state folder's parents must be traversable by the postgres user
        for parent in [d, *d.parents]:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
    if not (data / "PG_VERSION").exists():
        log("initialising PostgreSQL data folder")
        subprocess.run(
            [
                *runas,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                ADMIN_ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
        )
    log(f"starting postgres on 127.0.0.1:{PG_PORT}")
    opts = f"-p {PG_PORT} -c listen_addresses=127.0.0.1 -k {d} -c fsync=on"
    result = subprocess.run(
        [
            *runas,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(d / "postgres.log"),
            "-o",
            opts,
            "-w",
            "-t",
            str(int(PG_START_TIMEOUT_S)),
            "start",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(
            f"postgres did not start: {result.stdout.strip()} {result.stderr.strip()}; "
            f"see {d / 'postgres.log'}"
        )
    pg_bootstrap(info)
    log("postgres answers")


def pg_bootstrap(info: StackInfo) -> None:
    """Roles and database; idempotent. The ledger's migrations create the tables."""

    async def run() -> None:
        import asyncpg

        admin_db = info.admin_url.rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(admin_db)
        try:
            for role in (OWNER_ROLE, APP_ROLE, READ_ROLE):
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                if not exists:
                    await conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEROLE')
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DB_NAME}" OWNER "{OWNER_ROLE}"')
        finally:
            await conn.close()

    asyncio.run(run())


def pg_down() -> None:
    data = pg_dir() / "data"
    if not (data / "postmaster.pid").exists():
        return
    log("stopping postgres")
    subprocess.run(
        [*pg_as_user(), str(pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
    )


# --------------------------------------------------------------------------- commands


def up(info: StackInfo | None = None, brokers: int | None = None) -> StackInfo:
    state_dir().mkdir(parents=True, exist_ok=True)
    if brokers is not None:
        kafka_nodes(brokers)  # refuse a size the stack does not run before starting anything
    info = info or local_info()
    pg_up(info)
    kafka_up(info, brokers)
    info = dataclasses.replace(info, kafka_bootstrap=kafka_bootstrap())
    from relief_platform import topics

    rf, isr = replication()
    names = {
        name: {**config, "min.insync.replicas": str(isr)}
        for name, config in topics.TOPIC_CONFIGS.items()
    }
    asyncio.run(topics.ensure_topics(info.kafka_bootstrap, replication_factor=rf, names=names))
    return info


def down() -> None:
    from deploy.local import services

    services.stop_all()
    kafka_down()
    pg_down()


def status() -> int:
    info = local_info()
    kafka_ok = asyncio.run(kafka_answers(info.kafka_bootstrap))
    pg_ok = asyncio.run(pg_answers(info.admin_url))
    print(f"kafka     {'up  ' if kafka_ok else 'down'}  {info.kafka_bootstrap}")
    nodes = kafka_nodes()
    if len(nodes) > 1:
        for node in nodes:
            answers = asyncio.run(kafka_answers(f"127.0.0.1:{node.port}", timeout_s=2.0))
            print(
                f"  broker {node.node_id}  {'up  ' if answers else 'down'}  127.0.0.1:{node.port}"
            )
        if kafka_ok:
            from schemas.topics import INTAKE

            with contextlib.suppress(Exception):
                leaders = asyncio.run(partition_leaders(info.kafka_bootstrap, [INTAKE]))
                for topic, ids in leaders.items():
                    print(f"  {topic} partition leaders: {' '.join(map(str, ids))}")
    print(f"postgres  {'up  ' if pg_ok else 'down'}  {info.app_url}")
    from deploy.local import services

    services_ok = services.print_status()
    return 0 if kafka_ok and pg_ok and services_ok else 1


def logs(name: str) -> None:
    from deploy.local import services, supervisor

    files = {
        "kafka": kafka_dir() / "logs" / "server.log",
        "postgres": pg_dir() / "postgres.log",
        **{svc: services.logfile(svc) for svc in services.names()},
        "supervisor": services.svc_dir() / supervisor.LOG_FILE,
    }
    path = files.get(name)
    if path is None:
        raise StackError(f"no log called {name!r}; choose one of {', '.join(files)}")
    if not path.exists():
        raise StackError(f"{path} does not exist yet (has {name} ever started?)")
    subprocess.run(["tail", "-n", "200", str(path)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start Kafka and PostgreSQL (idempotent)")
    p_up.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=None,
        help="Kafka brokers: 1, or a cluster of 3 (replication 3, min.insync.replicas 2); "
        "default: as last time",
    )
    sub.add_parser("down", help="stop everything the state folder started")
    sub.add_parser(
        "status",
        help="what runs, its restarts and whether it answers (exit 1 unless everything is up)",
    )
    p_logs = sub.add_parser("logs", help="the last lines of one log")
    p_logs.add_argument("name")
    sub.add_parser("env", help="print the settings for the local stack as shell exports")
    # `./run up` hands its arguments to this and to up.py: each takes its own
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "up":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.cmd == "up":
            info = up(brokers=args.brokers)
            log("ready: " + " ".join(f"{k}={v}" for k, v in info.env().items()))
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            return status()
        elif args.cmd == "logs":
            logs(args.name)
        elif args.cmd == "env":
            for k, v in local_info().env().items():
                print(f"export {k}={v}")
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
