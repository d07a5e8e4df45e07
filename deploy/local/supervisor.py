"""One supervisor for the local stack's application services.

It runs every service as its own child, restarts one that exits with a growing delay
(exponential backoff), reports each service's state in a small JSON file, and on
SIGTERM stops the children in reverse start order (SIGTERM, then SIGKILL after a
timeout) before it exits itself.

    python deploy/local/supervisor.py --spec .local/services/supervisor.spec.json

The spec names the programs in start order and may override the limits below (tests use
short ones); state, pid and log files are written beside it. `deploy/local/services.py`
writes the stack's spec and starts this detached; `./run status` reads the state files.

Standard library only: it must run before (and whatever) the project's dependencies are
installed in the interpreter it is given.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

# A crashed service is started again after 1 s, then 2, 4, ... up to a minute: a service
# that cannot start (Kafka away, a broken setting) is retried about once a minute, not spun.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 60.0
# A child that ran this long was healthy: its next crash backs off from the start again.
HEALTHY_AFTER_S = 60.0
# This many restarts within the window is reported as a crash loop (restarts go on).
CRASH_LOOP_RESTARTS = 5
CRASH_LOOP_WINDOW_S = 300.0
# On stop, each child gets SIGTERM and this long to exit (a Faust worker commits and
# closes its tables) before SIGKILL.
STOP_TIMEOUT_S = 20.0
# How often children are checked for an exit and due restarts are started.
POLL_S = 0.2
# How long `launch` waits for a new supervisor to take its lock and write its pid.
LAUNCH_TIMEOUT_S = 10.0
# A bound on the spec: the local stack has six services.
MAX_PROGRAMS = 32

SPEC_FILE = "supervisor.spec.json"
PID_FILE = "supervisor.pid"
LOCK_FILE = "supervisor.lock"
LOG_FILE = "supervisor.log"
STATE_SUFFIX = ".state.json"

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # names become file names
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

RunState = Literal["running", "backoff", "stopped"]
Say = Callable[[str], None]
Label = Literal["up", "restarting", "crash loop", "down"]


class SupervisorError(RuntimeError):
    """The supervisor could not be started or stopped; the message says why."""


# --------------------------------------------------------------------------- the spec


@dataclasses.dataclass(frozen=True)
class Limits:
    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_max_s: float = BACKOFF_MAX_S
    healthy_after_s: float = HEALTHY_AFTER_S
    crash_loop_restarts: int = CRASH_LOOP_RESTARTS
    crash_loop_window_s: float = CRASH_LOOP_WINDOW_S
    stop_timeout_s: float = STOP_TIMEOUT_S

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if not getattr(self, f.name) > 0:
                raise ValueError(f"supervisor limit {f.name} must be positive")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")


@dataclasses.dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # on top of ours
    cwd: str | None = None

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"program name {self.name!r} must match {NAME_PATTERN.pattern}")
        if not self.argv:
            raise ValueError(f"program {self.name} has no command")


@dataclasses.dataclass(frozen=True)
class Spec:
    programs: tuple[Program, ...]
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if not 1 <= len(self.programs) <= MAX_PROGRAMS:
            raise ValueError(f"a spec has 1 to {MAX_PROGRAMS} programs")
        names = [p.name for p in self.programs]
        if len(set(names)) != len(names):
            raise ValueError("program names must be unique")

    def to_json(self) -> str:
        return json.dumps(
            {
                "programs": [
                    {"name": p.name, "argv": list(p.argv), "env": dict(p.env), "cwd": p.cwd}
                    for p in self.programs
                ],
                "limits": dataclasses.asdict(self.limits),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Spec:
        raw = json.loads(text)
        return cls(
            programs=tuple(
                Program(
                    name=str(p["name"]),
                    argv=tuple(str(a) for a in p["argv"]),
                    env={str(k): str(v) for k, v in (p.get("env") or {}).items()},
                    cwd=p.get("cwd"),
                )
                for p in raw["programs"]
            ),
            limits=Limits(**raw.get("limits", {})),
        )


# --------------------------------------------------------------------------- state files


@dataclasses.dataclass(frozen=True)
class ServiceState:
    """What the supervisor last wrote about one service."""

    name: str
    state: RunState
    pid: int | None
    restarts: int
    last_exit_code: int | None  # negative: killed by that signal (subprocess's convention)
    last_start: str | None  # ISO 8601, UTC
    next_start: str | None  # when in backoff
    crash_loop: bool
    restarts_in_window: int
    supervisor_pid: int

    def label(self, supervisor_alive: bool) -> Label:
        """up / restarting (in backoff) / crash loop / down, as `./run status` shows it."""
        if not supervisor_alive or self.state == "stopped":
            return "down"
        if self.crash_loop:
            return "crash loop"
        if self.state == "backoff":
            return "restarting"
        return "up" if self.pid is not None and alive(self.pid) else "down"


def state_file(directory: Path, name: str) -> Path:
    return directory / f"{name}{STATE_SUFFIX}"


def read_states(directory: Path) -> dict[str, ServiceState]:
    states: dict[str, ServiceState] = {}
    for path in sorted(directory.glob(f"*{STATE_SUFFIX}")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            state = ServiceState(**{f.name: raw[f.name] for f in dataclasses.fields(ServiceState)})
        except (OSError, ValueError, KeyError, TypeError):
            continue  # written atomically, so only a foreign file fails here
        states[state.name] = state
    return states


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "-"
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return str(code)


# --------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: what kill(0) said
    return stat.rpartition(")")[2].split()[0] != "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # each child leads its own process group: what it started goes with it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """Children get SIGTERM if the supervisor dies (even by SIGKILL): never orphans."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, called after

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Child:
    """One supervised program: its process, its backoff and its restart history."""

    def __init__(self, program: Program, limits: Limits, directory: Path, say: Say) -> None:
        self.program = program
        self.limits = limits
        self.directory = directory
        self.say = say
        self.proc: subprocess.Popen[bytes] | None = None
        self.state: RunState = "stopped"
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_start: str | None = None
        self.started_s = 0.0
        self.backoff_s = limits.backoff_initial_s
        self.next_start_s: float | None = None
        self.next_start_iso: str | None = None
        self.restart_times_s: deque[float] = deque()
        self._written: dict[str, Any] | None = None

    @property
    def logfile(self) -> Path:
        return self.directory / f"{self.program.name}.log"

    def start(self, now_s: float) -> None:
        restart = self.last_start is not None
        if restart:
            self.restarts += 1
            self.restart_times_s.append(now_s)
        self.next_start_s = self.next_start_iso = None
        self.started_s = now_s
        self.last_start = _now_iso()
        env = {**os.environ, **self.program.env}
        with open(self.logfile, "ab") as out:
            # a marker in the service's own log, so `./run logs NAME` shows the restarts
            why = f"restart {self.restarts}, " if restart else ""
            last = f"last exit {describe_exit(self.last_exit_code)}" if restart else "first start"
            out.write(f"--- supervisor {self.last_start}: starting ({why}{last})\n".encode())
            out.flush()
            try:
                self.proc = subprocess.Popen(
                    list(self.program.argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.program.cwd,
                    start_new_session=True,
                    # safe here: the supervisor is single-threaded
                    preexec_fn=_die_with_parent(os.getpid()),
                )
            except OSError as exc:
                # a missing interpreter is a crash like any other: back off and retry
                self.say(f"{self.program.name}: cannot start: {exc}")
                self.proc = None
                self._exited(127, now_s)
                return
        self.state = "running"
        self.say(f"{self.program.name}: started, pid {self.proc.pid}")

    def poll(self, now_s: float) -> None:
        if self.state == "running" and self.proc is not None:
            code = self.proc.poll()
            if code is not None:
                _signal_group(self.proc.pid, signal.SIGKILL)  # anything it left behind
                self._exited(code, now_s)
        elif (
            self.state == "backoff" and self.next_start_s is not None and now_s >= self.next_start_s
        ):
            self.start(now_s)

    def _exited(self, code: int, now_s: float) -> None:
        ran_s = now_s - self.started_s
        self.last_exit_code = code
        if ran_s >= self.limits.healthy_after_s:
            self.backoff_s = self.limits.backoff_initial_s
        delay_s = self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, self.limits.backoff_max_s)
        self.state = "backoff"
        self.next_start_s = now_s + delay_s
        self.next_start_iso = datetime.fromtimestamp(time.time() + delay_s, UTC).isoformat(
            timespec="seconds"
        )
        self.say(
            f"{self.program.name}: exited {describe_exit(code)} after {ran_s:.1f} s; "
            f"restart in {delay_s:g} s"
        )

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL; the child is reaped either way."""
        self.next_start_s = self.next_start_iso = None
        proc = self.proc
        if self.state != "running" or proc is None:
            self.state = "stopped"
            return
        if proc.poll() is None:
            self.say(f"{self.program.name}: stopping pid {proc.pid}")
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.limits.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.say(
                    f"{self.program.name}: still running after "
                    f"{self.limits.stop_timeout_s:g} s: SIGKILL"
                )
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers in its group
        self.last_exit_code = proc.returncode
        self.state = "stopped"

    def crash_loop(self, now_s: float) -> tuple[bool, int]:
        window_start_s = now_s - self.limits.crash_loop_window_s
        while self.restart_times_s and self.restart_times_s[0] < window_start_s:
            self.restart_times_s.popleft()
        recent = len(self.restart_times_s)
        return recent >= self.limits.crash_loop_restarts, recent

    def write_state(self, now_s: float) -> None:
        """Writes the state file when anything in it changed (also the crash-loop window)."""
        looping, recent = self.crash_loop(now_s)
        running = self.state == "running" and self.proc is not None
        state = ServiceState(
            name=self.program.name,
            state=self.state,
            pid=self.proc.pid if running and self.proc is not None else None,
            restarts=self.restarts,
            last_exit_code=self.last_exit_code,
            last_start=self.last_start,
            next_start=self.next_start_iso,
            crash_loop=looping,
            restarts_in_window=recent,
            supervisor_pid=os.getpid(),
        )
        record = dataclasses.asdict(state)
        if record != self._written:
            _write_atomically(
                state_file(self.directory, self.program.name), json.dumps(record, indent=2)
            )
            self._written = record


def _logger(out: TextIO) -> Say:
    def say(msg: str) -> None:
        print(f"{_now_iso()} [supervisor] {msg}", file=out, flush=True)

    return say


def run(spec_path: Path, out: TextIO = sys.stdout) -> int:
    say = _logger(out)
    directory = spec_path.parent
    lock = open(directory / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another supervisor runs in {directory}: not starting a second one")
        lock.close()
        return 3
    try:
        spec = Spec.from_json(spec_path.read_text(encoding="utf-8"))
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            if not stopping:
                say(f"{signal.Signals(signum).name}: stopping")
            stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)
        _write_atomically(directory / PID_FILE, f"{os.getpid()}\n")
        say(f"pid {os.getpid()}: supervising {', '.join(p.name for p in spec.programs)}")
        children = [Child(p, spec.limits, directory, say) for p in spec.programs]
        for child in children:
            if stopping:
                break
            child.start(time.monotonic())
            child.write_state(time.monotonic())
        while not stopping:
            for child in children:
                now_s = time.monotonic()
                child.poll(now_s)
                child.write_state(now_s)
            time.sleep(POLL_S)
        for child in reversed(children):  # the reverse of the start order
            child.stop()
            child.write_state(time.monotonic())
        say("every service stopped")
        return 0
    finally:
        with contextlib.suppress(FileNotFoundError):
            if (directory / PID_FILE).read_text().strip() == str(os.getpid()):
                (directory / PID_FILE).unlink()
        lock.close()


# --------------------------------------------------------------------------- the client side


def supervisor_pid(directory: Path) -> int | None:
    """The running supervisor of this folder, if any."""
    try:
        pid = int((directory / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def launch(
    directory: Path,
    spec: Spec,
    *,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> int:
    """Start a detached supervisor for `spec` unless one already runs here (idempotent);
    returns its pid once it holds its lock and has written its pid."""
    running = supervisor_pid(directory)
    if running is not None:
        return running
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / SPEC_FILE
    _write_atomically(spec_path, spec.to_json())
    with open(directory / LOG_FILE, "ab") as out:
        proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--spec", str(spec_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # outlives `./run up`, and a Ctrl-C in its terminal
        )
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while time.monotonic() < deadline:
        if supervisor_pid(directory) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            raise SupervisorError(
                f"the supervisor exited at start (exit {proc.returncode}); "
                f"see {directory / LOG_FILE}"
            )
        time.sleep(0.05)
    raise SupervisorError(
        f"the supervisor did not start within {LAUNCH_TIMEOUT_S:g} s; see {directory / LOG_FILE}"
    )


def stop(directory: Path, say: Say = print) -> None:
    """SIGTERM to the supervisor and a bounded wait while it stops its children; SIGKILL
    after that, and any child it left behind is stopped here."""
    try:
        spec: Spec | None = Spec.from_json((directory / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        spec = None
    pid = supervisor_pid(directory)
    if pid is not None:
        limits = spec.limits if spec else Limits()
        programs = len(spec.programs) if spec else MAX_PROGRAMS
        # every child may use its whole stop timeout, one after the other
        timeout_s = programs * limits.stop_timeout_s + 10.0
        say(f"stopping the supervisor (pid {pid}) and its services")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if alive(pid):
            say(f"the supervisor did not stop in {timeout_s:g} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if spec is not None:
        _stop_leftovers(directory, spec, say)


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _stop_leftovers(directory: Path, spec: Spec, say: Say) -> None:
    """Children still running after their supervisor died (where the kernel does not send
    them SIGTERM on its death): only a pid still running the program's own command."""
    states = read_states(directory)
    argv_of = {p.name: p.argv for p in spec.programs}
    for program in reversed(spec.programs):
        state = states.get(program.name)
        if state is None or state.pid is None or not alive(state.pid):
            continue
        if _cmdline(state.pid) != argv_of[program.name]:
            continue  # the pid was reused by another program: not ours to stop
        say(f"stopping {program.name} (pid {state.pid}), left behind by its supervisor")
        _signal_group(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + spec.limits.stop_timeout_s
        while time.monotonic() < deadline and alive(state.pid):
            time.sleep(0.1)
        _signal_group(state.pid, signal.SIGKILL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, required=True, help="the programs and limits (JSON)")
    args = parser.parse_args(argv)
    return run(args.spec.resolve())


if __name__ == "__main__":
    sys.exit(main())
