"""The law's terms over the real broker and database: a department's term never ends after the
case's legal term less the margin the office needs to notify the citizen."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import aio_pika
import pytest
from sqlalchemy import select

from services.deadlines.app import service as deadlines_service
from services.deadlines.models import ClockRow
from services.intake.app import service as intake_service
from services.notifier.app import service as notifier_service
from services.notifier.models import NotificationRow
from services.router.app import service as router_service
from shared.calendar import TZ
from shared.calendar_cli import run_close
from shared.clock import FixedClock
from shared.closures import ClosureExists
from shared.domain.closures import Closure, ClosureSource
from shared.runtime import Runtime
from tests.integration.test_router_paths import (
    Platform311,
    act,
    platform,
    settled,
    submission,
)
from tests.support import drain, eventually, running, settings_for

pytestmark = pytest.mark.connected
__all__ = ["platform"]

# Monday 2 March 2026, 10:00 in Panama.
FILED = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
# Thirty working days after 2 March 2026, Good Friday (3 April) not counted: Tuesday 14 April.
LEGAL_DUE = datetime(2026, 4, 14, 23, 59, 59, tzinfo=TZ)
# The department's own 30 working days from Thursday 5 March would end on Friday 17 April; the
# legal due date less 2 working days (13 and 14 April) caps it at Friday 10 April.
CAPPED_DUE = datetime(2026, 4, 10, 23, 59, 59, tzinfo=TZ)

UNROUTED = "Quisiera denunciar lo que pasa en la oficina de trámites los sábados por la mañana."


@pytest.fixture
async def clock_and_runtime(
    amqp_url: str, pg_url: str
) -> AsyncIterator[tuple[FixedClock, Runtime]]:
    clock = FixedClock(FILED)
    settings = settings_for(amqp_url, pg_url)
    async with running(settings, [intake_service(), router_service()], clock) as rt:
        yield clock, rt


async def test_a_remittance_carries_the_department_due_date_capped_by_the_legal_term(
    clock_and_runtime: tuple[FixedClock, Runtime], platform: Platform311, amqp_url: str
) -> None:
    clock, runtime = clock_and_runtime
    await platform.submit(submission("denuncia", UNROUTED, "311-CAP"))
    case = await settled(runtime, "311-CAP", "classified")
    assert case.due_at == LEGAL_DUE

    clock.advance(timedelta(days=3))  # Thursday 5 March 2026
    assert await act(runtime, case.id, "remit", {"department": "rrhh"}) == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
    ]

    async def remitted() -> list[aio_pika.abc.AbstractIncomingMessage]:
        return await drain(amqp_url, "defensa311.department.rrhh")

    messages: list[aio_pika.abc.AbstractIncomingMessage] = await eventually(remitted)
    assert len(messages) == 1
    body = json.loads(messages[0].body)
    assert body["event_type"] == "CaseRemittedToDepartment"
    assert datetime.fromisoformat(body["due_at"]) == CAPPED_DUE
    assert body["due_capped"] is True
    stored = await settled(runtime, "311-CAP", "remitted")
    assert stored.department_due_at == CAPPED_DUE
    assert not stored.flagged  # five working days are left: no alarm


# Tuesday 27 October 2026, 10:00 in Panama: 30 working days (3, 5 and 10 November and 8
# December are holidays) end on Monday 14 December 2026; with Wednesday 4 November closed,
# on Tuesday 15 December.
OCTOBER = datetime(2026, 10, 27, 15, 0, tzinfo=UTC)
CLOSED = date(2026, 11, 4)


@pytest.fixture
async def everything(
    amqp_url: str, pg_url: str, smtp_port: int
) -> AsyncIterator[tuple[FixedClock, Runtime]]:
    clock = FixedClock(OCTOBER)
    settings = settings_for(amqp_url, pg_url, smtp_port=smtp_port)
    services = [intake_service(), router_service(), deadlines_service(), notifier_service()]
    async with running(settings, services, clock) as rt:
        yield clock, rt


async def test_a_closure_moves_open_terms_their_clocks_and_tells_citizen_and_department(
    everything: tuple[FixedClock, Runtime], platform: Platform311
) -> None:
    _clock, runtime = everything
    await platform.submit(submission("denuncia", UNROUTED, "311-CLOSE"))
    case = await settled(runtime, "311-CLOSE", "classified")
    assert await act(runtime, case.id, "remit", {"department": "vias"}) == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
    ]
    before = await settled(runtime, "311-CLOSE", "remitted")
    legal_before, department_before = before.due_at, before.department_due_at
    assert legal_before.astimezone(TZ).date() == date(2026, 12, 14)
    assert department_before is not None

    async def clocks() -> dict[str, datetime] | None:
        async with runtime.deps.uow() as uow:
            rows = list(
                await uow.session.scalars(select(ClockRow).where(ClockRow.case_id == case.id))
            )
        return {r.clock: r.due_at for r in rows} if len(rows) == 2 else None

    assert await eventually(clocks) == {"legal": legal_before, "department": department_before}

    reason = "Decreto Ejecutivo de prueba: cierre de oficinas públicas"
    closure = Closure(CLOSED, reason, True, ClosureSource.DATABASE)
    moved = await run_close(runtime.settings, closure, settle=0)
    assert moved == 2

    after = await settled(runtime, "311-CLOSE", "remitted")
    assert after.due_at.astimezone(TZ).date() == date(2026, 12, 15)
    assert after.department_due_at is not None and after.department_due_at > department_before
    assert after.due_note is not None and reason in after.due_note

    async def moved_clocks() -> dict[str, datetime] | None:
        found = await clocks()
        return found if found and found["legal"] != legal_before else None

    assert await eventually(moved_clocks) == {
        "legal": after.due_at,
        "department": after.department_due_at,
    }

    async def told() -> list[tuple[str, str]] | None:
        async with runtime.deps.uow() as uow:
            rows = list(
                await uow.session.scalars(
                    select(NotificationRow).where(
                        NotificationRow.case_id == case.id,
                        NotificationRow.event_type == "DueDateChanged",
                    )
                )
            )
        found = sorted((r.template, r.recipient) for r in rows)
        return found if len(found) == 2 else None

    assert await eventually(told) == [
        ("due_date_changed", "maria.perez@example.com"),
        ("due_date_changed", "vias@alcaldia.example"),
    ]
    # Adding the same day again is refused and moves nothing.
    with pytest.raises(ClosureExists):
        await run_close(runtime.settings, closure, settle=0)


async def notifications_of(
    runtime: Runtime, case_id: str, event_type: str
) -> list[tuple[str, str]]:
    async with runtime.deps.uow() as uow:
        rows = await uow.session.scalars(
            select(NotificationRow).where(
                NotificationRow.case_id == case_id, NotificationRow.event_type == event_type
            )
        )
        return sorted((r.template, r.recipient) for r in rows)


async def test_a_declined_petition_and_a_forwarded_one_are_told_to_whom_they_concern(
    everything: tuple[FixedClock, Runtime], platform: Platform311
) -> None:
    _clock, runtime = everything
    await platform.submit(submission("denuncia", UNROUTED, "311-DECLINE"))
    await platform.submit(submission("denuncia", UNROUTED, "311-FORWARD"))
    declined = await settled(runtime, "311-DECLINE", "classified")
    forwarded = await settled(runtime, "311-FORWARD", "classified")

    body = {"reason_code": "duplicada", "reason": "Ya existe un caso por los mismos hechos."}
    assert await act(runtime, declined.id, "decline", body) == ["CaseClosed"]
    note = {"entity": "idaan", "note": "La falta de agua corresponde al IDAAN."}
    assert await act(runtime, forwarded.id, "forward", note) == ["CaseForwarded"]

    async def told_citizen() -> list[tuple[str, str]] | None:
        found = await notifications_of(runtime, declined.id, "CaseClosed")
        return found or None

    assert await eventually(told_citizen) == [("case_declined", "maria.perez@example.com")]

    async def told_both() -> list[tuple[str, str]] | None:
        found = await notifications_of(runtime, forwarded.id, "CaseForwarded")
        return found if len(found) == 2 else None

    assert await eventually(told_both) == [
        ("case_forwarded", "maria.perez@example.com"),
        ("case_forwarded_entity", "atencion@idaan.example"),
    ]

    async def stopped() -> bool:
        async with runtime.deps.uow() as uow:
            rows = list(
                await uow.session.scalars(
                    select(ClockRow).where(ClockRow.case_id.in_([declined.id, forwarded.id]))
                )
            )
        return len(rows) == 2 and all(r.stopped_at is not None for r in rows)

    assert await eventually(stopped)
