"""The application services on the local stack: started, stopped and reported on by name.

Each runs as its own process (as it would on its own machine), with the settings of the
local stack in its environment; logs and pid files live in `.local/services/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import stack

INTAKE_PORT = int(os.environ.get("RELIEF_LOCAL_INTAKE_PORT", "8080"))
DASHBOARD_PORT = int(os.environ.get("RELIEF_LOCAL_DASHBOARD_PORT", "8090"))


@dataclass(frozen=True)
class Service:
    name: str
    args: list[str]  # after `python -m`
    before: list[list[str]] = field(default_factory=list)  # one-off steps, run to completion
    port: int | None = None  # answers here when up


SERVICES: list[Service] = [
    # the ledger first: its migrations must exist before anything reads it
    Service("ledger", ["services.ledger", "run"], before=[["services.ledger", "migrate"]]),
    Service("decisions", ["services.ledger", "decisions"]),
    Service("emergency", ["services.emergency", "worker", "--loglevel", "warn"]),
    Service("clock", ["services.emergency", "clock"]),
    Service(
        "dashboard",
        ["services.ledger", "serve", "--port", str(DASHBOARD_PORT)],
        port=DASHBOARD_PORT,
    ),
    Service(
        "intake",
        ["services.intake", "serve", "--host", "127.0.0.1", "--port", str(INTAKE_PORT)],
        port=INTAKE_PORT,
    ),
]


def names() -> list[str]:
    return [s.name for s in SERVICES]


def svc_dir() -> Path:
    return stack.state_dir() / "services"


def logfile(name: str) -> Path:
    return svc_dir() / f"{name}.log"


def pidfile(name: str) -> Path:
    return svc_dir() / f"{name}.pid"


def service_env(info: stack.StackInfo) -> dict[str, str]:
    state = stack.state_dir()
    return {
        **os.environ,
        **info.env(),
        "RELIEF_STATE_DIR": str(state),
        "RELIEF_EMERGENCY_DATA_DIR": str(state / "emergency"),
        "RELIEF_INTAKE_TOKENS_FILE": str(state / "tokens.toml"),
        "PYTHONUNBUFFERED": "1",
    }


def start_all(info: stack.StackInfo) -> None:
    svc_dir().mkdir(parents=True, exist_ok=True)
    env = service_env(info)
    for svc in SERVICES:
        if stack.read_pid(pidfile(svc.name)) is not None:
            stack.log(f"{svc.name} already running")
            continue
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
        if svc.port is not None and stack.port_open(svc.port):
            raise stack.StackError(
                f"port {svc.port} for {svc.name} is taken by another program; "
                f"set RELIEF_LOCAL_{svc.name.upper()}_PORT"
            )
        stack.log(f"starting {svc.name}")
        stack.spawn(
            [sys.executable, "-m", *svc.args], logfile(svc.name), pidfile(svc.name), env=env
        )


def stop_all() -> None:
    for svc in reversed(SERVICES):
        stack.stop_pid(pidfile(svc.name), svc.name)


def print_status() -> bool:
    ok = True
    for svc in SERVICES:
        running = stack.read_pid(pidfile(svc.name)) is not None
        ok = ok and running
        where = f"http://127.0.0.1:{svc.port}" if svc.port else ""
        print(
            f"{svc.name:<9} {'up  ' if running else 'down'}  {where:<24} log: {logfile(svc.name)}"
        )
    return ok
