"""The outbox relay and the inbox on the real broker, on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

import aio_pika
import pytest
from sqlalchemy import select

from shared.clock import FixedClock
from shared.contract import CaseClosed
from shared.db.models import OutboxRow
from shared.outbox import OutboxRelay
from shared.runtime import Runtime
from shared.uow import UnitOfWork
from tests.support import eventually, running, settings_for

pytestmark = pytest.mark.connected

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, sqlite_url: str) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]


async def pending(runtime: Runtime) -> list[OutboxRow]:
    async with runtime.deps.sessionmaker() as session:
        return list(
            await session.scalars(select(OutboxRow).where(OutboxRow.published_at.is_(None)))
        )


def closed_event() -> CaseClosed:
    return CaseClosed(case_id=uuid.uuid4(), tracking_code="2026-AAA-BBB-CCC", occurred_at=NOW)


async def test_committed_events_are_published_persistent_and_confirmed(
    amqp_url: str, database_url: str
) -> None:
    async with running(settings_for(amqp_url, database_url), [], clock=FixedClock(NOW)) as rt:
        events = [closed_event() for _ in range(50)]
        async with rt.deps.uow() as uow:
            for event in events:
                uow.publish(event)
        await eventually(lambda: _all_published(rt))
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("defensa311.platform311", passive=True)
            got = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                got.append(message)
        assert [m.message_id for m in got] == [str(e.event_id) for e in events]  # in order
        assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in got)
        assert all(m.content_type == "application/json" for m in got)


async def _all_published(rt: Runtime) -> bool:
    return not await pending(rt)


async def test_a_rolled_back_transaction_publishes_nothing(amqp_url: str, pg_url: str) -> None:
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        with pytest.raises(RuntimeError):
            async with rt.deps.uow() as uow:
                uow.publish(closed_event())
                raise RuntimeError("the handler failed after publishing")
        async with rt.deps.sessionmaker() as session:
            assert list(await session.scalars(select(OutboxRow))) == []


async def test_an_unroutable_event_stays_pending_and_does_not_block_others(
    amqp_url: str, pg_url: str
) -> None:
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        async with rt.deps.uow() as uow:
            uow.session.add(
                OutboxRow(
                    event_id=str(uuid.uuid4()),
                    event_type="Nobody",
                    routing_key="nobody.listens",
                    body="{}",
                    created_at=NOW,
                    attempts=0,
                )
            )
            uow.publish(closed_event())

        async def only_the_unroutable_left() -> list[OutboxRow]:
            rows = await pending(rt)
            return rows if len(rows) == 1 and rows[0].attempts > 0 else []

        [row] = await eventually(only_the_unroutable_left)
        assert row.routing_key == "nobody.listens"
        assert "NO_ROUTE" in (row.last_error or "")


async def test_inbox_marks_an_event_once(pg_url: str, amqp_url: str) -> None:
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        event_id = str(uuid.uuid4())

        async def handle_once() -> bool:
            async with UnitOfWork(rt.deps.sessionmaker) as uow:
                if await uow.seen("test", event_id):
                    return False
                uow.mark_seen("test", event_id, NOW)
                return True

        results = await asyncio.gather(handle_once(), handle_once(), return_exceptions=True)
        # Two concurrent handlers: one wins; the other sees it or fails on the primary key.
        assert sum(r is True for r in results) == 1
        assert await handle_once() is False


async def test_claim_takes_an_event_once_even_when_two_race(
    amqp_url: str, database_url: str
) -> None:
    async with running(settings_for(amqp_url, database_url), [], clock=FixedClock(NOW)) as rt:
        event_id = str(uuid.uuid4())

        async def claim() -> bool:
            async with UnitOfWork(rt.deps.sessionmaker) as uow:
                return await uow.claim("test", event_id, NOW)

        # No exception on the race: the second claim waits for the first and finds it taken.
        assert sorted(await asyncio.gather(claim(), claim())) == [False, True]
        assert await claim() is False
        async with UnitOfWork(rt.deps.sessionmaker) as uow:
            assert await uow.seen("test", event_id)


async def test_a_committed_event_goes_from_memory_without_waiting_for_a_poll(
    amqp_url: str, database_url: str
) -> None:
    slow_poll = settings_for(amqp_url, database_url, outbox_poll_seconds=60)
    async with running(slow_poll, [], clock=FixedClock(NOW)) as rt:
        await asyncio.sleep(0.5)  # the relay's first poll is behind it
        async with rt.deps.uow() as uow:
            uow.publish(closed_event())
        [row] = await _rows(rt)
        assert row.lease_until is not None and row.lease_until > datetime.now(UTC)
        await eventually(lambda: _all_published(rt), timeout=5)


class _DiedAfterCommit:
    """A writer's relay that leases its rows and never sends them: its process died."""

    def lease_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=1.5)

    def send(self, rows: object) -> None:
        pass


