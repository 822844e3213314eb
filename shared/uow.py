"""The unit of work: one database transaction holding state changes, audit rows,
outgoing events (the outbox) and the inbox mark of the event being handled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, Table, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contract import Event
from shared.db.models import CaseRow, InboxRow, OutboxRow

if TYPE_CHECKING:
    from shared.outbox import OutboxRelay


class UnitOfWork:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        relay: OutboxRelay | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._relay = relay  # this process's relay: it publishes our rows from memory
        self._outbox: list[OutboxRow] = []
        self._before_commit: list[Callable[[], Awaitable[object]]] = []
        self._after_commit: list[Callable[[], None]] = []
        self.events: list[Event] = []
        # What a batch fetched ahead (see prefetch): claims tried and won, cases read.
        self._tried: set[tuple[str, str]] = set()
        self._won: set[tuple[str, str]] = set()
        self._cases: dict[str, CaseRow | None] = {}
        self._locked = False
        self._by_ref: dict[str, CaseRow | None] = {}
        self._followers: dict[str, list[CaseRow]] = {}

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
                # A callback may add rows, and queue more callbacks: each runs once.
                while self._before_commit:
                    await self._before_commit.pop(0)()
                if self._outbox:
                    await self._insert_outbox()
                await self.session.commit()
                if self._outbox and self._relay is not None:
                    self._relay.send(self._outbox)
                for callback in self._after_commit:
                    callback()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()

    def before_commit(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Await ``callback`` just before the commit, after every handler of the batch ran, in
        the order given. Work that reads the database once the batch's own changes are in it
        goes here: the first read flushes the whole batch at once, instead of one flush per
        event between the handlers."""
        self._before_commit.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction committed (a log line, a wake-up); never if
        it rolled back."""
        self._after_commit.append(callback)

    @property
    def is_postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def publish(self, event: Event) -> None:
        """Store the event in the outbox (just before the commit, with the transaction's other
        events); the relay publishes it after the commit."""
        row = OutboxRow(
            event_id=str(event.event_id),
            event_type=event.event_type,
            routing_key=event.routing_key(),
            body=event.model_dump_json(),
            created_at=event.occurred_at,
            attempts=0,
        )
        self._outbox.append(row)
        self.events.append(event)

    async def _insert_outbox(self) -> None:
        """The transaction's events in one statement (Core: the rows need no identity map;
        the relay gets them, with their ids, from memory). Their lease runs from the commit,
        not from the publish: a long transaction (a notifier's SMTP try) must not hand its
        rows to other relays the moment it commits."""
        lease = self._relay.lease_until() if self._relay is not None else None
        table = OutboxRow.__table__
        assert isinstance(table, Table)
        values = [
            {
                "event_id": row.event_id,
                "event_type": row.event_type,
                "routing_key": row.routing_key,
                "body": row.body,
                "created_at": row.created_at,
                "lease_until": lease,
                "attempts": 0,
            }
            for row in self._outbox
        ]
        ids = await self.session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), values
        )
        for row, id_ in zip(self._outbox, ids, strict=True):
            row.id, row.lease_until = id_, lease

    async def seen(self, consumer: str, event_id: str) -> bool:
        row = await self.session.scalar(
            select(InboxRow.event_id).where(
                InboxRow.consumer == consumer, InboxRow.event_id == event_id
            )
        )
        return row is not None

    async def prefetch(
        self,
        *,
        claims: list[tuple[str, str]],
        case_ids: list[str],
        lock: bool,
        external_refs: list[str],
        at: datetime,
    ) -> None:
        """Claim the events and read the cases a batch of deliveries will ask for, one
        statement each; :meth:`claim`, :meth:`cached_case` and :meth:`cached_external_ref`
        then answer from here."""
        if claims:
            self._won = await self._claim_rows(claims, at)
            self._tried = set(claims)
        if case_ids:
            # Sorted, so two processes locking overlapping batches take the rows in one order.
            query = select(CaseRow).where(CaseRow.id.in_(sorted(set(case_ids))))
            query = query.order_by(CaseRow.id)
            if lock and self.is_postgres:
                query = query.with_for_update()
            found = {row.id: row for row in await self.session.scalars(query)}
            self._cases = {case_id: found.get(case_id) for case_id in case_ids}
            self._locked = lock
            if lock:
                # The cases joined to these (they follow each step of their main case).
                followers = select(CaseRow).where(CaseRow.duplicate_of.in_(sorted(found)))
                followers = followers.order_by(CaseRow.received_at, CaseRow.id)
                if self.is_postgres:
                    followers = followers.with_for_update()
                self._followers = {case_id: [] for case_id in found}
                for row in await self.session.scalars(followers):
                    self._followers[str(row.duplicate_of)].append(row)
        if external_refs:
            query = select(CaseRow).where(CaseRow.external_ref.in_(set(external_refs)))
            found_refs = {row.external_ref: row for row in await self.session.scalars(query)}
            self._by_ref = {ref: found_refs.get(ref) for ref in external_refs}

    def cached_case(self, case_id: str, *, lock: bool) -> tuple[bool, CaseRow | None]:
        """(True, the row or None if there is no such case) when a batch read it already."""
        if case_id in self._cases and (self._locked or not lock):
            return True, self._cases[case_id]
        return False, None

    @property
    def batch_case_ids(self) -> frozenset[str]:
        """The cases a batch read ahead (what its handlers act on); empty outside a batch."""
        return frozenset(case_id for case_id, row in self._cases.items() if row is not None)

    def cached_followers(self, case_id: str) -> list[CaseRow] | None:
        """The cases joined to ``case_id``, locked, when a locking batch read them ahead."""
        return self._followers.get(case_id)

    def forget_followers(self) -> None:
        """A join or a separation in this transaction: read the followers anew."""
        self._followers.clear()

    def cached_external_ref(self, ref: str) -> tuple[bool, CaseRow | None]:
        if ref in self._by_ref:
            return True, self._by_ref[ref]
        return False, None

    def remember_external_ref(self, ref: str, case: CaseRow) -> None:
        """A case filed in this transaction: the next look-up of its ref must find it."""
        if ref in self._by_ref:
            self._by_ref[ref] = case

    async def _claim_rows(
        self, claims: list[tuple[str, str]], at: datetime
    ) -> set[tuple[str, str]]:
        """One ``INSERT … ON CONFLICT DO NOTHING RETURNING``: the (consumer, event_id) pairs
        this transaction took. A concurrent claim of the same event waits for the first
        transaction and then finds it taken, instead of failing on the key.

        Built so SQLAlchemy can cache its compiled form (a multi-row ``VALUES`` list cannot
        be cached and was compiled anew for every delivery): one row as plain parameters,
        several on PostgreSQL as arrays through ``unnest``. Core, not the ORM: nothing here
        needs an identity map."""
        table = InboxRow.__table__
        assert isinstance(table, Table)
        postgres = self.is_postgres
        insert_into = postgresql_insert if postgres else sqlite_insert
        statement: Any
        if len(claims) == 1:
            [(consumer, event_id)] = claims
            statement = insert_into(table).values(
                consumer=consumer, event_id=event_id, processed_at=at
            )
        elif postgres:
            rows = select(
                func.unnest(bindparam("consumers", [c for c, _ in claims], type_=ARRAY(String))),
                func.unnest(bindparam("event_ids", [e for _, e in claims], type_=ARRAY(String))),
                bindparam("at", at, type_=InboxRow.processed_at.type),
            )
            statement = insert_into(table).from_select(
                ["consumer", "event_id", "processed_at"], rows
            )
        else:
            statement = insert_into(table).values(
                [{"consumer": c, "event_id": e, "processed_at": at} for c, e in claims]
            )
        statement = statement.on_conflict_do_nothing(
            index_elements=["consumer", "event_id"]
        ).returning(table.c.consumer, table.c.event_id)
        return {(c, e) for c, e in await self.session.execute(statement)}

    async def claim(self, consumer: str, event_id: str, at: datetime) -> bool:
        """Mark the event handled by ``consumer``; False if it already was."""
        key = (consumer, event_id)
        if key in self._tried:  # claimed ahead by the batch; a second copy in it loses
            if key in self._won:
                self._won.discard(key)
                return True
            return False
        return key in await self._claim_rows([key], at)

    def mark_seen(self, consumer: str, event_id: str, at: object) -> None:
        self.session.add(InboxRow(consumer=consumer, event_id=event_id, processed_at=at))
