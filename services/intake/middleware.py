"""The intake app's ASGI middleware: the access log with request metrics, and the body
size limit (413 before the app sees a byte more than allowed)."""

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.identity import scrub_ids
from services.intake.contract import BULK_PATH, Problem
from services.intake.domain.commands import HARDSHIP_PATH

access_log = logging.getLogger("relief.intake.access")

# Pipeline metrics (bounded labels: route templates, methods, status codes)
REQUESTS = Counter(
    "relief_intake_requests_total", "intake HTTP requests", ["route", "method", "status"]
)
LATENCY = Histogram(
    "relief_intake_request_seconds",
    "intake HTTP request latency, including the wait for Kafka's acknowledgement",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class AccessLog:
    """Access log and request metrics, as plain ASGI (no response buffering in between)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what a crash before the response start amounts to

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed_s = time.perf_counter() - started
            # the route's template, never the path: case ids stay out of metric labels
            route = getattr(scope.get("route"), "path", "unmatched")
            method = str(scope.get("method", "?"))
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(elapsed_s)
            # paths may carry caller text: masked like everything else that is logged
            access_log.info(
                "%s %s %s %.1fms",
                method,
                scrub_ids(str(scope.get("path", ""))),
                status,
                elapsed_s * 1000,
            )


class BodyLimit:
    """413 for a body over the limit, before the app sees any of it (bounded memory)."""

    def __init__(self, app: ASGIApp, max_bytes: int, csv_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.csv_max_bytes = csv_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == BULK_PATH:
            # read line by line as it arrives, each line bounded (bulk_api.py)
            await self.app(scope, receive, send)
            return
        limit = self.csv_max_bytes if scope["path"] == HARDSHIP_PATH else self.max_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    body = Problem(detail=f"request body over {limit} bytes").model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
