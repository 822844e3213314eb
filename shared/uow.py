"""The unit of work: one database transaction holding state changes, audit rows,
outgoing events (the outbox) and the inbox mark of the event being handled."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contract import Event
from shared.db.models import InboxRow, OutboxRow


class UnitOfWork:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox_signal: asyncio.Event | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._signal = outbox_signal
        self._published = False
        self.events: list[Event] = []

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._sessionmaker()
        await self.session.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.session.commit()
                if self._published and self._signal is not None:
                    self._signal.set()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()

    @property
    def is_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def publish(self, event: Event) -> None:
        """Store the event in the outbox; the relay publishes it after commit."""
        self.session.add(
            OutboxRow(
                event_id=str(event.event_id),
                event_type=event.event_type,
                routing_key=event.routing_key(),
                body=event.model_dump_json(),
                created_at=event.occurred_at,
                attempts=0,
            )
        )
        self.events.append(event)
        self._published = True

    async def seen(self, consumer: str, event_id: str) -> bool:
        row = await self.session.scalar(
            select(InboxRow.event_id).where(
                InboxRow.consumer == consumer, InboxRow.event_id == event_id
            )
        )
        return row is not None

    async def claim(self, consumer: str, event_id: str, at: datetime) -> bool:
        """Mark the event handled by ``consumer``; False if it already was.

        One ``INSERT … ON CONFLICT DO NOTHING``: a concurrent claim of the same event waits
        for the first transaction and then finds it taken, instead of failing on the key.
        """
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            insert(InboxRow)
            .values(consumer=consumer, event_id=event_id, processed_at=at)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(InboxRow.event_id)
        )
        return (await self.session.scalar(statement)) is not None

    def mark_seen(self, consumer: str, event_id: str, at: object) -> None:
        self.session.add(InboxRow(consumer=consumer, event_id=event_id, processed_at=at))
