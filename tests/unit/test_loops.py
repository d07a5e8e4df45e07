"""The long-running processes' event loop: uvloop where installed, the same results."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from relief_platform import loops

ROOT = Path(__file__).resolve().parents[2]


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_runs_the_coroutine_on_uvloop_and_returns_its_value() -> None:
    assert loops.run(_loop_module()).startswith("uvloop")


def test_run_passes_an_exception_through() -> None:
    async def fails() -> None:
        raise LookupError("no such case")

    with pytest.raises(LookupError, match="no such case"):
        loops.run(fails())


def test_without_uvloop_run_uses_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loops.run(_loop_module()) == "asyncio.unix_events"


def _in_a_process(code: str) -> str:
    # the policy is process-wide: each check in a process of its own
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.strip()


def test_use_uvloop_makes_the_next_loop_uvloop() -> None:
    code = (
        "import asyncio\n"
        "from relief_platform import loops\n"
        "loops.use_uvloop()\n"
        "print(type(asyncio.new_event_loop()).__module__)\n"
    )
    assert _in_a_process(code).startswith("uvloop")


def test_the_processors_app_made_before_use_uvloop_still_gets_a_uvloop_loop() -> None:
    # the worker command makes the Faust app first, then sets the policy: nothing in
    # making the app may have fixed a loop (mode caches the first one it resolves)
    code = (
        "from relief_platform import loops\n"
        "from services.emergency.app import create_app\n"
        "from services.emergency.settings import EmergencySettings\n"
        "app = create_app(EmergencySettings())\n"
        "loops.use_uvloop()\n"
        "print(type(app.loop).__module__)\n"
    )
    assert _in_a_process(code).startswith("uvloop")
