"""The services are separate: no module under services/X imports services/Y for another
service Y. They share the records in `schemas/` and talk over Kafka and HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def services(root: Path = ROOT) -> list[str]:
    return sorted(
        p.name for p in (root / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # `from services import ledger` names a service too
            if module == "services":
                out += [(node.lineno, f"services.{alias.name}") for alias in node.names]
    return out


def crossings(root: Path = ROOT) -> list[str]:
    found = []
    names = services(root)
    for own in names:
        for path in sorted((root / "services" / own).rglob("*.py")):
            for line, module in imported(path, root):
                parts = module.split(".")
                other = len(parts) >= 2 and parts[0] == "services" and parts[1] in names
                if other and parts[1] != own:
                    found.append(f"{path.relative_to(root)}:{line} imports {module}")
    return found


def test_there_are_services_to_check() -> None:
    assert {"casebook", "emergency", "intake", "ledger"} <= set(services())


def test_no_service_imports_another() -> None:
    assert crossings() == []


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    # the check itself, on a tree of its own: an import of another service, absolute or
    # relative, is found; one of its own service or of schemas is not
    for name in ("casebook", "emergency", "intake", "ledger"):
        (tmp_path / "services" / name / "domain").mkdir(parents=True)
        (tmp_path / "services" / name / "__init__.py").write_text("")
    (tmp_path / "services" / "intake" / "domain" / "probe.py").write_text(
        "from services.ledger.adapters import postgres\n"
        "from ...casebook.domain import fold\n"
        "import services.emergency.domain.book\n"
        "from services.intake.domain import reads\n"
        "from ..domain import authz\n"
        "from schemas.decisions import Decision\n",
        encoding="utf-8",
    )
    found = crossings(tmp_path)
    assert [f.split(" imports ")[1] for f in found] == [
        "services.ledger.adapters",
        "services.casebook.domain",
        "services.emergency.domain.book",
    ]
