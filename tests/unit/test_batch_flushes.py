"""A consumer's batch reaches the database in one flush: what a handler must read once the
batch's changes are in (the duplicate search, the notification ids) waits for the unit of
work's ``before_commit``; what it reads of other tables for every case (attachments, joined
cases) is read once for the batch. On an in-memory SQLite unit of work."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.handlers import HANDLERS as NOTIFIER
from services.notifier.handlers import NotifierDeps
from services.notifier.models import NotificationRow
from services.notifier.planning import Planner
from services.router.duplicate_searches import search_queued
from services.router.handlers import HANDLERS as ROUTER
from services.router.handlers import RouterDeps
from services.router.rules import RuleSet
from shared.cases import file_case, history
from shared.clock import FixedClock
from shared.config import DuplicatePolicy
from shared.consumer import Handlers
from shared.db.models import CaseRow, DuplicateCandidateRow, OutboxRow
from shared.evidence import AttachmentRow, RemitLinks
from shared.storage import LocalFolderStore
from shared.uow import UnitOfWork
from tests.factories import DEPARTMENTS, NOW, case_received, config, services, submission

REMIT_HOLES = {
    "name": "huecos",
    "priority": 50,
    "keywords": ["hueco*"],
    "kind": "denuncia",
    "category": "Vías",
    "route": "remit:vias",
}
TEXTS = [
    "Hay un hueco enorme frente a la escuela primaria de Bella Vista.",
    "Un hueco en la calle 50 rompió dos llantas de taxis esta semana.",
    "El hueco de la vía Israel lleva meses sin reparar y crece.",
    "Hay un hueco enorme frente a la escuela primaria de Bella Vista!",
]


class Flushes:
    """Counts the session's flushes and the statements that read a table."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.flushes = 0
        self.reads: list[str] = []
        event.listen(uow.session.sync_session, "after_flush", self._flushed)
        engine = uow.session.get_bind()
        event.listen(engine, "before_cursor_execute", self._statement)
        self._engine = engine

    def _flushed(self, *_: Any) -> None:
        self.flushes += 1

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.reads.append(statement)

    def reading(self, table: str) -> int:
        return sum(f"FROM {table}" in s for s in self.reads)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)


async def filed(sessionmaker: async_sessionmaker[AsyncSession], text: str) -> CaseRow:
    async with UnitOfWork(sessionmaker) as uow:
        case, _ = await file_case(
            uow,
            services(),
            submission(description=text),
            channel="web",
            actor="ciudadano",
            now=NOW,
        )
    return case


async def with_attachment(
    sessionmaker: async_sessionmaker[AsyncSession], case: CaseRow, name: str
) -> None:
    async with UnitOfWork(sessionmaker) as uow:
        uow.session.add(
            AttachmentRow(
                id=str(uuid.uuid4()),
                case_id=case.id,
                name=name,
                media_type="image/jpeg",
                size=10,
                key=f"adjuntos/{name}",
                thumbnail_key=None,
                public=False,
                source="web",
                created_at=NOW,
            )
        )


async def batch_uow(
    sessionmaker: async_sessionmaker[AsyncSession], cases: list[CaseRow], *, lock: bool
) -> UnitOfWork:
    """A unit of work opened and read ahead as the consumer does for a batch."""
    uow = UnitOfWork(sessionmaker)
    await uow.__aenter__()
    await uow.prefetch(
        claims=[], case_ids=[c.id for c in cases], lock=lock, external_refs=[], at=NOW
    )
    return uow


