"""The alert rules are valid and behave as their unit tests say (promtool)."""

from __future__ import annotations

import subprocess

import pytest

from deploy.prometheus import tools
from tests.conftest import need_tool


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return str(tools.promtool())
    except tools.ToolMissing as exc:
        need_tool(str(exc))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_the_rules_are_valid(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(tools.RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_fire_as_their_unit_tests_expect(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(tools.RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_prometheus_configuration_is_valid(promtool: str) -> None:
    done = run(promtool, "check", "config", str(tools.CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
