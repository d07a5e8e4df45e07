"""Mutation testing of the pure core with cosmic-ray (`./run mutants [MODULE ...]`).

Each module is mutated one change at a time (an operator swapped, a number moved, a
condition negated ...) and only the unit tests that guard it run against each mutant:
a mutant the tests do not kill is a change to the rules that nobody would notice.

Why this shape:
- cosmic-ray lives in a venv of its own (`.local/mutants-venv`): it runs a test command
  per mutant, so it shares nothing with the project's `.venv` (mutmut >= 3.4 needs a
  click that faust-streaming refuses, and mutmut 3.3 does not run under today's pytest).
- it mutates files in place, so it works on a copy of the tree (`.local/mutants/tree`),
  never on the work tree; the tests run there with the project's `.venv`, and the copy's
  modules come first on `sys.path` (pytest's `pythonpath = ["."]`), ahead of the
  editable install's finder.
- one mutant at a time (cosmic-ray's `local` distributor): the machine's cores are shared.
- operators that only make noise are filtered out (`_EXCLUDED`): an arithmetic
  operator replaced by a bit shift, a power or a bitwise operator, and an ordering
  comparison replaced by an identity or membership test — the tests kill such mutants
  by a TypeError or a wild figure, which says nothing about the rules.

Stdlib only: it runs under any Python >= 3.11 and calls cosmic-ray's commands.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".local" / "mutants"
TOOLS = ROOT / ".local" / "mutants-venv" / "bin"

_E = "tests/unit/emergency"
_EXAMPLES = [
    f"{_E}/test_boundaries_model.py",
    f"{_E}/test_decide.py",
    f"{_E}/test_policy_fidelity.py",
    f"{_E}/test_finish.py",
]
# Module -> the unit tests that guard it, fastest first (pytest -x stops at the first
# failure, so a killed mutant costs little). The stateful test runs its `mutants` profile.
MODULES: dict[str, list[str]] = {
    "services/emergency/domain/reserve.py": [
        f"{_E}/test_reserve.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/caps.py": [*_EXAMPLES, f"{_E}/test_stateful.py"],
    "services/emergency/domain/deadlines.py": [
        f"{_E}/test_deadlines.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/advance.py": [*_EXAMPLES, f"{_E}/test_stateful.py"],
    "services/emergency/domain/approval.py": [
        f"{_E}/test_approval.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/decide.py": [
        *_EXAMPLES,
        f"{_E}/test_ticks.py",
        f"{_E}/test_review.py",
        f"{_E}/test_in_order.py",
        f"{_E}/test_stateful.py",
    ],
    # the lifecycles reached through `decide`: its examples, then the stateful test
    **{
        f"services/emergency/domain/{name}.py": [*_EXAMPLES, f"{_E}/test_stateful.py"]
        for name in ("transitional", "bookkeeping")
    },
    "services/emergency/domain/duplicates.py": [
        f"{_E}/test_ticks.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/review.py": [
        f"{_E}/test_review.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/ticks.py": [
        f"{_E}/test_ticks.py",
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/evolve.py": [
        f"{_E}/test_journal.py",
        f"{_E}/test_ticks.py",  # the rebuilt state ticked: retention, its own wheel
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    "services/emergency/domain/claims.py": [f"{_E}/test_claims.py", f"{_E}/test_stateful.py"],
    "services/emergency/domain/book.py": [
        f"{_E}/test_sizes.py",
        f"{_E}/test_journal.py",
        f"{_E}/test_ticks.py",  # the wheel: retention marks, minutes passed
        *_EXAMPLES,
        f"{_E}/test_stateful.py",
    ],
    # the ledger's pure core: what a posting books, the chain and its seals, verify
    **{
        f"services/ledger/domain/{name}.py": ["tests/unit/ledger/test_domain.py"]
        for name in ("entries", "heads", "seals", "plan", "accounts", "verify")
    },
    "services/intake/domain/idempotency.py": ["tests/unit/intake/test_idempotency.py"],
    "services/intake/domain/tokens.py": ["tests/unit/intake/test_tokens_authz.py"],
    "services/intake/domain/authz.py": [
        "tests/unit/intake/test_tokens_authz.py",
        "tests/unit/intake/test_list_authz.py",
    ],
    "services/intake/domain/health.py": ["tests/unit/intake/test_health.py"],
    "services/intake/domain/bulk.py": ["tests/unit/intake/test_bulk_lines.py"],
    "services/intake/domain/hardship_csv.py": ["tests/unit/intake/test_hardship_csv.py"],
    "services/intake/domain/requests.py": ["tests/unit/intake/test_requests.py"],
    "services/casebook/domain/fold.py": ["tests/unit/casebook/test_fold.py"],
    "services/casebook/domain/hardship.py": ["tests/unit/casebook/test_hardship.py"],
    "services/casebook/domain/submissions.py": ["tests/unit/casebook/test_submissions.py"],
    "schemas/money.py": ["tests/unit/schemas/test_money.py"],
    "schemas/identity.py": ["tests/unit/schemas/test_identity.py"],
}
DEFAULT = list(MODULES)

_ARITHMETIC = "(Add|Sub|Mul|Div|FloorDiv|Mod|Pow|LShift|RShift|BitOr|BitAnd|BitXor)"
_EXCLUDED = [
    rf"core/ReplaceBinaryOperator_{_ARITHMETIC}_(Pow|LShift|RShift|BitOr|BitAnd|BitXor)$",
    r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot|In|NotIn)$",
    r"core/VariableInserter",
]
# `|` in a type annotation is never evaluated (`from __future__ import annotations`), so
# every mutant of it survives and says nothing (deadlines.py's first session: 12 of its 16
# survivors). Each session's `|` mutants that stand in an annotation are marked skipped
# after `init` (`_skip_annotations`); a `|` that computes (a union of sets, an
# `isinstance` of two types) is mutated as any other operator.
_BIT_OR = "core/ReplaceBinaryOperator_BitOr_"


def _annotation_spans(module: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where each annotation of `module` stands: ((row, col), (end row, end col)), rows
    from 1 and columns from 0, as cosmic-ray (parso) gives a mutation's position."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        for field in ("annotation", "returns"):
            value = getattr(node, field, None)
            if isinstance(value, ast.expr) and value.end_lineno is not None:
                start = (value.lineno, value.col_offset)
                spans.append((start, (value.end_lineno, value.end_col_offset or 0)))
    return spans


def _skip_annotations(session: Path, module: str) -> int:
    """Mark the session's `|` mutants inside an annotation skipped; how many were marked.
    A result they already had (a session made before this filter) is replaced."""
    spans = _annotation_spans(module)
    with sqlite3.connect(session) as db:
        rows = db.execute(
            "SELECT job_id, start_pos_row, start_pos_col FROM mutation_specs "
            "WHERE operator_name LIKE ?",
            (f"{_BIT_OR}%",),
        ).fetchall()
        skipped = [job for job, row, col in rows if any(a <= (row, col) < b for a, b in spans)]
        db.executemany(
            "INSERT OR REPLACE INTO work_results "
            "(worker_outcome, output, test_outcome, diff, job_id) "
            "VALUES ('SKIPPED', NULL, NULL, NULL, ?)",
            [(job,) for job in skipped],
        )
    return len(skipped)


def _copy_tree() -> Path:
    """The work tree as it is now (committed or not), less what is not source: a copy of
    this run's own, so that two runs (two modules, one a core each) mutate apart."""
    tree = WORK / f"tree.{os.getpid()}"
    if tree.exists():
        shutil.rmtree(tree)
    ignore = shutil.ignore_patterns(
        ".venv",
        ".local",
        ".git",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "test-artifacts",
        "node_modules",
    )
    shutil.copytree(ROOT, tree, ignore=ignore)
    return tree