async def test_a_leased_row_waits_for_its_writer_and_an_orphan_is_taken_after_its_lease(
    amqp_url: str, pg_url: str
) -> None:
    """A process that died between commit and publish leaves a leased row: no other relay
    touches it while the lease runs (no duplicate of a row its writer is publishing), and the
    first poll after the lease publishes it (nothing lost)."""
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        # What a writer that died after its commit leaves: a leased row nobody will send.
        async with UnitOfWork(rt.deps.sessionmaker, cast(OutboxRelay, _DiedAfterCommit())) as uow:
            uow.publish(closed_event())
        assert await rt.relay.relay_once() == 0  # leased: not this relay's to take
        started = time.monotonic()
        await eventually(lambda: _all_published(rt), timeout=10)
        assert time.monotonic() - started > 1.0


async def _rows(rt: Runtime) -> list[OutboxRow]:
    async with rt.deps.sessionmaker() as session:
        return list(await session.scalars(select(OutboxRow)))


async def test_a_clean_stop_marks_what_the_broker_confirmed(amqp_url: str, pg_url: str) -> None:
    """Marks are batched a moment after the confirms; stopping in that moment must not
    leave confirmed rows pending (they would go out twice when their lease ends)."""
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        rt.relay._mark_delay = 60  # the batch of marks is still waiting at the stop
        async with rt.deps.uow() as uow:
            uow.publish(closed_event())
        await eventually(lambda: rt.relay._confirmed)
        assert await pending(rt)
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as again:
        again.relay._mark_delay = 60
        assert await pending(again) == []


async def test_an_unroutable_event_sent_from_memory_is_recorded_and_left_to_the_poll(
    amqp_url: str, pg_url: str
) -> None:
    async with running(settings_for(amqp_url, pg_url), [], clock=FixedClock(NOW)) as rt:
        async with rt.deps.uow() as uow:
            event = closed_event()
            uow.publish(event)
            [row] = uow._outbox  # what a binding removed by hand would cause:
            row.routing_key = "nobody.listens"

        async def tried() -> list[OutboxRow]:
            return [r for r in await pending(rt) if r.attempts > 0]

        [failed] = await eventually(tried)
        assert "NO_ROUTE" in (failed.last_error or "")
        assert failed.lease_until is None  # any relay's next poll tries it again
        assert failed.event_id == str(event.event_id)


async def test_the_lease_runs_from_the_commit_not_from_the_publish(
    amqp_url: str, pg_url: str
) -> None:
    """A transaction longer than the lease (a notifier's SMTP try) must not commit rows
    other relays may take at once: they would go out twice."""
    settings = settings_for(amqp_url, pg_url, outbox_lease_seconds=1.0, outbox_poll_seconds=60)
    async with running(settings, [], clock=FixedClock(NOW)) as rt:
        async with rt.deps.uow() as uow:
            uow.publish(closed_event())
            await asyncio.sleep(1.2)
            committing = datetime.now(UTC)
        [row] = await _rows(rt)
        assert row.lease_until is not None and row.lease_until > committing
