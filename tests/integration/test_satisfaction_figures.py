"""The survey's public figures (issue 20, point 2): share answered and mean score by department
and by kind, computed in the database, with counts and nothing personal; a joined duplicate
counts once. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.intake.app import service as intake_service
from services.intake.web.satisfaction import OFFICE_GROUP, load_survey, survey_csv_rows
from shared.db.migrate import upgrade
from shared.runtime import Deps, Runtime
from tests.factories import case_in
from tests.support import settings_for


async def deps_for(url: str) -> AsyncIterator[Deps]:
    runtime = Runtime(settings_for("amqp://guest:guest@127.0.0.1:5672/", url), [intake_service()])
    await upgrade(runtime.deps.engine)
    yield runtime.deps
    await runtime.deps.engine.dispose()


@pytest.fixture
async def sqlite_deps(tmp_path: Path) -> AsyncIterator[Deps]:
    async for deps in deps_for(f"sqlite:///{tmp_path}/s.db"):
        yield deps


async def seed(deps: Deps) -> None:
    rows = [
        case_in("closed", "denuncia", department="vias", survey_score=5, survey_comment="Ana"),
        case_in("closed", "denuncia", department="vias", survey_score=2),
        case_in("closed", "denuncia", department="vias"),
        case_in("closed", "queja", survey_score=4),
        case_in("resolved", "queja", survey_score=None),  # not closed: not counted
    ]
    joined = case_in("closed", "denuncia", department="vias", survey_score=1)
    joined.duplicate_of = rows[0].id
    async with deps.uow() as uow:
        for i, row in enumerate([*rows, joined]):
            row.tracking_code = f"2026-000-000-{i:03d}"
            uow.session.add(row)
        await uow.session.flush()


async def check(deps: Deps) -> None:
    await seed(deps)
    async with deps.uow() as uow:
        figures = await load_survey(uow, lambda code: {"vias": "Vías"}.get(code, code))
    vias, office = figures.by_department
    assert (vias.label, vias.closed, vias.answered, vias.mean_score) == ("Vías", 3, 2, 3.5)
    assert vias.share_answered == pytest.approx(2 / 3)
    assert (office.label, office.closed, office.answered, office.mean_score) == (
        OFFICE_GROUP,
        1,
        1,
        4.0,
    )
    by_kind = {g.key: (g.closed, g.answered, g.mean_score) for g in figures.by_kind}
    assert by_kind == {"denuncia": (3, 2, 3.5), "queja": (1, 1, 4.0)}
    assert figures.joined == 1
    csv_rows = survey_csv_rows(figures)
    assert ["cases_joined_as_duplicates", "", 1, ""] in csv_rows
    assert ["survey_mean_score_by_department", "vias", "3.50", 2] in csv_rows
    assert ["survey_answered_share_by_kind", "queja", "1.0000", 1] in csv_rows
    assert "Ana" not in repr(csv_rows)


async def test_survey_figures_are_computed_in_sqlite(sqlite_deps: Deps) -> None:
    await check(sqlite_deps)


@pytest.mark.connected
async def test_survey_figures_are_computed_in_postgresql(pg_url: str) -> None:
    async for deps in deps_for(pg_url):
        await check(deps)