async def test_a_router_batch_is_flushed_once_and_reads_the_attachments_once(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    cases = [await filed(sessionmaker, text) for text in TEXTS]
    await with_attachment(sessionmaker, cases[0], "uno.jpg")
    await with_attachment(sessionmaker, cases[2], "tres.jpg")
    store = LocalFolderStore(tmp_path, base_url="http://127.0.0.1:8000", secret="s" * 32)
    links = RemitLinks(store, timedelta(days=2))
    handlers = Handlers(
        "router",
        RouterDeps(
            FixedClock(NOW),
            dataclasses.replace(services(), complete_event=links),
            RuleSet.from_config([REMIT_HOLES], set(DEPARTMENTS)),
        ),
        ROUTER,
    )
    uow = await batch_uow(sessionmaker, cases, lock=True)
    counted = Flushes(uow)
    try:
        for case in cases:
            received = case_received(case_id=uuid.UUID(case.id), tracking_code=case.tracking_code)
            assert await handlers.handle(received, uow)
        assert counted.flushes == 0  # nothing flushed between the handlers
        assert counted.reading("attachments") == 1
        await uow.__aexit__(None, None, None)
    finally:
        counted.close()

    async with UnitOfWork(sessionmaker) as check:
        outbox = list(await check.session.scalars(select(OutboxRow)))
        copies = [row for row in outbox if row.event_type == "CaseRemittedToDepartment"]
        bodies = [json.loads(row.body) for row in copies]
        attached = {
            body["case_id"]: [a["name"] for a in body.get("attachments", [])] for body in bodies
        }
        assert list(await check.session.scalars(select(DuplicateCandidateRow))) == []
    # The batch queued its cases' duplicate searches; run later, off the path, at once.
    assert await search_queued(lambda: UnitOfWork(sessionmaker), DuplicatePolicy()) == 4
    async with UnitOfWork(sessionmaker) as check:
        candidates = list(await check.session.scalars(select(DuplicateCandidateRow)))
    assert attached == {
        cases[0].id: ["uno.jpg"],
        cases[1].id: [],
        cases[2].id: ["tres.jpg"],
        cases[3].id: [],
    }
    # The two cases of one text found each other, though they arrived in one batch.
    pairs = {(c.case_id, c.candidate_id) for c in candidates}
    assert (cases[3].id, cases[0].id) in pairs and (cases[0].id, cases[3].id) in pairs
    # The queue's rows are inserted once, before the commit: the commit's flush is the one.
    assert counted.flushes <= 1


async def test_a_notifier_batch_names_each_notification_in_its_case_history(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    cases = [await filed(sessionmaker, text) for text in TEXTS[:3]]
    institution = config()
    handlers = Handlers(
        "notifier",
        NotifierDeps(
            FixedClock(NOW),
            Planner(institution, sms_gateway=False, terms=services().terms),
            asyncio.Event(),
        ),
        NOTIFIER,
    )
    uow = await batch_uow(sessionmaker, cases, lock=False)
    counted = Flushes(uow)
    try:
        for case in cases:
            received = case_received(case_id=uuid.UUID(case.id), tracking_code=case.tracking_code)
            assert await handlers.handle(received, uow)
        assert counted.flushes == 0
        await uow.__aexit__(None, None, None)
    finally:
        counted.close()
    assert counted.flushes <= 2

    async with UnitOfWork(sessionmaker) as check:
        rows = list(await check.session.scalars(select(NotificationRow)))
        assert rows
        for case in cases:
            ids = {r.id for r in rows if r.case_id == case.id}
            named = {
                (entry.details or {})["notification_id"]
                for entry in await history(check, case.id)
                if entry.action == "notification_queued"
            }
            assert named == ids and ids


# ---------------------------------------------------------------- the unit of work's hook


async def test_before_commit_runs_in_order_and_may_queue_more(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    async def second() -> None:
        ran.append("second")

    async with UnitOfWork(sessionmaker) as uow:

        async def first() -> None:
            ran.append("first")
            uow.before_commit(third)

        async def third() -> None:
            ran.append("third")

        uow.before_commit(first)
        uow.before_commit(second)
        uow.after_commit(lambda: ran.append("committed"))
    assert ran == ["first", "second", "third", "committed"]


async def test_a_failing_before_commit_rolls_the_whole_transaction_back(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker, TEXTS[0])
    ran: list[str] = []

    async def fails() -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        async with UnitOfWork(sessionmaker) as uow:
            stored = await uow.session.get(CaseRow, case.id)
            assert stored is not None
            stored.description = "cambiada"
            uow.before_commit(fails)
            uow.after_commit(lambda: ran.append("committed"))
    async with UnitOfWork(sessionmaker) as uow:
        stored = await uow.session.get(CaseRow, case.id)
        assert stored is not None and stored.description == TEXTS[0]
    assert ran == []


async def test_before_commit_does_not_run_when_the_work_failed(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append("hook")

    with pytest.raises(ValueError):
        async with UnitOfWork(sessionmaker) as uow:
            uow.before_commit(hook)
            raise ValueError("handler failed")
    assert ran == []


async def test_the_followers_read_ahead_are_the_joined_cases(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    main, joined, other = [await filed(sessionmaker, text) for text in TEXTS[:3]]
    async with UnitOfWork(sessionmaker) as uow:
        row = await uow.session.get(CaseRow, joined.id)
        assert row is not None
        row.duplicate_of = main.id
    uow = await batch_uow(sessionmaker, [main, other], lock=True)
    try:
        assert [c.id for c in uow.cached_followers(main.id) or []] == [joined.id]
        assert uow.cached_followers(other.id) == []
        assert uow.batch_case_ids == {main.id, other.id}
        uow.forget_followers()
        assert uow.cached_followers(main.id) is None
    finally:
        await uow.__aexit__(None, None, None)
