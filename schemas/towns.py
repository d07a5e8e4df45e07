"""The county's towns and sub-districts (镇、街道), from configuration.

The list is configuration, not code (docs/policy.md: "another county brings its own"): it is read
from the same TOML as the policy figures, `config/huantai.toml` by default. Each town
keeps its own relief reserve (R4: 50,000 yuan by default).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.money import Fen

DEFAULT_CONFIG = Path(__file__).parent / "config" / "huantai.toml"
MAX_TOWNS = 100
MAX_NAME = 100


class UnknownTown(LookupError):
    """A town code the county's configuration does not list."""

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown town {code[:20]!r}")
        self.code = code


class ConfigError(ValueError):
    """A configuration file that cannot be read or does not validate; says which and why."""


class TownKind(StrEnum):
    TOWN = "town"  # 镇
    SUBDISTRICT = "subdistrict"  # 街道


class Town(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6,12}$", max_length=12)
    name_zh: str = Field(min_length=1, max_length=MAX_NAME)
    name_en: str = Field(min_length=1, max_length=MAX_NAME)
    kind: TownKind
    reserve_fen: Fen = Field(description="R4: the town's temporary-relief reserve size")


class County(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$")
    name: str = Field(min_length=1, max_length=MAX_NAME)
    towns: tuple[Town, ...] = Field(min_length=1, max_length=MAX_TOWNS)

    @model_validator(mode="after")
    def _unique_towns(self) -> Self:
        codes = [t.code for t in self.towns]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"town codes listed twice: {', '.join(dupes)}")
        return self

    def codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.towns)

    def town(self, code: str) -> Town:
        """The town with this code, else UnknownTown."""
        for t in self.towns:
            if t.code == code:
                return t
        raise UnknownTown(code)

    def __contains__(self, code: object) -> bool:
        return any(t.code == code for t in self.towns)


def read_config(path: str | Path | None = None) -> dict[str, Any]:
    """The raw TOML tables of a county configuration file (default: Huantai's)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc


def describe(exc: ValidationError) -> str:
    """Pydantic errors as "where: what" lines, without echoing the input."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
    )


def county_from(tables: Mapping[str, Any], source: str = "<config>") -> County:
    if "county" not in tables:
        raise ConfigError(f"{source}: missing [county] table")
    try:
        return County.model_validate(tables["county"])
    except ValidationError as exc:
        raise ConfigError(f"{source}: [county] {describe(exc)}") from exc


def load_county(path: str | Path | None = None) -> County:
    """The county and its towns from `path` (default: the packaged huantai.toml)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    return county_from(read_config(file), str(file))
