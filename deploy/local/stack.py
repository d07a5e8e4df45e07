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
    python deploy/local/stack.py pg-secure # a cluster made before passwords: trust -> scram

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
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from relief_platform import kafka_security

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

KAFKA_PORT = int(os.environ.get("RELIEF_LOCAL_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("RELIEF_LOCAL_KAFKA_CONTROLLER_PORT", "19093"))
PG_PORT = int(os.environ.get("RELIEF_LOCAL_PG_PORT", "15432"))
# 1 GiB: a development broker that keeps every test run's topics (thousands of partitions)
# ran out of 512 MiB and stopped
KAFKA_HEAP = os.environ.get("RELIEF_LOCAL_KAFKA_HEAP", "1g")

# Generous on a 2-core machine: a cold JVM takes 10-20 s, a first Maven resolve a minute.
KAFKA_START_TIMEOUT_S = 120.0
PG_START_TIMEOUT_S = 60.0
MAVEN_TIMEOUT_S = 600.0

DB_NAME = "relief"
ADMIN_ROLE = "relief_admin"  # superuser: local stack and tests only
OWNER_ROLE = "relief_owner"  # owns the schema, runs migrations
APP_ROLE = "relief_app"  # what the services connect as: INSERT and SELECT only (ledger P10)
READ_ROLE = "relief_read"  # the dashboard and the casebook's reads: SELECT only
ROLES = (ADMIN_ROLE, OWNER_ROLE, APP_ROLE, READ_ROLE)
# Each role's password, made when the cluster is made (or moved off `trust` by
# `pg-secure`), readable by the owner only; the URLs the stack hands out carry them.
PG_PASSWORDS_FILE = "pg-passwords.toml"
PG_AUTH = "scram-sha-256"


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
    return StackInfo(
        kafka_bootstrap=kafka_bootstrap(),
        admin_url=pg_url(ADMIN_ROLE),
        owner_url=pg_url(OWNER_ROLE),
        app_url=pg_url(APP_ROLE),
    )


def pg_passwords(state: Path | None = None) -> dict[str, str] | None:
    """The roles' passwords kept in the state folder, or None for a cluster that has
    none (made with `trust` before passwords existed, or someone else's)."""
    import tomllib

    path = (state or state_dir()) / PG_PASSWORDS_FILE
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).items()}


def make_pg_passwords() -> dict[str, str]:
    """The roles' passwords, made once per state folder (mode 0600 before it holds any)."""
    import secrets

    known = pg_passwords()
    if known is not None and set(ROLES) <= set(known):
        return known
    passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
    path = state_dir() / PG_PASSWORDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in passwords.items()), encoding="utf-8")
    return passwords


def pg_url(
    role: str,
    database: str = DB_NAME,
    port: int | None = None,
    passwords: dict[str, str] | None = None,
) -> str:
    """`postgresql://role[:password]@127.0.0.1:port/database`, with the password this
    state folder keeps for the role (none for a `trust` cluster)."""
    from urllib.parse import quote

    known = passwords if passwords is not None else pg_passwords()
    secret = (known or {}).get(role)
    user = quote(role, safe="") + (f":{quote(secret, safe='')}" if secret else "")
    return f"postgresql://{user}@127.0.0.1:{port or PG_PORT}/{database}"


def role_url(url: str, role: str) -> str:
    """`url` (this state folder's server) as another role, with that role's password."""
    from urllib.parse import quote, urlsplit

    parts = urlsplit(url)
    secret = (pg_passwords() or {}).get(role)
    user = quote(role, safe="") + (f":{quote(secret, safe='')}" if secret else "")
    return parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}").geturl()


def masked(text: str) -> str:
    """`text` with this state folder's passwords replaced by `***` (for logs)."""
    for secret in (pg_passwords() or {}).values():
        text = text.replace(secret, "***")
    return text


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
SECURE_FILE = "secure"  # in kafka_dir(): the Kafka was made with SASL/SCRAM and ACLs
KAFKA_CREDENTIALS_FILE = "kafka-credentials.toml"  # in the state folder, 0600
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
KAFKA_ADMIN = "admin"  # the brokers' own principal and the stack's (topics, ACLs)
EMERGENCY_GROUP = "relief-emergency"  # the processor's app ids (its group, its topics)


