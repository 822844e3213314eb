"""The outbox relay: publishes committed events with publisher confirms, in order.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several relays (one
per service process) never publish the same row at once; SQLite serves one process.
A row is marked published only after the broker confirmed it and it was routed
(``mandatory``): an unroutable event stays pending and is retried. Delivery is at least
once: a crash between confirm and commit republishes the same ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractExchange
from faststream.rabbit import RabbitBroker
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.db.models import OutboxRow
from shared.messaging import exchange

log = logging.getLogger("defensa311.outbox")


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: RabbitBroker,
        clock: Clock,
        *,
        signal: asyncio.Event,
        poll_seconds: float = 0.5,
        batch: int = 200,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._broker = broker
        self._clock = clock
        self._signal = signal
        self._poll = poll_seconds
        self._batch = batch
        self._exchange = exchange()
        self._target: AbstractExchange | None = None
        self.published = 0

    async def run(self) -> None:
        while True:
            # Cleared before the query, not after: a commit that lands while this batch is
            # being published sets it again, so its row goes at once instead of a poll later.
            self._signal.clear()
            try:
                count = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(min(self._poll * 4, 2.0))
                continue
            if count >= self._batch:
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races its timeout, and the relay would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._signal.wait()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; return how many were published."""
        async with self._sessionmaker() as session, session.begin():
            query = (
                select(OutboxRow)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(self._batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            # One channel: frames go out in order, confirms are awaited together.
            results = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
            done: list[int] = []
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning(
                        "publish failed", extra={"event_id": row.event_id, "error": repr(result)}
                    )
                    await session.execute(
                        update(OutboxRow)
                        .where(OutboxRow.id == row.id)
                        .values(attempts=OutboxRow.attempts + 1, last_error=repr(result)[:1000])
                    )
                else:
                    done.append(row.id)
            if done:
                await session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(done))
                    .values(published_at=self._clock.now())
                )
        self.published += len(done)
        return len(done)

    async def _publish(self, row: OutboxRow) -> None:
        # Straight to the exchange object on the broker's channel (confirms, returns raise):
        # FastStream's publish builds a command and re-hashes the exchange on every message.
        if self._target is None:
            self._target = await self._broker.declare_exchange(self._exchange)
        await self._target.publish(
            aio_pika.Message(
                row.body.encode(),
                message_id=row.event_id,
                type=row.event_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=row.routing_key,
            mandatory=True,
            timeout=10,
        )
