"""The local stack's supervisor, with small programs of its own in a folder of its own:
a crashed service comes back, one that cannot stay up is reported as a crash loop, and
stopping the supervisor stops every child (in reverse order, SIGKILL for a stubborn one)
and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from deploy.local import services, supervisor

pytestmark = pytest.mark.integration

WAIT_S = 30.0  # a bound on every wait below, never a claim about speed
T = TypeVar("T")

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")
FAILER = (sys.executable, "-c", "import sys; sys.exit(1)")
# short limits: a failing program is a crash loop after 3 restarts within 0.1 + 0.2 + 0.4 s
FAST = supervisor.Limits(
    backoff_initial_s=0.1,
    backoff_max_s=0.4,
    healthy_after_s=60.0,
    crash_loop_restarts=3,
    crash_loop_window_s=120.0,
    stop_timeout_s=5.0,
)


def _trap(name: str, log: Path) -> tuple[str, ...]:
    """A program that notes its SIGTERM in `log`, then exits; `log`.NAME.ready once it
    listens."""
    code = (
        "import pathlib, signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(log)!r}, 'a').write({name!r} + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"pathlib.Path({str(log)!r} + '.' + {name!r} + '.ready').touch()\n"
        "time.sleep(600)\n"
    )
    return (sys.executable, "-c", code)


def wait_for(what: str, probe: Callable[[], T | None]) -> T:
    """`probe`'s first answer that is not None (or False)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = probe()
        if got is not None and got is not False:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT_S:g} s: {what}")


def restarted(folder: Path, name: str, before: int) -> int | None:
    pid = running_pid(folder, name)
    return pid if pid is not None and pid != before else None


def in_crash_loop(folder: Path, name: str) -> supervisor.ServiceState | None:
    state = supervisor.read_states(folder).get(name)
    return state if state is not None and state.crash_loop else None


def running_pid(folder: Path, name: str) -> int | None:
    state = supervisor.read_states(folder).get(name)
    if state is None or state.state != "running" or state.pid is None:
        return None
    return state.pid if supervisor.alive(state.pid) else None


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state folder of its own (RELIEF_STATE_DIR); whatever runs there is stopped after."""
    monkeypatch.setenv("RELIEF_STATE_DIR", str(tmp_path))
    directory = services.svc_dir()
    assert directory == tmp_path.resolve() / "services"
    yield directory
    supervisor.stop(directory, say=lambda _: None)


def test_a_killed_service_comes_back_and_a_failing_one_is_a_crash_loop(folder: Path) -> None:
    spec = supervisor.Spec(
        (supervisor.Program("sleeper", SLEEPER), supervisor.Program("failer", FAILER)), FAST
    )
    sup = supervisor.launch(folder, spec)
    first = wait_for("the sleeper runs", lambda: running_pid(folder, "sleeper"))
    assert supervisor.read_states(folder)["sleeper"].restarts == 0

    # a second start with the supervisor running changes nothing (./run up is idempotent)
    assert supervisor.launch(folder, spec) == sup
    assert running_pid(folder, "sleeper") == first

    os.kill(first, signal.SIGKILL)
    second = wait_for("the sleeper is started again", lambda: restarted(folder, "sleeper", first))
    sleeper = supervisor.read_states(folder)["sleeper"]
    assert sleeper.restarts == 1
    assert sleeper.last_exit_code == -signal.SIGKILL
    assert sleeper.label(supervisor_alive=True) == "up"
    assert not sleeper.crash_loop

    failer = wait_for("the failer is a crash loop", lambda: in_crash_loop(folder, "failer"))
    assert failer.restarts >= FAST.crash_loop_restarts
    assert failer.last_exit_code == 1
    assert failer.label(supervisor_alive=True) == "crash loop"

    # what `./run status` prints, and its verdict: not everything is up
    fakes = [services.Service("sleeper", []), services.Service("failer", [])]
    lines, ok = services.status_lines(fakes)
    assert not ok
    sleeper_line = next(line for line in lines if line.startswith("sleeper "))
    failer_line = next(line for line in lines if line.startswith("failer "))
    assert " up " in sleeper_line and "restarts 1 " in sleeper_line and "SIGKILL" in sleeper_line
    assert "crash loop" in failer_line and "last exit 1 " in failer_line
    # the restart is marked in the service's own log
    assert "restart 1, last exit SIGKILL" in (folder / "sleeper.log").read_text()

    supervisor.stop(folder, say=lambda _: None)
    wait_for("the supervisor exits", lambda: not supervisor.alive(sup))
    for pid in (first, second):
        assert not supervisor.alive(pid), f"pid {pid} outlived the supervisor"
    states = supervisor.read_states(folder)
    assert {s.state for s in states.values()} == {"stopped"}
    assert all(s.pid is None for s in states.values())
    lines, ok = services.status_lines(fakes)
    assert not ok and all(" down " in line for line in lines)


def test_stop_goes_in_reverse_order_and_kills_what_ignores_sigterm(folder: Path) -> None:
    stops = folder.parent / "stops.txt"
    stubborn = (
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
    )
    limits = supervisor.Limits(stop_timeout_s=1.0)
    spec = supervisor.Spec(
        (
            supervisor.Program("first", _trap("first", stops)),
            supervisor.Program("second", _trap("second", stops)),
            supervisor.Program("stubborn", stubborn),
        ),
        limits,
    )
    sup = supervisor.launch(folder, spec)
    pids: dict[str, int] = {}
    for name in ("first", "second", "stubborn"):
        pids[name] = wait_for(f"{name} runs", partial(running_pid, folder, name))
    for name in ("first", "second"):
        ready = Path(f"{stops}.{name}.ready")
        wait_for(f"{name} listens for SIGTERM", ready.exists)
    supervisor.stop(folder, say=lambda _: None)
    wait_for("the supervisor exits", lambda: not supervisor.alive(sup))

    assert stops.read_text().split() == ["second", "first"]
    states = supervisor.read_states(folder)
    assert states["stubborn"].last_exit_code == -signal.SIGKILL
    assert states["first"].last_exit_code == 0
    for name, pid in pids.items():
        assert not supervisor.alive(pid), f"{name} (pid {pid}) outlived the supervisor"


def test_children_do_not_outlive_a_killed_supervisor(folder: Path) -> None:
    spec = supervisor.Spec((supervisor.Program("sleeper", SLEEPER),), FAST)
    sup = supervisor.launch(folder, spec)
    child = wait_for("the sleeper runs", lambda: running_pid(folder, "sleeper"))
    os.kill(sup, signal.SIGKILL)
    wait_for("the sleeper is gone with its supervisor", lambda: not supervisor.alive(child))
    assert supervisor.supervisor_pid(folder) is None
    lines, ok = services.status_lines([services.Service("sleeper", [])])
    assert not ok and " down " in lines[1]


def test_a_second_supervisor_in_the_same_folder_refuses_to_start(folder: Path) -> None:
    spec = supervisor.Spec((supervisor.Program("sleeper", SLEEPER),), FAST)
    supervisor.launch(folder, spec)
    child = wait_for("the sleeper runs", lambda: running_pid(folder, "sleeper"))
    second = subprocess.run(
        [sys.executable, supervisor.__file__, "--spec", str(folder / supervisor.SPEC_FILE)],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert second.returncode == 3, second.stdout + second.stderr
    assert "another supervisor" in second.stdout
    assert running_pid(folder, "sleeper") == child
