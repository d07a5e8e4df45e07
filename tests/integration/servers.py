"""Real HTTP servers for tests: an ASGI app under uvicorn in a thread of its own (its own
event loop), on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outside_address() -> str | None:
    """An address of this machine that is not loopback (a request to it comes from
    "the network" as a server sees it), or None when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: the route picks the address
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def serve_uvicorn(
    app: Any, host: str = "127.0.0.1"
) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Start `app` (on `host`); its base URL on loopback, the server (set `should_exit`)
    and its thread."""
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv, thread


@contextmanager
def serving(app: Any) -> Iterator[str]:
    url, srv, thread = serve_uvicorn(app)
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(10)
