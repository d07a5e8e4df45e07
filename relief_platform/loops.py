"""The event loop the long-running processes run on: uvloop where it is installed (as
intake's server does), asyncio's own loop elsewhere, with the same behaviour.

Under the whole pipeline's load, asyncio's loop, written in Python (its `select`, the
scheduling of every callback and transport), was 16-18 % of the Faust apps' time and 9 %
of the casebook's (py-spy, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:  # a platform without it (uvloop is not built for Windows)
        return asyncio.run(main)
    return uvloop.run(main)


def use_uvloop() -> None:
    """Make uvloop the loop of whatever starts its own loop later (a Faust worker: Faust
    reads its `--loop` option when `faust` is first imported, before a command runs, so
    the policy is set instead). Call it before any loop exists."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
