"""RELIEF_ENV=production: no service starts without its secrets — it says which one is
missing and exits, before it opens a port or reads a record (the processes themselves)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deploy.local import stack as local_stack

pytestmark = pytest.mark.integration

SECRETS = ("RELIEF_ID_HASH_KEY", "RELIEF_LEDGER_CHAIN_KEY", "RELIEF_CASEBOOK_SEAL_KEY")


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (["services.intake", "serve", "--port", "0"], "RELIEF_ID_HASH_KEY"),
        (["services.ledger", "run"], "RELIEF_LEDGER_CHAIN_KEY"),
        (["services.ledger", "verify"], "RELIEF_LEDGER_CHAIN_KEY"),
        (["services.casebook", "run"], "RELIEF_CASEBOOK_SEAL_KEY"),
    ],
)
def test_no_service_starts_in_production_without_its_secret(
    stack: local_stack.StackInfo, command: list[str], missing: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(stack.env(), RELIEF_ENV="production")
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # a service that started anyway would run until killed: a failure
    )
    assert done.returncode != 0
    assert missing in done.stderr
    assert "refusing to start" in done.stderr


def test_outside_production_the_development_key_is_used_with_a_warning() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env["RELIEF_ENV"] = "development"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from services.intake.settings import IntakeSettings; IntakeSettings().hash_key()",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "RELIEF_ID_HASH_KEY is not set" in done.stderr
