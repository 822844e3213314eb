"""Accuracy of the default [[rules]] against a labelled sample of citizen submissions.

The sample (tests/data/classification_sample.jsonl) was labelled by hand, as a clerk of the
department would, before the rules were written. Run with ``-s`` to see the report.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.router.rules import RuleSet

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "defensa311.toml"
SAMPLE = ROOT / "tests" / "data" / "classification_sample.jsonl"
THRESHOLD = 0.85


def _load_config() -> dict[str, Any]:
    with CONFIG.open("rb") as fh:
        return tomllib.load(fh)


def _load_sample() -> list[dict[str, Any]]:
    with SAMPLE.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def default_rules() -> RuleSet:
    cfg = _load_config()
    departments = {d["code"] for d in cfg["departments"]}
    return RuleSet.from_config(cfg["rules"], departments)


def test_sample_is_well_formed() -> None:
    sample = _load_sample()
    assert len(sample) >= 120
    for row in sample:
        assert set(row) == {"description", "kind", "category", "expected_kind", "expected_route"}
        assert row["kind"] in (None, "denuncia", "queja", "sugerencia")
        assert row["expected_kind"] in (None, "denuncia", "queja", "sugerencia")
        if row["kind"] is not None:
            assert row["expected_kind"] == row["kind"]


def test_default_rules_accuracy(default_rules: RuleSet) -> None:
    sample = _load_sample()
    correct = 0
    route_correct = 0
    confusion: Counter[tuple[str, str]] = Counter()
    per_route: Counter[str] = Counter()
    per_route_ok: Counter[str] = Counter()
    misses: list[str] = []
    for row in sample:
        result = default_rules.classify(
            kind=row["kind"], category=row["category"], description=row["description"]
        )
        expected = (row["expected_kind"], row["expected_route"])
        got = (result.kind, result.route)
        per_route[row["expected_route"]] += 1
        confusion[(row["expected_route"], result.route)] += 1
        if result.route == row["expected_route"]:
            route_correct += 1
        if got == expected:
            correct += 1
            per_route_ok[row["expected_route"]] += 1
        else:
            misses.append(
                f"  expected {expected}, got {got} (rule {result.rule}): {row['description']!r}"
            )

    total = len(sample)
    accuracy = correct / total
    routes = sorted(set(per_route) | {got for _, got in confusion})
    lines = [
        f"classification sample: {total} submissions, {len(default_rules.rules)} rules",
        f"(kind, route) accuracy: {correct}/{total} = {accuracy:.1%}",
        f"route-only accuracy:    {route_correct}/{total} = {route_correct / total:.1%}",
        "per expected route ((kind, route) correct / total):",
    ]
    for route in sorted(per_route):
        lines.append(
            f"  {route:<16} {per_route_ok[route]:>3}/{per_route[route]:<3}"
            f" = {per_route_ok[route] / per_route[route]:.0%}"
        )
    lines.append("route confusion (rows: expected, columns: got):")
    width = max(len(r) for r in routes) + 1
    lines.append(" " * (width + 2) + "".join(f"{r:>{width}}" for r in routes))
    for exp in routes:
        if per_route[exp] == 0:
            continue
        cells = "".join(f"{confusion[(exp, got)] or '.':>{width}}" for got in routes)
        lines.append(f"  {exp:<{width}}{cells}")
    lines.append(f"misses ({len(misses)}):")
    lines.extend(misses)
    report = "\n".join(lines)
    print(report)
    assert accuracy >= THRESHOLD, report


def test_classify_is_fast(default_rules: RuleSet) -> None:
    sample = _load_sample()
    rounds = 10
    start = time.perf_counter()
    for _ in range(rounds):
        for row in sample:
            default_rules.classify(
                kind=row["kind"], category=row["category"], description=row["description"]
            )
    rate = rounds * len(sample) / (time.perf_counter() - start)
    # Thousands per second on a developer machine; a loose floor so slow CI does not flake.
    assert rate > 500, f"only {rate:.0f} classifications per second"
