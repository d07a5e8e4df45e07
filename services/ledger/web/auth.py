"""Who may look: finance or county staff holding a token whose SHA-256 is configured,
and services (intake) that read a town's reserve on their callers' behalf.

Tokens travel as `Authorization: Bearer <token>` (intake, the console, scripts) or, for a
person at the page, in a cookie set by `POST /signin` (HttpOnly, SameSite=Strict, Secure):
the browser's EventSource sends it with every reconnect. Never in an address, where
proxies, access logs and the browser's history would keep it (issue 13).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re

ROLES = ("finance", "county", "service")
VIEWERS = ("finance", "county")  # the dashboard itself; services read the reserve API only
_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_TOKEN_CHARS = 512  # a limit on everything (STYLE)
MAX_TOKENS = 1_000
COOKIE = "relief_dashboard"  # as the console's `relief_session`: the token, HttpOnly


class TokenConfigError(ValueError):
    """RELIEF_DASHBOARD_TOKEN_HASHES is not a list of SHA-256 hex digests."""


@dataclasses.dataclass(frozen=True)
class Viewer:
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_hashes(text: str) -> dict[str, str]:
    """'<hex>' or '<role>:<hex>', comma-separated -> {hex: role}. A bare hash is finance's."""
    out: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        role, sep, digest = item.rpartition(":")
        role = role if sep else "finance"
        digest = digest.lower()
        if role not in ROLES:
            raise TokenConfigError(f"role {role!r} may not see the dashboard (only {ROLES})")
        if not _HEX.fullmatch(digest):
            raise TokenConfigError("a token hash is 64 hex digits (sha256sum of the token)")
        out[digest] = role
    if len(out) > MAX_TOKENS:
        raise TokenConfigError(f"more than {MAX_TOKENS} token hashes")
    return out


class TokenCheck:
    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = hashes

    def viewer(self, token: str | None) -> Viewer | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_hash(token)
        found = None
        for known, role in self._hashes.items():
            # compare every configured hash, in constant time each
            if hmac.compare_digest(known, digest):
                found = Viewer(role)
        return found


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
