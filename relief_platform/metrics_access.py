"""Who may read `/metrics` on a service's public HTTP port (intake, the casebook's reads,
the dashboard): the figures — reserves, lag, case counts and latencies by town — are not
for the network (issue 13).

A request is answered when it comes from loopback *directly* (no `Forwarded` or
`X-Forwarded-For` header: behind a reverse proxy on the same machine every request
would look local), or when it carries `Authorization: Bearer <token>` whose SHA-256 is in
`RELIEF_METRICS_TOKEN_HASHES` (comma-separated hex; Prometheus sends it with
`authorization: {credentials_file: ...}`). Everything else is 404: the endpoint is not
advertised to whoever asks from outside.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi.telemetry import TelemetryConfig

# The service's metrics are Prometheus's, behind this door. FastAPI's native OpenTelemetry
# is turned off in its apps (intake, the casebook's reads, the console): with no provider
# configured it still looks in the environment for one on every request.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

ENV_VARIABLE = "RELIEF_METRICS_TOKEN_HASHES"
MAX_TOKEN_CHARS = 512  # a limit on everything (STYLE)
MAX_TOKENS = 100
_HEX = re.compile(r"^[0-9a-f]{64}$")
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


class MetricsTokenConfigError(ValueError):
    """RELIEF_METRICS_TOKEN_HASHES is not a list of SHA-256 hex digests."""


def parse_hashes(text: str) -> frozenset[str]:
    """'<hex>,<hex>' -> the set of digests; a clear error naming what is wrong."""
    out = set()
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if not _HEX.fullmatch(item):
            raise MetricsTokenConfigError(
                f"{ENV_VARIABLE}: each entry is 64 hex digits (sha256sum of the token), "
                f"not {item[:12]!r}…"
            )
        out.add(item)
    if len(out) > MAX_TOKENS:
        raise MetricsTokenConfigError(f"{ENV_VARIABLE}: more than {MAX_TOKENS} hashes")
    return frozenset(out)


def _loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a unix socket or something unknown: prove it with a token


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def allowed(peer: str | None, headers: Mapping[str, str], token_hashes: frozenset[str]) -> bool:
    """Whether a request for /metrics from `peer` with these headers is answered.
    `headers` is looked up by lower-case name."""
    token = _bearer(headers.get("authorization"))
    if token and len(token) <= MAX_TOKEN_CHARS and token_hashes:
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        found = False
        for known in token_hashes:  # every hash compared, each in constant time
            found |= hmac.compare_digest(known, digest)
        if found:
            return True
    forwarded = any(headers.get(name) for name in FORWARDING_HEADERS)
    return _loopback(peer) and not forwarded


class Guarded:
    """An ASGI app (prometheus_client's `make_asgi_app()`) answered only when `allowed`;
    otherwise 404. Mounted at /metrics by intake and the casebook's reads."""

    def __init__(self, app: Any, token_hashes: frozenset[str]) -> None:
        self.app = app
        self.token_hashes = token_hashes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in scope.get("headers", [])
            }
            client = scope.get("client")
            peer = client[0] if client else None
            if not allowed(peer, headers, self.token_hashes):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"not found\n"})
                return
        await self.app(scope, receive, send)


def serve_metrics(port: int, host: str, registry: Any = None, what: str = "metrics") -> bool:
    """Start a consumer's own `/metrics` endpoint (prometheus_client's server, on loopback
    unless told otherwise); 0 turns it off. A port already taken (a second consumer on the
    same machine) is logged, not fatal: metrics never stop relief. Whether it serves."""
    if port == 0:
        return False
    from prometheus_client import REGISTRY, start_http_server

    try:
        start_http_server(port, addr=host, registry=registry or REGISTRY)
    except OSError as exc:
        logging.getLogger("relief.platform.metrics").warning(
            "no /metrics for %s on port %d: %s", what, port, exc
        )
        return False
    return True