def kafka_acls() -> dict[str, list[list[str]]]:
    """Each service principal's ACLs, as AclCommand arguments: least privilege (issue
    13). Intake and the clock only write intake; the processor reads intake and writes
    decisions, postings and dead letters, and owns its group and changelogs; the ledger
    reads postings; the casebook reads decisions, dead letters and intake; the
    dashboard only describes (consumer lag)."""
    from schemas import topics as t

    def topic(*names: str) -> list[str]:
        return [x for name in names for x in ("--topic", name)]

    everything = topic(*t.ALL_TOPICS)
    emergency = [
        "--resource-pattern-type",
        "prefixed",
        "--topic",
        EMERGENCY_GROUP,
        "--group",
        EMERGENCY_GROUP,
    ]
    return {
        "intake": [
            ["--operation", "Write", "--operation", "Describe", *topic(t.INTAKE, t.CLAIMS)],
            ["--operation", "Describe", *everything],
            [
                "--operation",
                "Describe",
                "--resource-pattern-type",
                "prefixed",
                "--group",
                EMERGENCY_GROUP,
            ],
        ],
        "clock": [["--operation", "Write", "--operation", "Describe", *topic(t.INTAKE)]],
        "emergency": [
            # (DescribeConfigs: the worker checks its world before it starts - preflight)
            [
                "--operation",
                "Read",
                "--operation",
                "Describe",
                "--operation",
                "DescribeConfigs",
                *topic(t.INTAKE, t.CLAIMS),
            ],
            [
                "--operation",
                "Write",
                "--operation",
                "Describe",
                "--operation",
                "DescribeConfigs",
                # (the claims stage forwards to intake; the towns release claims)
                *topic(t.DECISIONS, t.POSTINGS, t.REJECTED, t.INTAKE, t.CLAIMS),
            ],
            ["--operation", "All", *emergency],
            ["--operation", "Create", "--operation", "DescribeConfigs", "--cluster"],
        ],
        "ledger": [
            ["--operation", "Read", "--operation", "Describe", *topic(t.POSTINGS)],
            ["--operation", "Write", "--operation", "Describe", *topic(t.REJECTED)],
            [
                "--operation",
                "Read",
                "--resource-pattern-type",
                "prefixed",
                "--group",
                "relief-ledger",
            ],
        ],
        "casebook": [
            [
                "--operation",
                "Read",
                "--operation",
                "Describe",
                *topic(t.DECISIONS, t.REJECTED, t.INTAKE),
            ],
            ["--operation", "Write", *topic(t.REJECTED)],
            [
                "--operation",
                "Read",
                "--operation",
                "Describe",
                "--resource-pattern-type",
                "prefixed",
                "--group",
                "relief-casebook",
            ],
            [
                "--operation",
                "Describe",
                "--resource-pattern-type",
                "prefixed",
                "--group",
                EMERGENCY_GROUP,
            ],
        ],
        "dashboard": [
            ["--operation", "Describe", *everything],
            ["--operation", "Describe", "--group", "*"],
        ],
    }


def kafka_secure() -> bool:
    """Whether this state folder's Kafka runs with SASL/SCRAM and ACLs (`up --secure`,
    remembered; `RELIEF_LOCAL_KAFKA_SECURE=1` as well)."""
    return bool(os.environ.get("RELIEF_LOCAL_KAFKA_SECURE")) or (kafka_dir() / SECURE_FILE).exists()


def kafka_credentials() -> dict[str, str]:
    """admin's and each service principal's SCRAM password, made once per state folder
    (readable by the owner only)."""
    import secrets
    import tomllib

    path = state_dir() / KAFKA_CREDENTIALS_FILE
    names = [KAFKA_ADMIN, *kafka_acls()]
    if path.exists():
        with path.open("rb") as fh:
            known = {str(k): str(v) for k, v in tomllib.load(fh).items()}
        if set(names) <= set(known):
            return known
    made = {name: secrets.token_urlsafe(24) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in made.items()), encoding="utf-8")
    return made


