"""Who may read the casebook: the services holding a token whose SHA-256 is configured
(intake, which scopes each read to its caller's town, and the finance dashboard)."""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_TOKEN_CHARS = 512  # a limit on everything (STYLE)
MAX_TOKENS = 100


class TokenConfigError(ValueError):
    """RELIEF_CASEBOOK_TOKEN_HASHES is not a list of SHA-256 hex digests."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_hashes(text: str) -> frozenset[str]:
    """Comma-separated SHA-256 hex digests (`sha256sum` of each token)."""
    out = set()
    for item in (part.strip().lower() for part in text.split(",")):
        if not item:
            continue
        if not _HEX.fullmatch(item):
            raise TokenConfigError("a token hash is 64 hex digits (sha256sum of the token)")
        out.add(item)
    if len(out) > MAX_TOKENS:
        raise TokenConfigError(f"more than {MAX_TOKENS} token hashes")
    return frozenset(out)


def allowed(hashes: frozenset[str], token: str | None) -> bool:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    digest = token_hash(token)
    found = False
    for known in hashes:  # every configured hash, in constant time each
        found |= hmac.compare_digest(known, digest)
    return found


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
