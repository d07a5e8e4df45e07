"""The application services on the local stack: started, stopped and reported on by name.

Each runs as its own process (as it would on its own machine), with the settings of the
local stack in its environment, as a child of one supervisor (`supervisor.py`) that
restarts a crashed service with backoff. Logs, state files and the supervisor's pid live
in `.local/services/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import stack, supervisor

INTAKE_PORT = int(os.environ.get("RELIEF_LOCAL_INTAKE_PORT", "8080"))
DASHBOARD_PORT = int(os.environ.get("RELIEF_LOCAL_DASHBOARD_PORT", "8090"))
CASEBOOK_PORT = int(os.environ.get("RELIEF_LOCAL_CASEREADS_PORT", "8070"))
CONSOLE_PORT = int(os.environ.get("RELIEF_LOCAL_CONSOLE_PORT", "8060"))


@dataclass(frozen=True)
class Service:
    name: str
    args: list[str]  # after `python -m`
    before: list[list[str]] = field(default_factory=list)  # one-off steps, run to completion
    port: int | None = None  # answers here when up
    env: dict[str, str] = field(default_factory=dict)  # its own settings, over the stack's
    kafka: str | None = None  # its Kafka principal on a secure Kafka (`up --secure`)


METRICS_PORT = 9101  # the first processor worker's /metrics; the next ones count up
SCALE_FILE = "scale.json"  # in svc_dir(): how many workers and intake instances run


def scaled(
    workers: int = 1, intakes: int = 1, ledgers: int = 1, casebooks: int = 1
) -> list[Service]:
    """Every service, with `workers` processor workers (each its own data folder and
    metrics port; Faust shares the towns' partitions between them) and `intakes` intake
    instances on one address (the kernel spreads connections over them: SO_REUSEPORT;
    Idempotency-Keys are shared in PostgreSQL), `ledgers` ledger consumers, each storing
    its share of the postings' partitions (RELIEF_LEDGER_SHARD), and `casebooks` casebook
    consumers likewise (RELIEF_CASEBOOK_SHARD)."""
    state = stack.state_dir()
    processors = [
        Service(
            "emergency" if k == 1 else f"emergency-{k}",
            ["services.emergency", "worker", "--loglevel", "warn"],
            kafka="emergency",
            env={
                "RELIEF_EMERGENCY_DATA_DIR": str(
                    state / ("emergency" if k == 1 else f"emergency-{k}")
                ),
                # 9101, then 9112, 9113... (the ledger's is 9102, the casebook's 9103)
                "RELIEF_EMERGENCY_METRICS_PORT": str(METRICS_PORT if k == 1 else 9110 + k),
            },
        )
        for k in range(1, workers + 1)
    ]
    intake_args = ["services.intake", "serve", "--host", "127.0.0.1", "--port", str(INTAKE_PORT)]
    front = [
        Service(
            "intake" if k == 1 else f"intake-{k}",
            intake_args + (["--reuse-port"] if intakes > 1 else []),
            before=[["services.intake", "migrate"]] if k == 1 else [],
            port=INTAKE_PORT,
            kafka="intake",
        )
        for k in range(1, intakes + 1)
    ]
    return [
        # the ledger first: its migrations must exist before anything reads it
        *(
            Service(
                "ledger" if k == 0 else f"ledger-{k + 1}",
                ["services.ledger", "run"],
                before=[["services.ledger", "migrate"]] if k == 0 else [],
                kafka="ledger",
                env={}
                if ledgers == 1
                else {
                    "RELIEF_LEDGER_SHARD": f"{k}/{ledgers}",
                    # 9102, then 9122, 9123...
                    "RELIEF_LEDGER_METRICS_PORT": "9102" if k == 0 else str(9120 + k + 1),
                },
            )
            for k in range(ledgers)
        ),
        # the casebook: every case as the decisions state it, and what became of submissions
        *(
            Service(
                "casebook" if k == 0 else f"casebook-{k + 1}",
                ["services.casebook", "run"],
                before=[["services.casebook", "migrate"]] if k == 0 else [],
                kafka="casebook",
                env={}
                if casebooks == 1
                else {
                    "RELIEF_CASEBOOK_SHARD": f"{k}/{casebooks}",
                    # 9103, then 9132, 9133...
                    "RELIEF_CASEBOOK_METRICS_PORT": "9103" if k == 0 else str(9130 + k + 1),
                },
            )
            for k in range(casebooks)
        ),
        Service(
            "casereads",
            ["services.casebook", "serve", "--port", str(CASEBOOK_PORT)],
            port=CASEBOOK_PORT,
            kafka="casebook",
        ),
        *processors,
        # P6 across towns: the county's claims stage before the towns (one partition; a
        # second instance would only stand by)
        Service(
            "claims",
            ["services.emergency", "claims", "--loglevel", "warn"],
            kafka="emergency",
            env={"RELIEF_EMERGENCY_DATA_DIR": str(state / "claims")},
        ),
        Service("clock", ["services.emergency", "clock"], kafka="clock"),
        Service(
            "dashboard",
            ["services.ledger", "serve", "--port", str(DASHBOARD_PORT)],
            port=DASHBOARD_PORT,
            kafka="dashboard",
        ),
        *front,
        # the web pages for the bureau, the towns, civil affairs and finance (over intake)
        Service(
            "console",
            ["services.console", "serve", "--host", "127.0.0.1", "--port", str(CONSOLE_PORT)],
            port=CONSOLE_PORT,
        ),
    ]


def chosen() -> list[Service]:
    """The services as the last start chose them (one worker, one intake by default)."""
    path = svc_dir() / SCALE_FILE
    if not path.exists():
        return scaled()
    scale = json.loads(path.read_text(encoding="utf-8"))
    return scaled(
        int(scale.get("workers", 1)),
        int(scale.get("intakes", 1)),
        int(scale.get("ledgers", 1)),
        int(scale.get("casebooks", 1)),
    )


SERVICES: list[Service] = scaled()


def names() -> list[str]:
    return [s.name for s in chosen()]


def svc_dir() -> Path:
    return stack.state_dir() / "services"


def logfile(name: str) -> Path:
    return svc_dir() / f"{name}.log"


def legacy_pidfile(name: str) -> Path:
    """Where a service started without the supervisor (before it existed) kept its pid."""
    return svc_dir() / f"{name}.pid"


def service_token() -> str:
    """The token intake and the dashboard read the casebook and the ledger with, made once
    per state folder (readable by the owner only)."""
    path = stack.state_dir() / "service-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def service_env(info: stack.StackInfo) -> dict[str, str]:
    state = stack.state_dir()
    token = service_token()
    digest = hashlib.sha256(token.encode()).hexdigest()
    dashboard_hashes = ",".join(
        h for h in (os.environ.get("RELIEF_DASHBOARD_TOKEN_HASHES", ""), f"service:{digest}") if h
    )
    return {
        **os.environ,
        **info.env(),
        "RELIEF_STATE_DIR": str(state),
        "RELIEF_EMERGENCY_DATA_DIR": str(state / "emergency"),
        "RELIEF_INTAKE_TOKENS_FILE": str(state / "tokens.toml"),
        # idempotency keys in PostgreSQL, as a deployment with several intake instances
        "RELIEF_INTAKE_KEYS_DATABASE_URL": info.app_url,
        # reads between services: intake and the dashboard ask the casebook, intake asks
        # the ledger for reserves, each with the service token
        "RELIEF_CASEBOOK_URL": f"http://127.0.0.1:{CASEBOOK_PORT}",
        "RELIEF_CASEBOOK_TOKEN": token,
        "RELIEF_CASEBOOK_TOKEN_HASHES": digest,
        "RELIEF_LEDGER_URL": f"http://127.0.0.1:{DASHBOARD_PORT}",
        "RELIEF_LEDGER_TOKEN": token,
        "RELIEF_DASHBOARD_TOKEN_HASHES": dashboard_hashes,
        "RELIEF_CONSOLE_INTAKE_URL": f"http://127.0.0.1:{INTAKE_PORT}",
        "RELIEF_CONSOLE_DASHBOARD_URL": f"http://127.0.0.1:{DASHBOARD_PORT}",
        "PYTHONUNBUFFERED": "1",
    }


def spec(selected: Sequence[Service] | None = None) -> supervisor.Spec:
    return supervisor.Spec(
        programs=tuple(
            supervisor.Program(
                svc.name,
                (sys.executable, "-m", *svc.args),
                # on a secure Kafka, each service connects as its own principal (its ACLs)
                env={**svc.env, **(stack.kafka_client_env(svc.kafka) if svc.kafka else {})},
                cwd=str(stack.ROOT),
            )
            for svc in (chosen() if selected is None else selected)
        )
    )


def start_all(
    info: stack.StackInfo,
    workers: int | None = None,
    intakes: int | None = None,
    ledgers: int | None = None,
    casebooks: int | None = None,
) -> None:
    """Start the supervisor with every service; nothing changes when it already runs.
    `workers`, `intakes`, `ledgers` and `casebooks` scale the processor, intake and the
    ledger's and the casebook's consumers (remembered for next time)."""
    svc_dir().mkdir(parents=True, exist_ok=True)
    running = supervisor.supervisor_pid(svc_dir())
    if running is not None:
        stack.log(f"services already running (supervisor pid {running})")
        return
    _stop_unsupervised()
    if any(n is not None for n in (workers, intakes, ledgers, casebooks)):
        before = chosen()
        scale = {
            "workers": workers or sum(s.name.startswith("emergency") for s in before),
            "intakes": intakes or sum(s.name.startswith("intake") for s in before),
            "ledgers": ledgers or sum(s.args[:2] == ["services.ledger", "run"] for s in before),
            "casebooks": casebooks
            or sum(s.args[:2] == ["services.casebook", "run"] for s in before),
        }
        (svc_dir() / SCALE_FILE).write_text(json.dumps(scale), encoding="utf-8")
    selected = chosen()
    env = service_env(info)
    for svc in selected:
        for step in svc.before:
            result = subprocess.run(
                [sys.executable, "-m", *step],
                env=env,
                cwd=stack.ROOT,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise stack.StackError(
                    f"{' '.join(step)} failed (exit {result.returncode}): "
                    f"{(result.stderr or result.stdout).strip()[-2000:]}"
                )
        if svc.port is not None and stack.port_open(svc.port) and "--reuse-port" not in svc.args:
            raise stack.StackError(
                f"port {svc.port} for {svc.name} is taken by another program; "
                f"set RELIEF_LOCAL_{svc.name.upper()}_PORT"
            )
    stack.log(f"starting the supervisor with {', '.join(s.name for s in selected)}")
    try:
        pid = supervisor.launch(svc_dir(), spec(selected), env=env)
    except supervisor.SupervisorError as exc:
        raise stack.StackError(str(exc)) from exc
    stack.log(f"supervisor pid {pid}; its log: {svc_dir() / supervisor.LOG_FILE}")


def _stop_unsupervised() -> None:
    """Services started one by one before the supervisor existed: stopped, so the
    supervisor's own children do not find their ports taken."""
    for svc in reversed(chosen()):
        if stack.read_pid(legacy_pidfile(svc.name)) is not None:
            stack.log(f"{svc.name} runs without the supervisor")
        stack.stop_pid(legacy_pidfile(svc.name), svc.name)


def stop_all() -> None:
    supervisor.stop(svc_dir(), say=stack.log)
    _stop_unsupervised()


def status_lines(selected: Sequence[Service] | None = None) -> tuple[list[str], bool]:
    """One line per service (up / restarting / crash loop / down, restarts, last exit);
    and whether every one is up."""
    directory = svc_dir()
    sup = supervisor.supervisor_pid(directory)
    states = supervisor.read_states(directory)
    lines = [
        f"{'supervisor':<10} {'up' if sup else 'down':<11} pid {sup or '-':<8} "
        f"log: {directory / supervisor.LOG_FILE}"
    ]
    ok = True
    for svc in chosen() if selected is None else selected:
        state = states.get(svc.name)
        legacy = stack.read_pid(legacy_pidfile(svc.name))
        if state is not None:
            label: str = state.label(sup is not None)
            pid = state.pid if label in ("up", "crash loop") else None
            restarts = str(state.restarts)
            last_exit = supervisor.describe_exit(state.last_exit_code)
        else:
            label, pid, restarts, last_exit = "down", None, "-", "-"
        if legacy is not None and sup is None:
            label, pid = "unsupervised", legacy  # `./run down && ./run up` supervises it
        ok = ok and label == "up"
        where = f"http://127.0.0.1:{svc.port}" if svc.port else ""
        lines.append(
            f"{svc.name:<10} {label:<11} pid {pid or '-':<8} restarts {restarts:<4} "
            f"last exit {last_exit:<8} {where:<22} log: {logfile(svc.name)}"
        )
    return lines, ok


def print_status(selected: Sequence[Service] | None = None) -> bool:
    lines, ok = status_lines(selected)
    for line in lines:
        print(line)
    return ok
