"""The end-to-end benchmark's accounting, on a small run (its speed is not tested: speed
is read from the benchmark itself, run on purpose).

`benchmarks/e2e_bench.py --requests 2000` runs the bare pipeline and the whole service
as processes on the suite's servers, then accounts: every accepted request decided once,
every advance held on the ledger once, as many decision and posting records on Kafka as
the casebook and the ledger store, `verify` ok, and the ratio line printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local import stack as local_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_a_small_run_accounts_for_every_request(stack: local_stack.StackInfo) -> None:
    env = {
        **os.environ,
        "RELIEF_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "RELIEF_DATABASE_ADMIN_URL": stack.admin_url,
        "RELIEF_DATABASE_OWNER_URL": stack.owner_url,
        "RELIEF_DATABASE_URL": stack.app_url,
    }
    done = subprocess.run(
        [sys.executable, "benchmarks/e2e_bench.py", "--requests", "2000", "--skew", "0.5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert "PROBLEM" not in said
    assert re.search(r"accounted: decided once 2,000/2,000; advances granted ([\d,]+), "
                     r"on the ledger \1;", said), said[-3000:]  # fmt: skip
    assert "verify ok" in said
    records = re.search(r"decision records ([\d,]+) = stored ([\d,]+); postings ([\d,]+) = "
                        r"stored ([\d,]+)", said)  # fmt: skip
    assert records is not None and records[1] == records[2] and records[3] == records[4]
    assert re.search(r"^e2e/bare = \d+\.\d\d$", said.strip().splitlines()[-1]), said[-500:]
