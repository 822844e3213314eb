"""Retention: the outbox and the inbox stop growing, and nothing owed or recent is lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.app import service as intake_service
from services.router.app import service as router_service
from shared.clock import SystemClock
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import CaseRow, InboxRow, OutboxRow
from shared.outbox import Retention, prune
from shared.uow import UnitOfWork
from tests.integration.test_intake_311 import publish, submitted
from tests.support import drain, eventually, running, settings_for

pytestmark = pytest.mark.connected

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
WEEK = Retention(outbox=timedelta(days=7), inbox=timedelta(days=30), batch=2)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_url")
    return url


def outbox_row(created: datetime, published: datetime | None) -> OutboxRow:
    return OutboxRow(
        event_id=str(uuid.uuid4()),
        event_type="CaseClosed",
        routing_key="nobody.listens",
        body="{}",
        created_at=created,
        published_at=published,
        attempts=0,
    )


@asynccontextmanager
async def database(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The schema alone: retention needs no broker."""
    engine = make_engine(url)
    try:
        await upgrade(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_prune_deletes_only_published_rows_and_marks_past_their_retention(
    database_url: str,
) -> None:
    async with database(database_url) as sessionmaker:
        old = NOW - timedelta(days=8)
        recent = NOW - timedelta(days=6)
        async with UnitOfWork(sessionmaker) as uow:
            uow.session.add_all([outbox_row(old, old) for _ in range(5)])
            kept_recent = outbox_row(recent, recent)
            owed = outbox_row(NOW - timedelta(days=100), None)  # never published: never pruned
            uow.session.add_all([kept_recent, owed])
            for days in (31, 31, 31, 29):
                uow.session.add(
                    InboxRow(
                        consumer="router",
                        event_id=str(uuid.uuid4()),
                        processed_at=NOW - timedelta(days=days),
                    )
                )
        pruned = await prune(sessionmaker, NOW, WEEK)
        assert (pruned.outbox, pruned.inbox) == (5, 3)  # in batches of 2
        async with UnitOfWork(sessionmaker) as uow:
            left = {r.event_id for r in await uow.session.scalars(select(OutboxRow))}
            marks = list(await uow.session.scalars(select(InboxRow)))
        assert left == {kept_recent.event_id, owed.event_id}
        assert [m.processed_at for m in marks] == [NOW - timedelta(days=29)]
        again = await prune(sessionmaker, NOW, WEEK)
        assert (again.outbox, again.inbox) == (0, 0)


async def test_a_redelivery_inside_the_window_is_still_ignored(database_url: str) -> None:
    async with database(database_url) as sessionmaker:
        event_id = str(uuid.uuid4())

        async def claim(at: datetime) -> bool:
            async with UnitOfWork(sessionmaker) as uow:
                return await uow.claim("router", event_id, at)

        assert await claim(NOW) is True
        # 29 days later the mark is still there: the event redelivered has no second effect.
        await prune(sessionmaker, NOW + timedelta(days=29), WEEK)
        assert await claim(NOW + timedelta(days=29)) is False
        # Past the window the mark is gone (no broker redelivers a month-old message).
        await prune(sessionmaker, NOW + timedelta(days=31), WEEK)
        async with UnitOfWork(sessionmaker) as uow:
            assert not await uow.seen("router", event_id)


async def test_pruning_under_a_running_flow_loses_nothing(amqp_url: str, pg_url: str) -> None:
    # Retention of an instant and a prune every 50 ms: every published row and every mark
    # is deleted as soon as it may be, while 311 submissions flow through intake and router.
    settings = settings_for(
        amqp_url,
        pg_url,
        outbox_retention_days=1e-9,
        inbox_retention_days=1e-9,
        prune_interval_seconds=0.05,
    )
    services = [intake_service(), router_service()]
    async with running(settings, services, clock=SystemClock()) as rt:
        refs = [f"311-RET-{i:03d}" for i in range(40)]
        await publish(amqp_url, *(submitted(ref) for ref in refs))

        async def all_classified() -> bool:
            async with rt.deps.uow() as uow:
                states = list(
                    await uow.session.scalars(
                        select(CaseRow.state).where(CaseRow.external_ref.in_(refs))
                    )
                )
            return len(states) == len(refs) and "received" not in states

        await eventually(all_classified, timeout=60)

        async def nothing_owed() -> bool:
            async with rt.deps.uow() as uow:
                owed = await uow.session.scalars(
                    select(OutboxRow.id).where(OutboxRow.published_at.is_(None))
                )
                return not list(owed)

        await eventually(nothing_owed, timeout=30)
        delivered = await drain(amqp_url, "defensa311.platform311")
        received = {m.message_id for m in delivered if m.routing_key == "case.received"}
        assert len(received) == len(refs)
        rendered = rt.deps.metrics.render().decode()
        assert 'defensa311_pruned_rows_total{table="outbox"}' in rendered
        assert 'defensa311_pruned_rows_total{table="outbox"} 0.0' not in rendered
