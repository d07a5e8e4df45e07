"""A partition's local state ahead of its changelog is dropped, not crash-looped on."""

from __future__ import annotations

from pathlib import Path

from rocksdict import Rdict

from services.emergency.adapters.local_store import (
    OFFSET_KEY,
    drop_stale,
    partition_dbs,
    persisted_offset,
)


def _db(path: Path, offset: int | None) -> Path:
    db = Rdict(str(path))
    db[b"t/370321101"] = b"{}"
    if offset is not None:
        db[OFFSET_KEY] = str(offset).encode()
    db.close()
    return path


def test_only_the_partitions_ahead_of_their_changelog_are_dropped(tmp_path: Path) -> None:
    ahead = _db(tmp_path / "state-0.db", 121)  # the changelog was recreated: it is empty
    behind = _db(tmp_path / "state-1.db", 40)  # a normal restart: recovery reads 41..
    fresh = _db(tmp_path / "state-2.db", None)  # nothing stored yet
    _db(tmp_path / "other-0.db", 999)  # another table's file is not ours to judge
    dbs = partition_dbs(tmp_path, "state")
    assert sorted(dbs) == [0, 1, 2]
    assert persisted_offset(behind) == 40

    removed = drop_stale(dbs, {1: 57})
    assert removed == [
        "local state of partition 0 is ahead of its changelog (121 > -1): removed, "
        "it is rebuilt from the changelog"
    ]
    assert not ahead.exists() and behind.exists() and fresh.exists()
    assert (tmp_path / "other-0.db").exists()
    assert drop_stale(partition_dbs(tmp_path, "state"), {1: 57}) == []  # nothing left to drop
