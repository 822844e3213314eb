"""Each service's handler map on an in-memory SQLite unit of work: no broker, no PostgreSQL.

The consumer's part (routing table, inbox, batches) is in ``test_consumer_routing.py``; here a
handler is run as the consumer runs it (``Handlers.handle``) and what it stored is read back.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.deadlines.handlers import HANDLERS as DEADLINES
from services.deadlines.handlers import DeadlinesDeps
from services.deadlines.models import DEPARTMENT, LEGAL, ClockRow, StopRow
from services.deadlines.schedule import AlertPolicy
from services.notifier.handlers import HANDLERS as NOTIFIER
from services.notifier.handlers import NotifierDeps, store
from services.notifier.models import NotificationRow
from services.notifier.planning import Plan, Planned, Planner
from services.router.duplicate_searches import search_queued
from services.router.handlers import HANDLERS as ROUTER
from services.router.handlers import RouterDeps
from services.router.rules import RuleSet
from shared.cases import file_case, get_case, history
from shared.cases.duplicates import candidates_at_filing
from shared.clock import FixedClock
from shared.config import DuplicatePolicy
from shared.consumer import Handlers, Poison
from shared.contract import CaseClosed, CaseRemitted, SubmissionRejected
from shared.db.models import CaseRow, OutboxRow
from shared.uow import UnitOfWork
from tests.factories import (
    DEPARTMENTS,
    NOW,
    case_received,
    config,
    department_responded,
    services,
    submission,
)

REMIT_HOLES = {
    "name": "huecos",
    "priority": 50,
    "keywords": ["hueco*"],
    "kind": "denuncia",
    "category": "Vías",
    "route": "remit:vias",
}
_TABLES = (ClockRow, StopRow, NotificationRow)  # the services' tables join the shared metadata


def router(*rules: dict[str, Any]) -> Handlers[RouterDeps]:
    deps = RouterDeps(
        FixedClock(NOW), services(), RuleSet.from_config(list(rules), set(DEPARTMENTS))
    )
    return Handlers("router", deps, ROUTER)


async def filed(sessionmaker: async_sessionmaker[AsyncSession], **overrides: Any) -> CaseRow:
    async with UnitOfWork(sessionmaker) as uow:
        case, _ = await file_case(
            uow, services(), submission(**overrides), channel="web", actor="ciudadano", now=NOW
        )
    return case


def received_of(case: CaseRow) -> Any:
    return case_received(case_id=uuid.UUID(case.id), tracking_code=case.tracking_code)


async def test_the_router_remits_what_a_rule_matches(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        assert await router(REMIT_HOLES).handle(received_of(case), uow)
    async with UnitOfWork(sessionmaker) as uow:
        stored = await get_case(uow, case_id=case.id)
        assert (stored.state, stored.department) == ("remitted", "vias")
        published = list(await uow.session.scalars(select(OutboxRow.event_type)))
    assert "CaseClassified" in published and "CaseRemitted" in published


async def test_the_router_leaves_in_triage_what_no_rule_matches(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        await router().handle(received_of(case), uow)
    async with UnitOfWork(sessionmaker) as uow:
        assert (await get_case(uow, case_id=case.id)).state == "classified"


async def test_the_router_stores_a_new_cases_possible_duplicates_and_holds_its_route_if_asked(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        await router(REMIT_HOLES).handle(received_of(first), uow)
    # The same pothole again: routed as usual, its search queued; once run, its twin is
    # stored for the console.
    second = await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        await router(REMIT_HOLES).handle(received_of(second), uow)
    async with UnitOfWork(sessionmaker) as uow:
        stored = await get_case(uow, case_id=second.id)
        assert (stored.state, stored.department) == ("remitted", "vias")
        assert await candidates_at_filing(uow, stored) == []
    assert await search_queued(lambda: UnitOfWork(sessionmaker), DuplicatePolicy()) == 2
    async with UnitOfWork(sessionmaker) as uow:
        found = await candidates_at_filing(uow, stored)
        assert [c.case.id for c in found] == [first.id]
        assert found[0].reason.startswith("texto muy parecido (")
    # With the route held, a third one waits classified for staff, with a note saying why.
    third = await filed(sessionmaker)
    held = RouterDeps(
        FixedClock(NOW),
        services(),
        RuleSet.from_config([REMIT_HOLES], set(DEPARTMENTS)),
        DuplicatePolicy(hold_routing=True),
    )
    async with UnitOfWork(sessionmaker) as uow:
        await Handlers("router", held, ROUTER).handle(received_of(third), uow)
    async with UnitOfWork(sessionmaker) as uow:
        stored = await get_case(uow, case_id=third.id)
        assert stored.state == "classified"
        notes = [r for r in await history(uow, third.id) if r.action == "route_held"]
        assert [n.details["candidates"] for n in notes] == [2]  # type: ignore[index]
        assert {c.case.id for c in await candidates_at_filing(uow, stored)} == {
            first.id,
            second.id,
        }


async def test_a_case_the_router_does_not_know_is_poison(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(Poison, match="caso desconocido"):
        async with UnitOfWork(sessionmaker) as uow:
            await router().handle(case_received(), uow)


async def test_a_departments_answer_resolves_its_case_and_a_foreign_one_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ours, theirs = await filed(sessionmaker), await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        for case in (ours, theirs):
            await router(REMIT_HOLES).handle(received_of(case), uow)
    async with UnitOfWork(sessionmaker) as uow:
        await router().handle(department_responded(ours, department="vias"), uow)
        await router().handle(department_responded(theirs, department="aseo"), uow)
    async with UnitOfWork(sessionmaker) as uow:
        assert (await get_case(uow, case_id=ours.id)).state == "resolved"
        assert (await get_case(uow, case_id=theirs.id)).state == "remitted"
        refused = [row.action for row in await history(uow, theirs.id)]
        rejected = list(
            await uow.session.scalars(
                select(OutboxRow).where(OutboxRow.event_type == "SubmissionRejected")
            )
        )
    assert "answer_refused" in refused
    assert [SubmissionRejected.model_validate_json(r.body).department for r in rejected] == ["aseo"]


def deadlines() -> Handlers[DeadlinesDeps]:
    return Handlers(
        "deadlines", DeadlinesDeps(AlertPolicy.from_config(config(), services().terms)), DEADLINES
    )


async def test_deadlines_start_a_clock_per_term_and_a_closure_stops_them(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case_id, code = uuid.uuid4(), "D311-2026-ABCD-EFGH"
    remitted = CaseRemitted(
        case_id=case_id,
        tracking_code=code,
        department="vias",
        kind="denuncia",
        category="Vías",
        remitted_at=NOW,
        due_at=NOW + timedelta(days=10),
        occurred_at=NOW,
    )
    closed = CaseClosed(case_id=case_id, tracking_code=code, occurred_at=NOW + timedelta(days=1))
    async with UnitOfWork(sessionmaker) as uow:
        for event in (case_received(case_id=case_id, tracking_code=code), remitted, closed):
            assert await deadlines().handle(event, uow)
    async with UnitOfWork(sessionmaker) as uow:
        clocks = list(await uow.session.scalars(select(ClockRow).order_by(ClockRow.clock)))
    assert sorted((c.clock, c.department) for c in clocks) == [(DEPARTMENT, "vias"), (LEGAL, None)]
    assert all(c.stopped_at is not None and c.next_fire_at is None for c in clocks)


async def test_a_stop_that_arrives_before_its_start_opens_the_clock_already_stopped(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case_id, code = uuid.uuid4(), "D311-2026-ABCD-EFGH"
    closed = CaseClosed(case_id=case_id, tracking_code=code, occurred_at=NOW + timedelta(hours=1))
    async with UnitOfWork(sessionmaker) as uow:
        await deadlines().handle(closed, uow)
        await deadlines().handle(case_received(case_id=case_id, tracking_code=code), uow)
    async with UnitOfWork(sessionmaker) as uow:
        (clock,) = list(await uow.session.scalars(select(ClockRow)))
    assert clock.stopped_at is not None and clock.next_fire_at is None


async def test_the_notifier_queues_the_receipt_and_ignores_what_is_no_case_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    queued = asyncio.Event()
    notifier = Handlers(
        "notifier",
        NotifierDeps(FixedClock(NOW), Planner(config(), sms_gateway=False), queued),
        NOTIFIER,
    )
    async with UnitOfWork(sessionmaker) as uow:
        assert await notifier.handle(received_of(case), uow)
    assert queued.is_set()  # after the commit: the delivery loop goes
    async with UnitOfWork(sessionmaker) as uow:
        rows = list(await uow.session.scalars(select(NotificationRow)))
    assert [(r.channel, r.recipient, r.status) for r in rows] == [
        ("email", "ana@example.com", "pending")
    ]
    rejected = SubmissionRejected(external_ref="311-1", reasons=[], occurred_at=NOW)
    assert notifier.handler_of(rejected) is None


async def test_the_notifiers_timeline_names_what_was_queued_then_what_could_not_be(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    planned = Planned("case_received", "email", "ana@example.com", "a***@e***.com", "pending", {})
    plan = Plan(notifications=[planned], gaps=["no supervisor configured"])
    async with UnitOfWork(sessionmaker) as uow:
        row = await get_case(uow, case_id=case.id)
        await store(uow, received_of(case), row, plan, now=NOW)
    async with UnitOfWork(sessionmaker) as uow:
        actions = [r.action for r in await history(uow, case.id) if r.actor == "notifier"]
    assert actions == ["notification_queued", "notification_skipped"]
