"""The checked-in JSON Schemas match the models: change a model, re-export."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import export
from schemas.registry import RECORD_TYPES


def test_checked_in_schemas_are_up_to_date() -> None:
    stale = export.stale_files()
    assert stale == [], f"run `python -m schemas.export`: out of date: {stale}"


def test_every_record_type_has_its_schema_file() -> None:
    for name in RECORD_TYPES:
        schema = json.loads((export.OUT_DIR / f"{name}.json").read_text("utf-8"))
        assert schema["title"] == name
        assert schema["additionalProperties"] is False
        assert "schema_version" in schema["required"] or "schema_version" in schema["properties"]


def test_export_writes_and_check_detects_a_change(tmp_path: Path) -> None:
    written = export.write_all(tmp_path)
    assert export.stale_files(tmp_path) == []
    (tmp_path / written[0]).write_text("{}\n")
    (tmp_path / "Gone.json").write_text("{}\n")
    assert export.stale_files(tmp_path) == sorted([written[0], "Gone.json"])


def test_the_check_command(capsys: object) -> None:
    assert export.main(["--check"]) == 0
