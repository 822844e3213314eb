"""The transparency figures the database computes are the ones a plain count gives."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.web.transparency import (
    CaseFacts,
    figures,
    histogram_median,
    load_figures,
)
from shared.calendar import BusinessCalendar, CalendarKind
from shared.config import InstitutionConfig, load_config
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import CaseRow
from shared.settings import Settings
from shared.uow import UnitOfWork

pytestmark = pytest.mark.connected

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
STATES = ["received", "classified", "inspection", "remitted", "on_agenda", "resolved", "closed"]


def random_cases(seed: int, n: int) -> list[CaseRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        # Three years back, at any hour: some filings fall on holidays, weekends and on the
        # evening that is already the next day in UTC.
        received = NOW - timedelta(minutes=rng.randrange(0, 3 * 365 * 24 * 60))
        due = received + timedelta(days=rng.choice([30, 42, 44]))
        state = rng.choice(STATES)
        resolved = None
        path = None
        department = rng.choice([None, "aseo", "vias", "rrhh", ""])
        if state in ("resolved", "closed") and rng.random() < 0.9:
            resolved = received + timedelta(minutes=rng.randrange(0, 80 * 24 * 60))
            path = rng.choice(["inspection", "department", "meeting", None])
        elif state == "closed" and rng.random() < 0.5:
            path = "forwarded"  # sent to the competent body: closed here, never resolved
        department_due = due - timedelta(days=3) if state == "remitted" else None
        rows.append(
            CaseRow(
                id=str(uuid.UUID(int=rng.getrandbits(128))),
                tracking_code=f"T{seed:03d}{i:07d}",
                channel=rng.choice(["presencial", "web", "311"]),
                kind=rng.choice(["denuncia", "queja", "sugerencia", None]),
                description="caso de prueba",
                state=state,
                department=department,
                received_at=received,
                due_at=due,
                department_due_at=department_due,
                resolved_at=resolved,
                resolution_path=path,
                updated_at=received,
            )
        )
    return rows


def test_the_median_of_a_histogram_is_the_median_of_its_values() -> None:
    import statistics

    rng = random.Random(7)
    for _ in range(200):
        values = [rng.randrange(-3, 40) for _ in range(rng.randrange(1, 30))]
        assert histogram_median(Counter(values)) == statistics.median(values)


@pytest.mark.parametrize("calendar_kind", ["business", "calendar"])
async def test_figures_from_the_database_equal_a_plain_count_over_every_case(
    pg_url: str, calendar_kind: str
) -> None:
    engine = make_engine(pg_url)
    try:
        await upgrade(engine)
        sessionmaker = make_sessionmaker(engine)
        config = load_config(Settings().config)
        await check_figures(sessionmaker, config, CalendarKind(calendar_kind), len(calendar_kind))
    finally:
        await engine.dispose()


async def check_figures(
    sessionmaker: async_sessionmaker[AsyncSession],
    config: InstitutionConfig,
    kind: CalendarKind,
    seed: int,
) -> None:
    calendar = BusinessCalendar(kind)
    async with UnitOfWork(sessionmaker) as uow:
        uow.session.add_all(random_cases(seed, 1500))
    async with UnitOfWork(sessionmaker) as uow:
        from_database = await load_figures(uow, NOW, calendar, config)
        rows = await uow.session.scalars(select(CaseRow))
        plain = figures(
            [
                CaseFacts(
                    r.kind,
                    r.channel,
                    r.state,
                    r.department,
                    r.resolution_path,
                    r.received_at,
                    r.due_at,
                    r.resolved_at,
                    r.department_due_at,
                )
                for r in rows
            ],
            NOW,
            calendar,
            config,
        )
    assert from_database.total == plain.total == 1500
    assert from_database == plain
    assert from_database.overdue_count > 0 and len(from_database.medians) >= 4
    assert from_database.forwarded > 0
