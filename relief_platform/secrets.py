"""Secrets every service reads the same way: the run mode, keys in hex, and the keyed seal
(HMAC-SHA256) that makes a stored row unforgeable by whoever can only write the database.

`RELIEF_ENV=production` turns every development fallback into a refusal to start: a
service that would fall back to a key committed in this repository says which setting is
missing and exits (docs/design.md "personal data"; issue: no service starts without its
secrets in production).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

log = logging.getLogger("relief.secrets")

PRODUCTION = "production"
ENV_VARIABLE = "RELIEF_ENV"
# A seal key is at least 32 bytes (HMAC-SHA256's block of security; a shorter key is a
# guessable one).
MIN_SEAL_KEY_BYTES = 32
SEAL_BYTES = 32


class MissingSecretError(RuntimeError):
    """A secret the service needs in production is not configured (exit, never fall back)."""


def run_mode() -> str:
    return os.environ.get(ENV_VARIABLE, "development").strip().lower() or "development"


def in_production() -> bool:
    return run_mode() == PRODUCTION


def hex_key(setting: str, value: str, *, min_bytes: int) -> bytes:
    """`value` (hex) as bytes, or a ValueError naming the setting and what is wrong."""
    try:
        key = bytes.fromhex(value.strip())
    except ValueError as exc:
        raise ValueError(f"{setting} must be hex") from exc
    if len(key) < min_bytes:
        raise ValueError(f"{setting} must be at least {min_bytes} bytes ({2 * min_bytes} hex)")
    return key


def secret_or_development(setting: str, value: str, development_value: str) -> str:
    """The configured secret; outside production a development value with a warning; in
    production a MissingSecretError."""
    if value:
        return value
    if in_production():
        raise MissingSecretError(
            f"{setting} is not set and {ENV_VARIABLE}={PRODUCTION}: refusing to start "
            "with a development secret"
        )
    log.warning("%s is not set: using the development value (local stack and tests only)", setting)
    return development_value


def development_key(purpose: str) -> str:
    """A key for the local stack and tests only, derived from a public string: worthless
    outside this machine, and a different one per purpose."""
    return hashlib.sha256(f"relief development key: {purpose}".encode()).hexdigest()


class Sealer:
    """HMAC-SHA256 seals under one key, each with a purpose tag so that a seal made for one
    kind of row can never pass for another."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_SEAL_KEY_BYTES:
            raise ValueError(f"a seal key is at least {MIN_SEAL_KEY_BYTES} bytes")
        self._key = key
        # which key sealed a row, without revealing it (printed by verify, kept with heads)
        self.key_id = hashlib.sha256(b"relief seal key id:" + key).hexdigest()[:16]

    def seal(self, purpose: str, payload: bytes) -> bytes:
        tag = purpose.encode()
        return hmac.new(self._key, len(tag).to_bytes(2, "big") + tag + payload, "sha256").digest()

    def valid(self, purpose: str, payload: bytes, seal: bytes | None) -> bool:
        if seal is None or len(seal) != SEAL_BYTES:
            return False
        return hmac.compare_digest(self.seal(purpose, payload), seal)