def _config(module: str, tests: list[str], timeout_s: float) -> str:
    python = ROOT / ".venv" / "bin" / "python"
    command = f"{python} -m pytest -x -q -p no:cacheprovider -p no:randomly {' '.join(tests)}"
    excluded = ", ".join(json.dumps(e) for e in _EXCLUDED)
    return (
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {timeout_s}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{excluded}]\n"
    )


def _tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELIEF_KEEP_STACK": "1", "RELIEF_HYPOTHESIS_PROFILE": "mutants"}
    return subprocess.run(
        [str(TOOLS / name), *args], cwd=cwd, env=env, text=True, capture_output=True, check=False
    )


def _results(session: Path, tree: Path) -> tuple[int, int, list[str]]:
    """(killed, run, survivors described) from the session's dump."""
    dump = _tool("cosmic-ray", "dump", str(session), cwd=tree)
    killed = run = 0
    survivors: list[str] = []
    for line in dump.stdout.splitlines():
        job, result = json.loads(line)
        if result is None or result.get("worker_outcome") == "skipped":
            continue
        run += 1
        if result.get("test_outcome") == "survived":
            mutation = job["mutations"][0]
            survivors.append(
                f"{mutation['module_path']}:{mutation['start_pos'][0]} "
                f"{mutation['operator_name']} #{mutation['occurrence']}"
            )
        else:
            killed += 1
    return killed, run, survivors


