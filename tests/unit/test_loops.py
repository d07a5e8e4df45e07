"""The long-running processes' event loop: uvloop where installed, the same results."""

import asyncio
import subprocess
import sys
from pathlib import Path

from relief_platform import loops


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_runs_the_coroutine_on_uvloop_and_returns_its_value() -> None:
    assert loops.run(_loop_module()).startswith("uvloop")


def test_run_passes_an_exception_through() -> None:
    async def fails() -> None:
        raise LookupError("no such case")

    try:
        loops.run(fails())
    except LookupError as exc:
        assert str(exc) == "no such case"
    else:
        raise AssertionError("the exception was lost")


def test_use_uvloop_makes_the_next_loop_uvloop() -> None:
    # in a process of its own: the policy is process-wide
    code = (
        "import asyncio\n"
        "from relief_platform import loops\n"
        "loops.use_uvloop()\n"
        "loop = asyncio.new_event_loop()\n"
        "print(type(loop).__module__)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip().startswith("uvloop")
