"""The outbox relay: publishes committed events with publisher confirms, in order.

Two ways out, one table:

- **from memory** (the fast path): a unit of work that committed rows hands them to its own
  process's relay (:meth:`OutboxRelay.send`), which publishes them at once; the confirmed
  ones are marked published together a moment later (``mark_seconds``), one autocommit
  ``UPDATE`` for all of them. Its rows carry a short *lease* (``lease_until``, wall clock) so
  that no other relay publishes them meanwhile; there is no query and no lock to find them.
  Every round trip to the database counts: on this kind of machine the cost of a statement
  is mostly waking the other process, not the work.
- **by polling** (the safety net): every ``poll_seconds`` each relay claims rows with no lease
  (written by a process without a relay, such as the CLI, or whose publish failed) or an
  expired one (its process died between commit and publish), with ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL so several relays never publish the same row at once; SQLite serves one
  process.

A row is marked published only after the broker confirmed it and it was routed
(``mandatory``): an unroutable event stays pending and is retried. Delivery is at least
once: a crash between confirm and mark republishes the same ``event_id`` when the lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractExchange
from faststream.rabbit import RabbitBroker
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
        poll_seconds: float = 0.5,
        lease_seconds: float = 5.0,
        mark_seconds: float = 0.1,
        batch: int = 200,
        user_id: str | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._broker = broker
        # The account the broker connection logs in with: RabbitMQ verifies it, so a consumer
        # can tell the system's own messages from a department's (shared.routing).
        self._user_id = user_id
        self._clock = clock
        self._poll = poll_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch
        self._exchange = exchange()
        self._target: AbstractExchange | None = None
        self._mark_delay = mark_seconds
        self._ready: list[OutboxRow] = []  # committed here, to publish from memory
        self._wake = asyncio.Event()
        self._autocommit: AsyncEngine | None = None
        self._confirmed: list[int] = []  # sent from memory, to mark published
        self._to_mark = asyncio.Event()
        self.published = 0

    def lease_until(self) -> datetime:
        """The lease of a row this process will publish from memory. Wall clock, not the
        service clock: it is compared across processes (a test's fixed clock never moves)."""
        return datetime.now(UTC) + self._lease

    def send(self, rows: Sequence[OutboxRow]) -> None:
        """Rows just committed with :meth:`lease_until`: publish them now, in this order."""
        self._ready.extend(rows)
        self._wake.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._send_loop())
                tasks.create_task(self._mark_loop())
                tasks.create_task(self._poll_loop())
        finally:
            # A clean stop marks what the broker already confirmed; otherwise those rows
            # would go out a second time when their lease ends.
            if self._confirmed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await self._mark(self._confirmed)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ready:
                # What committed while the previous rows awaited their confirms goes together.
                rows = self._ready[: self._batch]
                del self._ready[: len(rows)]
                results = await self._publish_all(rows)
                outcomes = list(zip(rows, results, strict=True))
                self._confirmed.extend(row.id for row, error in outcomes if error is None)
                self._to_mark.set()
                failed = [(row, error) for row, error in outcomes if error is not None]
                if failed:
                    try:
                        async with self._sessionmaker() as session, session.begin():
                            await self._record(
                                session, [row for row, _ in failed], [e for _, e in failed]
                            )
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # the poll publishes them when their lease ends
                        log.warning("outbox send failed", extra={"error": repr(exc)})

    async def _mark_loop(self) -> None:
        backoff = self._mark_delay
        while True:
            await self._to_mark.wait()
            await asyncio.sleep(self._mark_delay)  # the confirms of a moment go together
            self._to_mark.clear()
            ids, self._confirmed = self._confirmed, []
            if not ids:
                continue
            try:
                await self._mark(ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep them; if the lease ends first they go out again
                log.warning("outbox mark failed, retrying", extra={"error": repr(exc)})
                self._confirmed[:0] = ids
                self._to_mark.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = self._mark_delay

    async def _mark(self, ids: list[int]) -> None:
        if self._autocommit is None:
            async with self._sessionmaker() as session:
                assert isinstance(session.bind, AsyncEngine)
                self._autocommit = session.bind.execution_options(isolation_level="AUTOCOMMIT")
        async with self._autocommit.connect() as conn:  # one statement, no BEGIN/COMMIT
            await conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids))
                .values(published_at=self._clock.now())
            )
        self.published += len(ids)

    async def _poll_loop(self) -> None:
        while True:
            try:
                count = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(min(self._poll * 4, 2.0))
                continue
            if count < self._batch:
                await asyncio.sleep(self._poll)

    async def relay_once(self) -> int:
        """Publish one batch of pending rows that nobody holds; return how many were published."""
        async with self._sessionmaker() as session, session.begin():
            query = (
                select(OutboxRow)
                .where(
                    OutboxRow.published_at.is_(None),
                    or_(OutboxRow.lease_until.is_(None), OutboxRow.lease_until < datetime.now(UTC)),
                )
                .order_by(OutboxRow.id)
                .limit(self._batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            return await self._record(session, rows, await self._publish_all(rows))

    async def _publish_all(self, rows: list[OutboxRow]) -> list[BaseException | None]:
        # One channel: frames go out in order, confirms are awaited together.
        return await asyncio.gather(*(self._publish(row) for row in rows), return_exceptions=True)

    async def _record(
        self, session: AsyncSession, rows: list[OutboxRow], results: list[BaseException | None]
    ) -> int:
        """Mark the confirmed rows published; a failed one loses its lease, so the next poll
        of any relay tries it again."""
        done: list[int] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "publish failed", extra={"event_id": row.event_id, "error": repr(result)}
                )
                await session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id)
                    .values(
                        attempts=OutboxRow.attempts + 1,
                        last_error=repr(result)[:1000],
                        lease_until=None,
                    )
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
                user_id=self._user_id,
            ),
            routing_key=row.routing_key,
            mandatory=True,
            timeout=10,
        )
