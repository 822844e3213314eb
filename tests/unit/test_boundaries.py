"""No service imports another, and ``shared/`` imports no service (an import scan, with
the imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def imported(path: Path) -> set[str]:
    """Every module a file imports, wherever the import statement is."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offences(folder: Path, allowed: str | None) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for name in sorted(imported(path)):
            parts = name.split(".")
            if parts[0] != "services":
                continue
            if allowed is None or (len(parts) > 1 and parts[1] != allowed):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_the_services_are_four_packages() -> None:
    assert SERVICES == ["deadlines", "intake", "notifier", "router"]


def test_no_service_imports_another() -> None:
    found = [o for name in SERVICES for o in offences(ROOT / "services" / name, name)]
    assert found == []


def test_shared_imports_no_service() -> None:
    assert offences(ROOT / "shared", None) == []


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "late.py"
    source.write_text("def f():\n    from services.notifier import http\n", encoding="utf-8")
    assert "services.notifier" in imported(source)
