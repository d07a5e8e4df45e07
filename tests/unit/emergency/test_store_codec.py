"""The worker reads and writes its table's store directly (faster than through Faust's
table); Faust's recovery and table views must still find the same keys and values."""

from __future__ import annotations

import json

import faust
from hypothesis import given
from hypothesis import strategies as st

from services.emergency.adapters.faust_app import as_text, raw_key


def test_keys_are_written_as_fausts_json_key_codec_writes_them() -> None:
    app = faust.App("codec-test", broker="kafka://127.0.0.1:1", store="memory://")
    keys = [
        "t/370321101",
        "c/370321101/case-1.2:x_y-z",
        "w/370321101/29000000/3",
        "j/370321101/0",
        "e/370321101/6f1c2a44-3f0d-5b1e-9a57-8d3c1d9e2b10",
    ]
    for key in keys:
        assert raw_key(key) == app.serializers.dumps_key(None, key, serializer="json")


_APP = faust.App("codec-test-keys", broker="kafka://127.0.0.1:1", store="memory://")


@given(st.text(max_size=40))
def test_every_key_is_written_as_fausts_codec_writes_it(key: str) -> None:
    """The fast path for plain keys, and json.dumps for the rest (quotes, backslashes,
    control characters, non-ASCII: a cause key may hold any of them)."""
    assert (
        raw_key(key)
        == json.dumps(key).encode()
        == _APP.serializers.dumps_key(None, key, serializer="json")
    )
    assert raw_key(f"g/370321101/{key}") == json.dumps(f"g/370321101/{key}").encode()


def test_values_read_back_through_fausts_json_value_codec() -> None:
    app = faust.App("codec-test", broker="kafka://127.0.0.1:1", store="memory://")
    stored = json.dumps({"reason": "房屋进水", "fen": 1}, ensure_ascii=False).encode()
    assert app.serializers.loads_value(None, stored, serializer="json") == {
        "reason": "房屋进水",
        "fen": 1,
    }


def test_journal_text_of_each_kind_of_stored_value() -> None:
    assert as_text(None) is None
    assert as_text(b'{"a":1}') == '{"a":1}'
    assert json.loads(as_text({"a": "房"}) or "") == {"a": "房"}
