"""Every HTTP route (a service's, or ``shared/``'s health routes) is defined at module level,
on its module's router, never inside a function (an ``install()`` or ``create_app``
closure): what a route needs comes in as ``Annotated`` parameters, not as variables it
closes over."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTE_DECORATORS = frozenset({"get", "post", "put", "patch", "delete", "api_route", "route"})
Function = ast.FunctionDef | ast.AsyncFunctionDef


def is_route(node: ast.AST) -> bool:
    return isinstance(node, Function) and any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr in ROUTE_DECORATORS
        for d in node.decorator_list
    )


def nested_routes(source: str) -> list[str]:
    """``"<route> inside <function>"`` for each route defined inside a function."""
    found = []
    for outer in ast.walk(ast.parse(source)):
        if isinstance(outer, Function):
            found += [
                f"{inner.name} inside {outer.name}"
                for inner in ast.walk(outer)
                if inner is not outer and is_route(inner) and isinstance(inner, Function)
            ]
    return found


def test_the_scan_finds_a_route_in_a_closure() -> None:
    source = "def install(app):\n    @app.get('/x')\n    async def x():\n        return 1\n"
    assert nested_routes(source) == ["x inside install"]
    assert nested_routes("@router.get('/x')\nasync def x():\n    return 1\n") == []


def test_no_route_is_defined_inside_a_function() -> None:
    offences = [
        f"{path.relative_to(ROOT)}: {found}"
        for folder in ("services", "shared")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for found in nested_routes(path.read_text(encoding="utf-8"))
    ]
    assert offences == []
