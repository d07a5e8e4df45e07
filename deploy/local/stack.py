"""The local stack: a real single-node Kafka (KRaft) and a real PostgreSQL on loopback.

No Docker. Kafka runs from Apache Kafka's own jars (resolved by Maven from `pom.xml`
beside this file), PostgreSQL from the system's binaries with a data folder of its own.
Everything lives under one state folder (`.local/` at the project root, git-ignored,
or `RELIEF_STATE_DIR`).

    python deploy/local/stack.py up        # start what is not running, wait until it answers
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
        }


def state_dir() -> Path:
    return Path(os.environ.get("RELIEF_STATE_DIR", ROOT / ".local")).resolve()


def local_info() -> StackInfo:
    base = f"postgresql://{{role}}@127.0.0.1:{PG_PORT}/{DB_NAME}"
    return StackInfo(
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
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


def write_kafka_config() -> tuple[Path, Path]:
    d = kafka_dir()
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    props = d / "server.properties"
    props.write_text(
        "\n".join(
            [
                "# single node, KRaft combined mode (what Kafka's config/server.properties ships)",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{KAFKA_CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},"
                f"CONTROLLER://127.0.0.1:{KAFKA_CONTROLLER_PORT}",
                "inter.broker.listener.name=PLAINTEXT",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={d / 'data'}",
                "num.partitions=6",
                "# one node: every internal topic has one replica",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
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


def java_cmd(libs: Path, main: str, *args: str, heap: str = KAFKA_HEAP) -> list[str]:
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
        f"-Dlog4j2.configurationFile={kafka_dir() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={kafka_dir() / 'logs'}",
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


def kafka_up(info: StackInfo) -> None:
    pidfile = kafka_dir() / "kafka.pid"
    if read_pid(pidfile) is not None and asyncio.run(kafka_answers(info.kafka_bootstrap)):
        log(f"kafka already running on {info.kafka_bootstrap}")
        return
    for port in (KAFKA_PORT, KAFKA_CONTROLLER_PORT):
        if port_open(port) and read_pid(pidfile) is None:
            raise StackError(
                f"port {port} is taken by another program; stop it or set "
                "RELIEF_LOCAL_KAFKA_PORT / RELIEF_LOCAL_KAFKA_CONTROLLER_PORT"
            )
    libs = ensure_kafka_jars()
    props, _ = write_kafka_config()
    if not (kafka_dir() / "data" / "meta.properties").exists():
        log("formatting Kafka storage")
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
        subprocess.run(
            java_cmd(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                heap="256m",
            ),
            check=True,
            capture_output=True,
            text=True,
        )
    if read_pid(pidfile) is None:
        log(f"starting kafka on {info.kafka_bootstrap}")
        spawn(
            java_cmd(libs, "kafka.Kafka", str(props)), kafka_dir() / "logs" / "stdout.log", pidfile
        )
    deadline = time.monotonic() + KAFKA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if read_pid(pidfile) is None:
            raise StackError(
                "kafka exited during start-up; see "
                f"{kafka_dir() / 'logs' / 'server.log'} and {kafka_dir() / 'logs' / 'stdout.log'}"
            )
        if asyncio.run(kafka_answers(info.kafka_bootstrap, timeout_s=3.0)):
            log("kafka answers")
            return
        time.sleep(1.0)
    raise StackError(f"kafka did not answer within {KAFKA_START_TIMEOUT_S:.0f} s")


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


def up(info: StackInfo | None = None) -> StackInfo:
    info = info or local_info()
    state_dir().mkdir(parents=True, exist_ok=True)
    pg_up(info)
    kafka_up(info)
    from relief_platform import topics

    asyncio.run(topics.ensure_topics(info.kafka_bootstrap))
    return info


def down() -> None:
    from deploy.local import services

    services.stop_all()
    stop_pid(kafka_dir() / "kafka.pid", "kafka")
    pg_down()


def status() -> int:
    info = local_info()
    kafka_ok = asyncio.run(kafka_answers(info.kafka_bootstrap))
    pg_ok = asyncio.run(pg_answers(info.admin_url))
    print(f"kafka     {'up  ' if kafka_ok else 'down'}  {info.kafka_bootstrap}")
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
    sub.add_parser("up", help="start Kafka and PostgreSQL (idempotent)")
    sub.add_parser("down", help="stop everything the state folder started")
    sub.add_parser(
        "status",
        help="what runs, its restarts and whether it answers (exit 1 unless everything is up)",
    )
    p_logs = sub.add_parser("logs", help="the last lines of one log")
    p_logs.add_argument("name")
    sub.add_parser("env", help="print the settings for the local stack as shell exports")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            info = up()
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
