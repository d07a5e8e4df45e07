"""Where Prometheus's binaries are, installing Debian's `prometheus` package if needed.

`./run test` and the tests use the same lookup: an explicit RELIEF_PROMETHEUS_BIN_DIR,
then PATH, then /usr/bin; when nothing is found and we are root on a Debian-like system,
`apt-get install -y prometheus` (it brings both `prometheus` and `promtool`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "prometheus.yml"
RULES = HERE / "rules" / "relief.yml"
RULE_TESTS = HERE / "tests" / "relief_test.yml"
APT_PACKAGE = "prometheus"  # Debian: /usr/bin/prometheus and /usr/bin/promtool
INSTALL_TIMEOUT_S = 900


class ToolMissing(RuntimeError):
    """The binary is not installed and could not be installed here."""


def _find(name: str) -> Path | None:
    candidates = []
    if bin_dir := os.environ.get("RELIEF_PROMETHEUS_BIN_DIR"):
        candidates.append(Path(bin_dir) / name)
    if on_path := shutil.which(name):
        candidates.append(Path(on_path))
    candidates.append(Path("/usr/bin") / name)
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _install() -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ToolMissing(
            f"{APT_PACKAGE} is not installed; as root: apt-get install -y {APT_PACKAGE}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGE],
    ):
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
        if done.returncode != 0:
            raise ToolMissing(f"{' '.join(args)} failed: {done.stderr.strip()[-1000:]}")


def locate(name: str, *, install: bool = True) -> Path:
    """The path of `promtool` or `prometheus`; installs the package once when allowed."""
    found = _find(name)
    if found is None and install:
        _install()
        found = _find(name)
    if found is None:
        raise ToolMissing(f"{name} not found (looked in RELIEF_PROMETHEUS_BIN_DIR, PATH, /usr/bin)")
    return found


def promtool() -> Path:
    return locate("promtool")


def prometheus() -> Path:
    return locate("prometheus")


if __name__ == "__main__":
    # `python -m deploy.prometheus.tools`: check the rules and run their unit tests
    tool = str(promtool())
    subprocess.run([tool, "check", "rules", str(RULES)], check=True)
    subprocess.run([tool, "test", "rules", str(RULE_TESTS)], check=True)
    subprocess.run([tool, "check", "config", str(CONFIG)], check=True)
