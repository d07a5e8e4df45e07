"""The first answer to each Idempotency-Key, and how a second body differs from the first.

Two layers make a retried request safe:
1. the produced record's event_id is derived from the operation, the town it acts on,
   the caller's organisation and the key (`event_id_for`): the same key used for another
   town or another operation can never give the same id, while a duplicate produce
   (after a restart, on another intake instance, or after a 503 whose record Kafka did
   accept late) carries the same id and the processor applies it once (docs/design.md
   "effectively once");
2. this cache returns the first answer without producing again. It lives in process,
   bounded in entries (oldest evicted first) and in age (TTL): across restarts and
   instances layer 1 still holds, the caller just may get a fresh acknowledgement.

Pure: the caller passes the time (`now_s`, monotonic seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from schemas.envelope import derived_id

MAX_KEY_CHARS = 200
KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # printable ASCII, no spaces
MAX_FIELDS_NAMED = 50


def event_id_for(operation: str, town: str | None, org: str, key: str) -> uuid.UUID:
    """The event id of a write: one per (operation, town, organisation, key)."""
    return derived_id(f"intake:{org}", "idempotency_key", operation, town or "-", key)


# One encoder for every digest (json.dumps with options builds a new one per call: half
# the cost of a fingerprint). The text is what json.dumps gives with these options, so
# digests stored before stay comparable; a text, a whole number and null, most of a
# body's fields, are spelled by the encoder's own parts without its machinery.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_text: Callable[[str], str] = encode_basestring  # the encoder's own spelling of a text


def canonical(value: Any) -> str:
    """`value` as `json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` spells it."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return _CANONICAL.encode(value)


@lru_cache(maxsize=16)
def _keyed_hmac(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 under `key` with the key already absorbed: each digest copies it."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _digest(value: Any, key: bytes) -> str:
    mac = _keyed_hmac(key).copy()
    mac.update(canonical(value).encode("utf-8"))
    return mac.hexdigest()[:32]


def field_digests(body: Any, key: bytes, prefix: str = "") -> dict[str, str]:
    """{dotted field path: keyed digest of its value}; objects are opened, lists are
    leaves. Keyed digests, not values: the cache never keeps an ID number in clear, nor a
    plain hash of one (an ID number has few enough possible values to be guessed)."""
    if not (isinstance(body, Mapping) and (body or not prefix)):
        return {prefix or "(body)": _digest(body, key)}
    out: dict[str, str] = {}
    _open(body, key, prefix, out)
    return out


def _open(body: Mapping[str, Any], key: bytes, prefix: str, out: dict[str, str]) -> None:
    for k, v in body.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            _open(v, key, name, out)
        else:
            out[name] = _digest(v, key)


@dataclass(frozen=True)
class Fingerprint:
    operation: str  # method and route, with path parameters
    fields: Mapping[str, str]

    @classmethod
    def of(cls, operation: str, body: Any, key: bytes = b"") -> Fingerprint:
        return cls(operation, field_digests(body, key))

    def differing(self, other: Fingerprint) -> list[str]:
        """The fields whose values differ (sorted), "(operation)" if the route differs."""
        names: list[str] = []
        if self.operation != other.operation:
            names.append("(operation)")
        for name in sorted(set(self.fields) | set(other.fields)):
            if self.fields.get(name) != other.fields.get(name):
                names.append(name)
        return names[:MAX_FIELDS_NAMED]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Entry:
    fingerprint: Fingerprint
    answer: Answer
    stored_at_s: float


class IdempotencyCache:
    """Bounded (max_entries, oldest out first) and aged (ttl_s) first answers by key."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("an idempotency cache needs max_entries >= 1 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, org: str, key: str, now_s: float) -> Entry | None:
        self._expire(now_s)
        return self._entries.get((org, key))

    def put(
        self, org: str, key: str, fingerprint: Fingerprint, answer: Answer, now_s: float
    ) -> None:
        self._expire(now_s)
        self._entries[(org, key)] = Entry(fingerprint, answer, now_s)
        self._entries.move_to_end((org, key))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _expire(self, now_s: float) -> None:
        # entries are in insertion order, so the expired ones are at the front
        while self._entries:
            first = next(iter(self._entries.values()))
            if now_s - first.stored_at_s < self.ttl_s:
                break
            self._entries.popitem(last=False)
