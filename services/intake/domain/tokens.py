"""API tokens: only their SHA-256 is kept at rest, each mapped to who holds it.

The tokens file (RELIEF_INTAKE_TOKENS_FILE) is TOML or JSON:

    [[tokens]]
    sha256 = "<64 hex: sha256 of the token>"
    role = "town"               # schemas.envelope.Role
    org = "索镇街道"
    town = "370321001"          # required for, and only for, role town
    holder = "索镇民政办 王某"      # the person who holds it (recorded on their decisions)

A leaked file leaks no token. `relief token add` appends an entry and prints the token once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.envelope import MAX_ORG_TEXT, TOWN_CODE_PATTERN, Actor, Role

MAX_TOKEN_CHARS = 512
MAX_TOKENS = 10_000
TOKEN_BYTES = 32  # 256 bits of randomness per token


class TokenConfigError(ValueError):
    """The tokens file does not parse or an entry does not validate; says where."""


class Principal(BaseModel):
    """Who a valid token belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    org: str = Field(min_length=1, max_length=MAX_ORG_TEXT)
    town: str | None = Field(default=None, pattern=TOWN_CODE_PATTERN, max_length=12)
    # section 十: the person who holds the token; every command and the decisions that
    # apply it name them (schemas.envelope.Actor.person)
    holder: str | None = Field(default=None, min_length=1, max_length=MAX_ORG_TEXT)

    @model_validator(mode="after")
    def _town_for_towns(self) -> Self:
        # A town acts only for its own town: its token must name it.
        if (self.role is Role.TOWN) != (self.town is not None):
            raise ValueError("town is required for, and only for, role town")
        return self

    @property
    def actor(self) -> Actor:
        return Actor(role=self.role, org=self.org, person=self.holder)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def parse_tokens(text: str, fmt: str) -> dict[str, Principal]:
    """{sha256: Principal} from the text of a tokens file, `fmt` "toml" or "json"."""
    try:
        data: Any = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise TokenConfigError(f"tokens file is not valid {fmt}: {exc}") from None
    entries = data.get("tokens", []) if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise TokenConfigError("tokens file: expected a list under 'tokens'")
    if len(entries) > MAX_TOKENS:
        raise TokenConfigError(f"tokens file: more than {MAX_TOKENS} tokens")
    out: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        try:
            p = Principal.model_validate(entry)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(entry)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise TokenConfigError(f"tokens file: entry {i}: {where}") from None
        out[p.sha256] = p
    return out


def toml_entry(p: Principal) -> str:
    """One `[[tokens]]` table; json.dumps gives valid TOML basic strings (\\u escapes)."""
    lines = ["[[tokens]]", f"sha256 = {json.dumps(p.sha256)}", f"role = {json.dumps(p.role.value)}"]
    lines.append(f"org = {json.dumps(p.org)}")
    if p.town is not None:
        lines.append(f"town = {json.dumps(p.town)}")
    if p.holder is not None:
        lines.append(f"holder = {json.dumps(p.holder)}")
    return "\n".join(lines) + "\n"


def json_document(principals: Iterable[Principal]) -> str:
    return json.dumps(
        {"tokens": [p.model_dump(mode="json", exclude_none=True) for p in principals]},
        ensure_ascii=False,
        indent=2,
    )


class TokenTable:
    """Looks a bearer token up by its hash."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._by_hash = dict(principals)

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, token: str | None) -> Principal | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_hash(token)
        found = self._by_hash.get(digest)
        # the dict lookup is on a hash of the token, so timing reveals nothing of the token;
        # compare_digest once more keeps the final comparison constant-time anyway
        if found is not None and hmac.compare_digest(found.sha256, digest):
            return found
        return None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