def kafka_client_env(principal: str = KAFKA_ADMIN) -> dict[str, str]:
    """The RELIEF_KAFKA_* settings a client of this Kafka connects with as `principal`
    (nothing for an open Kafka)."""
    if not kafka_secure():
        return {}
    return {
        "RELIEF_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "RELIEF_KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
        "RELIEF_KAFKA_SASL_USERNAME": principal,
        "RELIEF_KAFKA_SASL_PASSWORD": kafka_credentials()[principal],
    }


# Kafka's protocol codes (org.apache.kafka.common.acl / resource)
_RESOURCE = {"--topic": 2, "--group": 3, "--cluster": 4}
_OPERATION = {"All": 2, "Read": 3, "Write": 4, "Create": 5, "Describe": 8, "DescribeConfigs": 10}
_LITERAL, _PREFIXED, _ALLOW = 3, 4, 3


def acl_entries(rule: list[str]) -> list[tuple[int, str, int, int]]:
    """One rule (AclCommand's arguments) as (resource type, name, pattern, operation)."""
    operations, resources, pattern = [], [], _LITERAL
    words = iter(rule)
    for word in words:
        if word == "--operation":
            operations.append(_OPERATION[next(words)])
        elif word == "--resource-pattern-type":
            pattern = _PREFIXED if next(words) == "prefixed" else _LITERAL
        elif word == "--cluster":
            resources.append((_RESOURCE[word], "kafka-cluster"))
        else:
            resources.append((_RESOURCE[word], next(words)))
    return [(kind, name, pattern, op) for kind, name in resources for op in operations]


def apply_kafka_acls(libs: Path, bootstrap: str) -> None:
    """Every service principal's ACLs, created as `admin` (aiokafka speaks CreateAcls;
    Kafka's own AclCommand is not among the jars the stack resolves); idempotent."""
    del libs

    async def run() -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.protocol.admin import CreateAclsRequest

        from relief_platform import kafka_security

        admin = AIOKafkaAdminClient(**kafka_security.client_options(), bootstrap_servers=bootstrap)
        await admin.start()
        try:
            node = admin._client.get_random_node()
            for principal, rules in kafka_acls().items():
                for rule in rules:
                    for kind, name, pattern, op in acl_entries(rule):
                        request = CreateAclsRequest(
                            kind, name, pattern, f"User:{principal}", "*", op, _ALLOW
                        )
                        answer = await admin._client.send(node, request)
                        for code, message in answer.creation_responses:
                            if code:
                                raise StackError(f"ACL for {principal} on {name}: {message}")
        finally:
            await admin.close()

    asyncio.run(run())
    log(f"kafka ACLs set for {', '.join(kafka_acls())}")


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


def open_listeners(node: KafkaNode) -> list[str]:
    return [
        f"listeners=PLAINTEXT://127.0.0.1:{node.port},"
        f"CONTROLLER://127.0.0.1:{node.controller_port}",
        "inter.broker.listener.name=PLAINTEXT",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ]


def secure_listeners(node: KafkaNode) -> list[str]:
    """`up --secure`: every client authenticates with SASL/SCRAM-SHA-512 and is allowed
    only what its ACLs say (issue 13); the brokers talk to each other as `admin`, the
    controllers with SASL/PLAIN (KRaft's quorum cannot use SCRAM, whose credentials live
    in the very metadata it replicates)."""
    admin = kafka_credentials()[KAFKA_ADMIN]
    return [
        "# SASL/SCRAM and ACLs: ./run up --secure",
        f"listeners=SASL://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        f"advertised.listeners=SASL://127.0.0.1:{node.port}",
        "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL:SASL_PLAINTEXT",
        "inter.broker.listener.name=SASL",
        f"sasl.enabled.mechanisms={KAFKA_SASL_MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={KAFKA_SASL_MECHANISM}",
        "listener.name.sasl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin}";',
        "controller.listener.names=CONTROLLER",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{admin}" user_{KAFKA_ADMIN}="{admin}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{KAFKA_ADMIN}",
        "allow.everyone.if.no.acl.found=false",
    ]


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
                *(secure_listeners(node) if kafka_secure() else open_listeners(node)),
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
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
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


