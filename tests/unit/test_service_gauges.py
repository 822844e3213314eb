"""Each service reports gauges from its own tables; a process reports those of the services it
runs (in-memory SQLite, no broker)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from services.deadlines.app import service as deadlines_service
from services.deadlines.models import ClockRow
from services.intake.app import service as intake_service
from services.notifier.app import service as notifier_service
from services.notifier.models import NotificationRow
from shared.db.schema import metadata
from shared.metrics import Metrics

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    async with engine.begin() as connection:
        await connection.run_sync(metadata().create_all)
    yield engine
    await engine.dispose()


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


async def test_a_process_reports_the_gauges_of_the_services_it_runs(engine: AsyncEngine) -> None:
    case_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            insert(ClockRow),
            [
                {
                    "start_event_id": str(uuid.uuid4()),
                    "case_id": case_id,
                    "tracking_code": "D311-2026-000101",
                    "clock": clock,
                    "department": "obras" if clock == "department" else None,
                    "started_at": NOW - timedelta(days=40),
                    "due_at": NOW + timedelta(days=days),
                    "stopped_at": None,
                    "next_fire_at": None,
                    "next_threshold": None,
                    "last_alert": None,
                }
                for clock, days in (("legal", 5), ("department", -1))
            ],
        )
        await conn.execute(
            insert(NotificationRow),
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "CaseReceived",
                "case_id": case_id,
                "tracking_code": "D311-2026-000101",
                "template": "case_received",
                "channel": "email",
                "recipient": "ana@example.com",
                "recipient_masked": "a***@e***.com",
                "status": "sent",
                "attempts": 1,
                "context": {},
                "created_at": NOW,
            },
        )
    everything = Metrics()
    services = (intake_service(), deadlines_service(), notifier_service())
    everything.gauges = [g for s in services for g in s.gauges]
    await everything.refresh(engine, NOW)
    seen = samples(everything)
    assert seen[("defensa311_clocks_open", frozenset({("clock", "legal")}))] == 1
    assert seen[("defensa311_clocks_overdue", frozenset({("clock", "department")}))] == 1
    logged = (
        "defensa311_notifications_logged",
        frozenset({("channel", "email"), ("status", "sent")}),
    )
    assert seen[logged] == 1
    assert seen[("defensa311_metrics_database_up", frozenset())] == 1

    intake_only = Metrics()
    intake_only.gauges = intake_service().gauges
    await intake_only.refresh(engine, NOW)
    names = {name for name, _ in samples(intake_only)}
    assert "defensa311_cases" in names
    assert not any(
        n.startswith(("defensa311_clocks", "defensa311_notifications_logged")) for n in names
    )


def test_every_service_table_is_in_the_one_schema() -> None:
    tables = metadata().tables
    for service in (intake_service(), deadlines_service(), notifier_service()):
        for model in service.models:
            assert model.__tablename__ in tables


async def test_gauges_are_read_at_most_once_per_max_age(engine: AsyncEngine) -> None:
    reads: list[datetime] = []

    async def counting(_conn: object, now: datetime) -> list[GaugeMetricFamily]:
        reads.append(now)
        return [GaugeMetricFamily("defensa311_reads", "Reads", value=len(reads))]

    metrics = Metrics()
    metrics.gauges = [counting]
    await asyncio.gather(*(metrics.refresh(engine, NOW, max_age=60) for _ in range(5)))
    await metrics.refresh(engine, NOW, max_age=60)
    assert len(reads) == 1 and samples(metrics)[("defensa311_reads", frozenset())] == 1
    await metrics.refresh(engine, NOW)  # max_age 0: every scrape reads
    assert len(reads) == 2 and samples(metrics)[("defensa311_reads", frozenset())] == 2
