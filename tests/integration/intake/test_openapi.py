"""The OpenAPI document: checked in at docs/openapi.json (this fails when it drifts), valid,
and the API fuzzed from it through a real server and the real Kafka without a single 5xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.__main__ import OPENAPI_FILE, openapi_text
from tests.unit.intake.people import SUOZHEN, auth, make_id

FUZZ_EXAMPLES_PER_OPERATION = 25


def test_checked_in_document_matches_the_app() -> None:
    checked_in = Path(OPENAPI_FILE).read_text(encoding="utf-8")
    assert checked_in == openapi_text(), (
        "docs/openapi.json drifted from the app: run `python -m services.intake openapi --write`"
    )


def test_document_is_valid_openapi() -> None:
    raw = json.loads(openapi_text())
    assert raw["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(raw)
    operations = [cast(Any, op).ok() for op in schema.get_all_operations()]
    # the console's case list, /v1/me, hardship follow-ups; R2: declaring and ending an
    # emergency period; the bulk stream (issue 14)
    assert len(operations) == 25
    # every write declares its refusals (bulk: its lines' refusals are in its 200 answer)
    for op in operations:
        if op.path == "/v1/bulk":
            assert {"200", "401", "415"} <= set(op.definition.raw["responses"])
        elif op.method.upper() == "POST":
            assert {"401", "403", "409", "413", "422", "503"} <= set(op.definition.raw["responses"])


@schemathesis.serializer("text/csv")
def _csv(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return str(value).encode("utf-8", "surrogatepass") if not isinstance(value, bytes) else value


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return str(value).encode("utf-8", "surrogatepass") if not isinstance(value, bytes) else value


def _token_for(method: str, path: str) -> str:
    if method == "GET":
        return "tok-finance"
    if path.startswith("/v1/incidents"):
        return "tok-bureau"
    if path.endswith(("/reviews", "/deliberations", "/follow-ups")):
        return "tok-civil"
    if "/reserve/" in path:
        return "tok-finance"
    if path == "/v1/hardship-lists":
        return "tok-dept"
    return "tok-suozhen"


SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi_text()))
OPERATIONS = [cast(Any, op).ok() for op in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{o.method} {o.path}" for o in OPERATIONS])
def test_fuzz_no_server_errors(server: str, operation: Any) -> None:
    @settings(
        max_examples=FUZZ_EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(),
        who=st.sampled_from(["right", "right", "none", "auditor"]),
        fix_town=st.booleans(),
        fix_id=st.booleans(),
    )
    def check(case: Any, who: str, fix_town: bool, fix_id: bool) -> None:
        # steer some cases past validation so the fuzz reaches Kafka too
        if isinstance(case.body, dict):
            if fix_town and "town" in case.body:
                case.body["town"] = SUOZHEN
            if fix_id and "household_head_id" in case.body:
                case.body["household_head_id"] = make_id(7)
        if who == "right":
            headers = auth(_token_for(operation.method.upper(), operation.path))
        elif who == "auditor":
            headers = auth("tok-auditor")
        else:
            headers = {}
        response = case.call(base_url=server, headers=headers, timeout=30)
        if operation.path == "/healthz" and response.status_code == 503:
            # a documented answer: nothing consumes the fuzz topic
            assert response.json()["status"] == "degraded"
            return
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )

    check()


def test_server_answers_health(server: str) -> None:
    assert httpx.get(f"{server}/livez").json() == {"status": "ok"}
    answer = httpx.get(f"{server}/healthz")
    assert answer.status_code in (200, 503)  # tests/integration/intake/test_health.py: which
    assert answer.json()["processor"]["topic"].startswith("test.intake.fuzz.")


def test_reads_from_an_empty_ledger(server: str) -> None:
    answer = httpx.get(f"{server}/v1/towns/{SUOZHEN}/reserve", headers=auth("tok-suozhen"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "town": SUOZHEN,
        "size_fen": 5_000_000,
        "available_fen": 0,
        "held_fen": 0,
        "paid_fen": 0,
        "movements": [],
    }
    answer = httpx.get(f"{server}/v1/towns/{SUOZHEN}/cases/nobody", headers=auth("tok-auditor"))
    assert answer.status_code == 404