def kafka_up(info: StackInfo, brokers: int | None = None, secure: bool = False) -> None:
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
    if secure and not kafka_secure():
        if any((n.home / "data" / "meta.properties").exists() for n in nodes):
            raise StackError(
                "this Kafka was made open; --secure needs a new one (./run down, then remove "
                f"{kafka_dir()})"
            )
        (kafka_dir() / SECURE_FILE).write_text("SASL/SCRAM-SHA-512 and ACLs\n")
    os.environ.update(kafka_client_env())  # the stack's own clients are `admin`
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
        if kafka_secure():  # every principal's SCRAM credential, in the first metadata
            for name, password in kafka_credentials().items():
                quorum += [
                    "--add-scram",
                    f"{KAFKA_SASL_MECHANISM}=[name={name},password={password}]",
                ]
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
            if kafka_secure():
                apply_kafka_acls(libs, bootstrap)
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
        **kafka_security.client_options(),
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
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

    admin = AIOKafkaAdminClient(
        **kafka_security.client_options(), bootstrap_servers=bootstrap, request_timeout_ms=5_000
    )
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


def pg_folder() -> list[str]:
    """This state folder's PostgreSQL folder, made and handed to the user the server
    runs as; the command prefix that runs a PostgreSQL binary as that user."""
    d = pg_dir()
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
    return runas


