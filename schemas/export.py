"""Export the JSON Schema of every record type into schemas/jsonschema/<Type>.json.

    python -m schemas.export          # write the files
    python -m schemas.export --check  # exit 1 when a file is missing or out of date

The files are checked in; a unit test fails when a model changes without re-exporting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.policy import Policy
from schemas.registry import ALL_TYPES
from schemas.topics import RejectedRecord

OUT_DIR = Path(__file__).parent / "jsonschema"

EXPORTED: tuple[type[BaseModel], ...] = (*ALL_TYPES, RejectedRecord, Policy)


def schema_text(cls: type[BaseModel]) -> str:
    schema: dict[str, Any] = cls.model_json_schema(mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    return {f"{cls.__name__}.json": schema_text(cls) for cls in EXPORTED}


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of files that are missing, differ, or belong to no exported type."""
    wanted = expected_files()
    stale = [
        name
        for name, text in wanted.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text("utf-8") != text
    ]
    extra = [p.name for p in out_dir.glob("*.json") if p.name not in wanted]
    return sorted(stale + extra)


def write_all(out_dir: Path = OUT_DIR) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = expected_files()
    for name, text in wanted.items():
        (out_dir / name).write_text(text, "utf-8")
    for p in out_dir.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("out of date (run python -m schemas.export):", ", ".join(stale))
            return 1
        print(f"{len(EXPORTED)} schemas up to date")
        return 0
    written = write_all()
    print(f"wrote {len(written)} schemas into {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