def _mutants_of(session: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(session) as db:
        return sorted(
            db.execute(
                "SELECT operator_name, occurrence, start_pos_row, start_pos_col, end_pos_row, "
                "end_pos_col FROM mutation_specs"
            ).fetchall()
        )


def _same_mutants(session: Path, config: Path, tree: Path) -> bool:
    """Whether the module, as it is now, makes the very mutants the session holds."""
    fresh = session.with_suffix(".check.sqlite")
    fresh.unlink(missing_ok=True)
    try:
        made = _tool("cosmic-ray", "init", str(config), str(fresh), cwd=tree)
        return made.returncode == 0 and _mutants_of(fresh) == _mutants_of(session)
    finally:
        fresh.unlink(missing_ok=True)


def _forget_survivors(session: Path) -> int:
    """Drop the survivors' results from a session, so that `exec` runs them again."""
    with sqlite3.connect(session) as db:
        cursor = db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
        return cursor.rowcount


def _report(modules: list[str], markdown: bool) -> int:
    """Each module's last session as it stands (annotation mutants skipped), and the total:
    what README "Testing the tests" shows (`--markdown`: as its table). Reads the sessions'
    databases, runs nothing."""
    total_killed = total_run = 0
    if markdown:
        print("| module | mutants run | killed | survived (each examined) | score |")
        print("|---|---|---|---|---|")
    for module in modules:
        session = WORK / f"{module.replace('/', '.').removesuffix('.py')}.sqlite"
        if not session.exists():
            print(f"| `{module}` | not run | | | |" if markdown else f"  {module}: not run")
            continue
        _skip_annotations(session, module)
        with sqlite3.connect(session) as db:
            (made,) = db.execute("SELECT count(*) FROM work_items").fetchone()
            outcomes = dict(
                db.execute(
                    "SELECT coalesce(test_outcome, worker_outcome), count(*) FROM work_results "
                    "GROUP BY 1"
                ).fetchall()
            )
            (timed_out,) = db.execute(
                "SELECT count(*) FROM work_results WHERE worker_outcome = 'TIMEOUT'"
            ).fetchone()
        skipped = outcomes.pop("SKIPPED", 0)
        # cosmic-ray could not make the mutant (a crash of the tool): neither run nor killed
        incompetent = outcomes.pop("INCOMPETENT", 0)
        run = sum(outcomes.values())
        survived = outcomes.get("SURVIVED", 0)
        killed = run - survived
        pending = made - skipped - incompetent - run
        total_killed, total_run = total_killed + killed, total_run + run
        rest = f", {pending} not run yet" if pending else ""
        # a mutant that outran the timeout counts as killed: one that hung is, one that ran
        # on a machine too busy is not, so they are named to be run again
        rest += f", {timed_out} timed out" if timed_out else ""
        score = f"{100 * killed / max(run, 1):.1f} %"
        if markdown:
            print(f"| `{module}` | {run}{rest} | {killed} | {survived} | {score} |")
        else:
            print(f"  {module}: {killed}/{run} killed ({score}){rest}")
    score = f"{100 * total_killed / max(total_run, 1):.1f} %"
    if markdown:
        survived = total_run - total_killed
        print(f"| **all** | {total_run} | {total_killed} | {survived} | **{score}** |")
    else:
        print(f"  all: {total_killed}/{total_run} killed ({score})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: {DEFAULT})")
    parser.add_argument("--timeout-s", type=float, default=180.0, help="per mutant")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run again only the mutants that survived the module's last session (after "
        "tests were added), keeping the others' results",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: each module's last session, its score and the total",
    )
    parser.add_argument("--markdown", action="store_true", help="--report as a Markdown table")
    args = parser.parse_args()
    modules = args.modules or DEFAULT
    if args.report or args.markdown:
        return _report(modules, args.markdown)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        known = "\n  ".join(MODULES)
        print(f"mutants: no tests are mapped for {unknown}; known modules:\n  {known}")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    tree = _copy_tree()
    try:
        return _run(modules, tree, args.survivors, args.timeout_s)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _run(modules: list[str], tree: Path, survivors_only: bool, timeout_s: float) -> int:
    summary: list[str] = []
    total_killed = total_run = 0
    for module in modules:
        name = module.replace("/", ".").removesuffix(".py")
        config = WORK / f"{name}.toml"
        session = WORK / f"{name}.sqlite"
        config.write_text(_config(module, MODULES[module], timeout_s), encoding="utf-8")
        steps: list[tuple[str, ...]] = [
            ("cosmic-ray", "init", str(config), str(session)),
            ("cr-filter-operators", str(session), str(config)),
            ("cosmic-ray", "baseline", str(config)),
            ("cosmic-ray", "exec", str(config), str(session)),
        ]
        if survivors_only:
            if not session.exists():
                print(f"mutants: {module}: no session to take survivors from ({session})")
                return 2
            # a session's mutants are numbered by occurrence in the file it was made from:
            # on a changed file they would land on other operators, unseen
            if not _same_mutants(session, config, tree):
                line = (
                    f"{module}: the file changed since its session was made: run it whole "
                    f"(`./run mutants {module}`)"
                )
                summary.append(line)
                print(f"mutants: {line}", flush=True)
                continue
            # `exec` runs only the jobs with no result: forget the survivors' results
            print(f"mutants: {module}: {_forget_survivors(session)} survivors to run again")
            steps = steps[2:]
        else:
            session.unlink(missing_ok=True)
        for step in steps:
            if step[1] == "baseline":
                marked = _skip_annotations(session, module)
                print(f"mutants: {module}: {marked} `|` mutants in annotations skipped")
            print(f"mutants: {module}: {' '.join(step[:2])}", flush=True)
            done = _tool(*step, cwd=tree)
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                print(f"mutants: {module}: {step[1]} failed (exit {done.returncode})")
                return 1
        killed, run, survivors = _results(session, tree)
        total_killed, total_run = total_killed + killed, total_run + run
        (WORK / f"{name}.survivors.txt").write_text("\n".join(survivors) + "\n", encoding="utf-8")
        score = 100 * killed / run if run else 100.0
        line = f"{module}: {killed}/{run} killed ({score:.1f} %), {len(survivors)} survived"
        summary.append(line)
        print(f"mutants: {line}", flush=True)
        for s in survivors:
            print(f"    survived: {s}")
    print("\nmutants: summary")
    for line in summary:
        print(f"  {line}")
    if total_run:
        print(f"  all: {total_killed}/{total_run} killed ({100 * total_killed / total_run:.1f} %)")
    print(
        f"  survivors per module: {WORK}/*.survivors.txt; a mutant shown by: "
        f"{TOOLS}/cosmic-ray dump {WORK}/<module>.sqlite"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