def pg_up(info: StackInfo) -> StackInfo:
    """Start this state folder's PostgreSQL (made with password authentication the first
    time) unless one answers; the roles and database either way. The info with the URLs
    as they now are (a cluster made here gets passwords)."""
    d = pg_dir()
    data = d / "data"
    if asyncio.run(pg_answers(info.admin_url)):
        log(f"postgres already running on 127.0.0.1:{PG_PORT}")
        pg_bootstrap(info)
        warn_if_trust(info)
        return info
    if port_open(PG_PORT):
        raise StackError(f"port {PG_PORT} is taken by another program; set RELIEF_LOCAL_PG_PORT")
    bindir = pg_bin()
    runas = pg_folder()
    if not (data / "PG_VERSION").exists():
        log(f"initialising PostgreSQL data folder ({PG_AUTH} passwords in {PG_PASSWORDS_FILE})")
        passwords = make_pg_passwords()
        info = dataclasses.replace(
            info,
            admin_url=pg_url(ADMIN_ROLE),
            owner_url=pg_url(OWNER_ROLE),
            app_url=pg_url(APP_ROLE),
        )
        pwfile = d / "initdb-password"  # only for initdb; removed at once
        pwfile.touch(mode=0o600)
        os.chmod(pwfile, 0o600)
        pwfile.write_text(passwords[ADMIN_ROLE] + "\n", encoding="utf-8")
        if runas:
            subprocess.run(["chown", "postgres:postgres", str(pwfile)], check=True)
        try:
            subprocess.run(
                [
                    *runas,
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    ADMIN_ROLE,
                    f"--pwfile={pwfile}",
                    # issue 13: a password for every connection, over TCP and the socket
                    f"--auth-host={PG_AUTH}",
                    f"--auth-local={PG_AUTH}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                cwd="/",  # its user may not enter the project's folder
            )
        finally:
            pwfile.unlink(missing_ok=True)
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
    warn_if_trust(info)
    log("postgres answers")
    return info


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()


def trusts(info: StackInfo) -> bool:
    """Whether the server lets the admin role in without a password (`trust`)."""
    return asyncio.run(pg_answers(_without_password(info.admin_url)))


def warn_if_trust(info: StackInfo) -> None:
    if not trusts(info):
        return
    mine = (pg_dir() / "data" / "pg_hba.conf").exists()
    log(
        f"WARNING: postgres on 127.0.0.1:{PG_PORT} lets anyone on this machine in as any "
        "role without a password (trust authentication)"
        + ("; `stack.py pg-secure` moves it to passwords" if mine else " (not this folder's)")
    )


def pg_secure(info: StackInfo) -> StackInfo:
    """Move this folder's cluster, made with `trust` before passwords, to scram-sha-256:
    a password for each role (kept in the state folder, 0600), pg_hba.conf's `trust`
    lines become `scram-sha-256`, and the server reloads. Whoever else uses the cluster
    needs the new URLs afterwards (`./run env`)."""
    hba = pg_dir() / "data" / "pg_hba.conf"
    if not hba.exists():
        raise StackError(f"{hba} does not exist: this state folder did not make the cluster")
    if not asyncio.run(pg_answers(info.admin_url)):
        raise StackError(f"postgres on 127.0.0.1:{PG_PORT} does not answer: start it first")
    passwords = make_pg_passwords()
    info = dataclasses.replace(
        info,
        admin_url=pg_url(ADMIN_ROLE),
        owner_url=pg_url(OWNER_ROLE),
        app_url=pg_url(APP_ROLE),
    )
    pg_bootstrap(info, passwords)  # every role gets its password while trust still holds
    lines = []
    for line in hba.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[-1] == "trust":
            line = line.split("#", 1)[0].rstrip()[: -len("trust")] + PG_AUTH
        lines.append(line)
    hba.write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run(
        [*pg_as_user(), str(pg_bin() / "pg_ctl"), "-D", str(hba.parent), "reload"],
        check=True,
        capture_output=True,
        cwd="/",
    )
    for _ in range(50):  # the reload is asynchronous
        if not trusts(info):
            break
        time.sleep(0.1)
    else:
        raise StackError("postgres still accepts connections without a password; see its log")
    if not asyncio.run(pg_answers(info.admin_url)):
        raise StackError("postgres refuses the new passwords; see its log")
    log(f"postgres on 127.0.0.1:{PG_PORT} now asks for passwords ({PG_AUTH})")
    return info


def pg_bootstrap(info: StackInfo, passwords: dict[str, str] | None = None) -> None:
    """Roles and database; idempotent. The ledger's migrations create the tables. Each
    role gets its password when this state folder keeps them (its own cluster)."""
    passwords = passwords if passwords is not None else pg_passwords()

    async def run() -> None:
        import asyncpg

        admin_db = info.admin_url.rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(admin_db)
        try:
            for role in (OWNER_ROLE, APP_ROLE, READ_ROLE):
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                if not exists:
                    await conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEROLE')
            if passwords:
                await conn.execute(f"SET password_encryption = '{PG_AUTH}'")
                for role in ROLES:
                    if role in passwords:
                        literal = await conn.fetchval(
                            "SELECT quote_literal($1::text)", passwords[role]
                        )
                        await conn.execute(f'ALTER ROLE "{role}" PASSWORD {literal}')
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


def up(
    info: StackInfo | None = None, brokers: int | None = None, secure: bool = False
) -> StackInfo:
    state_dir().mkdir(parents=True, exist_ok=True)
    if brokers is not None:
        kafka_nodes(brokers)  # refuse a size the stack does not run before starting anything
    info = pg_up(info or local_info())
    kafka_up(info, brokers, secure)
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
    for key, value in kafka_client_env().items():  # a secure Kafka: asked as `admin`
        os.environ.setdefault(key, value)
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
    print(f"postgres  {'up  ' if pg_ok else 'down'}  {masked(info.app_url)}")
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
    p_up.add_argument(
        "--secure",
        action="store_true",
        help="a new Kafka with SASL/SCRAM and an ACL per service principal (remembered); "
        f"the passwords in {KAFKA_CREDENTIALS_FILE}",
    )
    sub.add_parser("down", help="stop everything the state folder started")
    sub.add_parser(
        "status",
        help="what runs, its restarts and whether it answers (exit 1 unless everything is up)",
    )
    p_logs = sub.add_parser("logs", help="the last lines of one log")
    p_logs.add_argument("name")
    sub.add_parser("env", help="print the settings for the local stack as shell exports")
    sub.add_parser(
        "pg-secure",
        help="move this folder's PostgreSQL from trust to scram-sha-256 passwords (kept in "
        f"{PG_PASSWORDS_FILE}, 0600)",
    )
    # `./run up` hands its arguments to this and to up.py: each takes its own
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "up":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.cmd == "up":
            info = up(brokers=args.brokers, secure=args.secure)
            log("ready: " + masked(" ".join(f"{k}={v}" for k, v in info.env().items())))
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            return status()
        elif args.cmd == "logs":
            logs(args.name)
        elif args.cmd == "env":
            for k, v in {**local_info().env(), **kafka_client_env()}.items():
                print(f"export {k}={shlex.quote(v)}")
        elif args.cmd == "pg-secure":
            pg_secure(local_info())
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
