"""The application services on the local stack: started, stopped and reported on by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deploy.local import stack

# name -> command line (run from the project root with the project's Python)
SERVICES: dict[str, list[str]] = {}


def names() -> list[str]:
    return list(SERVICES)


def svc_dir() -> Path:
    return stack.state_dir() / "services"


def logfile(name: str) -> Path:
    return svc_dir() / f"{name}.log"


def pidfile(name: str) -> Path:
    return svc_dir() / f"{name}.pid"


def start_all(info: stack.StackInfo) -> None:
    svc_dir().mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **info.env(), "RELIEF_STATE_DIR": str(stack.state_dir())}
    for name, cmd in SERVICES.items():
        if stack.read_pid(pidfile(name)) is not None:
            stack.log(f"{name} already running")
            continue
        stack.log(f"starting {name}")
        stack.spawn([sys.executable, *cmd], logfile(name), pidfile(name), env=env)


def stop_all() -> None:
    for name in reversed(list(SERVICES)):
        stack.stop_pid(pidfile(name), name)


def print_status() -> bool:
    ok = True
    for name in SERVICES:
        running = stack.read_pid(pidfile(name)) is not None
        ok = ok and running
        print(f"{name:<9} {'up  ' if running else 'down'}  log: {logfile(name)}")
    return ok
