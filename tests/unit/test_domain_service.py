"""The case service layer (filing, actions, audit) on an in-memory SQLite unit of work.

No broker, no PostgreSQL: what one transaction stores — the case, its audit row, the outbox
and the inbox mark — and that a refusal stores nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.cases import InvalidActionInput, file_case, get_case, history, perform
from shared.db.models import CaseRow, InboxRow, OutboxRow
from shared.lifecycle import IllegalTransition, UnknownAction
from shared.uow import UnitOfWork
from tests.factories import NOW, body, services, submission


async def filed(sessionmaker: async_sessionmaker[AsyncSession], **overrides: Any) -> CaseRow:
    async with UnitOfWork(sessionmaker) as uow:
        case, created = await file_case(
            uow, services(), submission(**overrides), channel="web", actor="ciudadano", now=NOW
        )
    assert created
    return case


async def act(
    sessionmaker: async_sessionmaker[AsyncSession], case: CaseRow, action: str, data: Any, **kw: Any
) -> list[str]:
    async with UnitOfWork(sessionmaker) as uow:
        row = await get_case(uow, case_id=case.id, lock=True)
        events = await perform(uow, services(), row, action, data, actor="staff", now=NOW, **kw)
    return [e.event_type for e in events]


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, list[Any]]:
    async with sessionmaker() as session:
        return {
            "outbox": list(await session.scalars(select(OutboxRow.event_type))),
            "inbox": list(await session.scalars(select(InboxRow.consumer))),
        }


async def test_filing_stores_the_case_its_audit_row_and_case_received(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    async with UnitOfWork(sessionmaker) as uow:
        row = await get_case(uow, tracking_code=case.tracking_code)
        rows = await history(uow, case.id)
    assert (row.state, row.channel, row.due_at > NOW) == ("received", "web", True)
    assert [(r.action, r.actor, r.to_state, r.details) for r in rows] == [
        ("file", "ciudadano", "received", {"channel": "web"})
    ]
    assert (await stored(sessionmaker))["outbox"] == ["CaseReceived"]


async def test_a_311_ticket_filed_twice_is_one_case(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with UnitOfWork(sessionmaker) as uow:
        first, _ = await file_case(
            uow, services(), submission(), channel="311", actor="p", now=NOW, external_ref="T-1"
        )
    async with UnitOfWork(sessionmaker) as uow:
        again, created = await file_case(
            uow, services(), submission(), channel="311", actor="p", now=NOW, external_ref="T-1"
        )
    assert again.id == first.id and not created
    assert (await stored(sessionmaker))["outbox"] == ["CaseReceived"]


async def test_an_action_stores_the_state_the_audit_row_and_its_events_together(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    assert await act(sessionmaker, case, "classify", {"kind": "denuncia"}) == ["CaseClassified"]
    assert await act(sessionmaker, case, "remit", body("remit")) == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
    ]
    async with UnitOfWork(sessionmaker) as uow:
        row = await get_case(uow, case_id=case.id)
        rows = await history(uow, case.id)
    assert (row.state, row.department) == ("remitted", "vias")
    remit = rows[-1]
    assert (remit.action, remit.from_state, remit.to_state) == ("remit", "classified", "remitted")
    assert remit.details is not None and remit.details["department"] == "vias"
    assert len(remit.details["events"]) == 2
    assert (await stored(sessionmaker))["outbox"] == [
        "CaseReceived",
        "CaseClassified",
        "CaseRemitted",
        "CaseRemittedToDepartment",
    ]


@pytest.mark.parametrize(
    ("action", "data", "refusal", "rule"),
    [
        ("close", {}, IllegalTransition, None),
        ("decline", {}, InvalidActionInput, "missing"),
        (
            "decline",
            {"reason_code": "capricho", "reason": "Sin motivo."},
            InvalidActionInput,
            "unknown_reason",
        ),
        ("classify", {"kind": "reclamo"}, InvalidActionInput, "literal_error"),
        ("classify", {"kind": "denuncia", "by": "x"}, InvalidActionInput, "extra_forbidden"),
        ("escalate", {}, UnknownAction, None),
    ],
)
async def test_a_refused_action_stores_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    action: str,
    data: dict[str, Any],
    refusal: type[Exception],
    rule: str | None,
) -> None:
    case = await filed(sessionmaker)
    with pytest.raises(refusal) as refused:
        await act(sessionmaker, case, action, data)
    if rule is not None:
        assert isinstance(refused.value, InvalidActionInput) and refused.value.rule == rule
    async with UnitOfWork(sessionmaker) as uow:
        assert (await get_case(uow, case_id=case.id)).state == "received"
        assert len(await history(uow, case.id)) == 1
    assert (await stored(sessionmaker))["outbox"] == ["CaseReceived"]


async def test_an_answer_given_here_is_emitted_and_marked_in_the_named_inbox(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    await act(sessionmaker, case, "classify", {"kind": "denuncia"})
    await act(sessionmaker, case, "remit", {"department": "vias"})
    emitted = await act(
        sessionmaker,
        case,
        "respond",
        {"response": "Hueco reparado."},
        department="vias",
        answers_heard_by="answers",
    )
    assert emitted == ["DepartmentResponded", "CaseResolved"]
    assert (await stored(sessionmaker))["inbox"] == ["answers"]


async def test_an_answer_that_came_over_the_wire_is_not_emitted_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await filed(sessionmaker)
    await act(sessionmaker, case, "classify", {"kind": "denuncia"})
    for _ in (1, 2):
        await act(sessionmaker, case, "remit", {"department": "vias"})
        emitted = await act(
            sessionmaker,
            case,
            "return",
            {"reason": "No es nuestro."},
            department="vias",
            answer_on_wire=True,
        )
        # The department said it already; the system's verdict (flagged the second time) is
        # announced.
        assert emitted == ["CaseReturnAccepted"]
    async with UnitOfWork(sessionmaker) as uow:
        returns = [r for r in await history(uow, case.id) if r.action == "return"]
    assert [(r.details or {}).get("flagged") for r in returns] == [False, True]
    assert (await stored(sessionmaker))["inbox"] == []
