"""The manual's three paths on the real broker and database.

intake + router run in-process on a fresh PostgreSQL database and RabbitMQ vhost. 311 is
played by plain aio-pika: it publishes ``CaseSubmitted`` and follows every case's public events
on its own queue. Staff actions go through ``perform`` exactly as the HTTP API does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from services.intake.app import service as intake_service
from services.router.app import service as router_service
from services.router.cli import agenda_text
from shared.cases import InvalidActionInput, get_case, history, perform
from shared.clock import FixedClock
from shared.db.models import CaseRow
from shared.lifecycle import IllegalTransition
from shared.runtime import Runtime
from tests.support import eventually, running, settings_for

pytestmark = pytest.mark.connected

# Monday 1 June 2026, 10:00 in Panama.
NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)

CORRUPTION = (
    "Un inspector de la alcaldía me pidió una coima para aprobar el permiso de construcción."
)
GARBAGE = "Hace dos semanas que el camión de la basura no pasa por mi calle en Betania."
SUGGESTION = (
    "Sugiero instalar más bancas y sombra en el parque de Obarrio para los adultos mayores."
)
UNMATCHED = "Quisiera saber el horario de atención de la oficina los sábados por favor."
OUTSIDE = "Se fue la luz en todo el barrio desde ayer y nadie responde a las llamadas."


def submission(kind: str | None, description: str, ref: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseSubmitted",
        "occurred_at": NOW.isoformat(),
        "schema_version": 1,
        "external_ref": ref,
        "description": description,
        "citizen": {"full_name": "María Pérez", "id_number": "8-123-4567", "phone": "6123-4567"},
        "notify": {"email": "maria.perez@example.com"},
        "location": {
            "district": "Panamá",
            "corregimiento": "Betania",
            "address": "Calle 50, casa 12",
        },
    }
    if kind is not None:
        body["kind"] = kind
    return body


class Platform311:
    """311 as an outside client: plain aio-pika, not the project's code."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self.connection = connection
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def submit(self, body: dict[str, Any]) -> None:
        channel = await self.connection.channel()
        exchange = await channel.get_exchange("defensa311")
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=body["event_id"],
            ),
            routing_key="case.submitted",
        )
        await channel.close()

    async def drain(self) -> list[tuple[str, dict[str, Any]]]:
        channel = await self.connection.channel()
        queue = await channel.get_queue("defensa311.platform311", ensure=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            self.seen.append((message.routing_key or "", json.loads(message.body)))
        await channel.close()
        return self.seen

    async def events_of(self, case_id: str) -> list[str]:
        await self.drain()
        return [body["event_type"] for _, body in self.seen if body.get("case_id") == case_id]


@pytest.fixture
async def platform(amqp_url: str) -> AsyncIterator[Platform311]:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        yield Platform311(connection)
    finally:
        await connection.close()


@pytest.fixture
async def runtime(amqp_url: str, pg_url: str) -> AsyncIterator[Runtime]:
    settings = settings_for(amqp_url, pg_url)
    async with running(settings, [intake_service(), router_service()], FixedClock(NOW)) as rt:
        yield rt


async def case_by_ref(rt: Runtime, ref: str) -> CaseRow | None:
    async with rt.deps.uow() as uow:
        from sqlalchemy import select

        row: CaseRow | None = await uow.session.scalar(
            select(CaseRow).where(CaseRow.external_ref == ref)
        )
        return row


async def settled(rt: Runtime, ref: str, state: str) -> CaseRow:
    async def check() -> CaseRow | None:
        case = await case_by_ref(rt, ref)
        return case if case is not None and case.state == state else None

    row: CaseRow = await eventually(check)
    return row


async def act(rt: Runtime, case_id: str, action: str, params: dict[str, Any]) -> list[str]:
    async with rt.deps.uow() as uow:
        case = await get_case(uow, case_id=case_id, lock=True)
        events = await perform(
            uow, rt.deps.cases, case, action, params, actor="staff:ana", now=rt.deps.clock.now()
        )
    return [e.event_type for e in events]


async def follows(platform: Platform311, case_id: str, expected: list[str]) -> None:
    async def check() -> bool:
        return await platform.events_of(case_id) == expected

    try:
        await eventually(check, timeout=10)
    except AssertionError:
        assert await platform.events_of(case_id) == expected


async def test_each_path_by_rule(runtime: Runtime, platform: Platform311) -> None:
    for kind, text, ref in [
        ("denuncia", CORRUPTION, "311-A"),
        ("queja", GARBAGE, "311-B"),
        ("sugerencia", SUGGESTION, "311-C"),
        (None, UNMATCHED, "311-D"),
        ("queja", OUTSIDE, "311-E"),
    ]:
        await platform.submit(submission(kind, text, ref))

    remitted = await settled(runtime, "311-A", "remitted")
    assert (remitted.department, remitted.matched_rule) == ("rrhh", "rrhh-corrupcion")
    inspected = await settled(runtime, "311-B", "inspection")
    assert (inspected.kind, inspected.matched_rule) == ("queja", "aseo-recoleccion")
    agenda = await settled(runtime, "311-C", "on_agenda")
    assert agenda.matched_rule == "sugerencia-explicita"
    # No rule, or a rule that routes to triage: the case waits in classified for staff.
    unmatched = await settled(runtime, "311-D", "classified")
    assert (unmatched.kind, unmatched.matched_rule, unmatched.department) == (None, None, None)
    outside = await settled(runtime, "311-E", "classified")
    assert (outside.matched_rule, outside.category) == (
        "fuera-de-competencia",
        "Fuera de competencia",
    )

    await follows(platform, remitted.id, ["CaseReceived", "CaseClassified", "CaseRemitted"])
    await follows(platform, inspected.id, ["CaseReceived", "CaseClassified", "InspectionStarted"])
    await follows(platform, agenda.id, ["CaseReceived", "CaseClassified", "CaseAddedToAgenda"])
    await follows(platform, unmatched.id, ["CaseReceived", "CaseClassified"])
    await follows(platform, outside.id, ["CaseReceived", "CaseClassified"])
    keys = {
        body["event_type"]: key for key, body in platform.seen if body.get("case_id") == remitted.id
    }
    assert keys["CaseRemitted"] == "case.remitted.rrhh"
    classified = next(
        body
        for _, body in platform.seen
        if body.get("case_id") == outside.id and body["event_type"] == "CaseClassified"
    )
    assert (classified["rule"], classified["route"], classified["by"]) == (
        "fuera-de-competencia",
        "triage",
        "router",
    )
    # No event on 311's queue carries the contact (the department's copy is on its own key).
    for _, body in platform.seen:
        assert "8-123-4567" not in json.dumps(body)
        assert "maria.perez@example.com" not in json.dumps(body)


async def test_inspection_with_inspector_and_date_to_closed(
    runtime: Runtime, platform: Platform311
) -> None:
    await platform.submit(submission("queja", UNMATCHED, "311-I"))
    case = await settled(runtime, "311-I", "classified")

    with pytest.raises(InvalidActionInput) as refused:
        await act(runtime, case.id, "start_inspection", {"scheduled_for": "2026-06-03T09:00:00"})
    assert (refused.value.field, refused.value.rule) == ("scheduled_for", "timezone_aware")
    with pytest.raises(InvalidActionInput) as refused:
        await act(runtime, case.id, "start_inspection", {"scheduled_for": "mañana"})
    assert (refused.value.field, refused.value.rule) == (
        "scheduled_for",
        "datetime_from_date_parsing",
    )
    unchanged = await case_by_ref(runtime, "311-I")
    assert unchanged is not None and unchanged.state == "classified"

    assert await act(
        runtime,
        case.id,
        "start_inspection",
        {"inspector": "Ing. Rosa Ortega", "scheduled_for": "2026-06-03T09:00:00-05:00"},
    ) == ["InspectionStarted"]
    with pytest.raises(InvalidActionInput) as refused:
        await act(runtime, case.id, "record_findings", {"findings": " "})
    assert (refused.value.field, refused.value.rule) == ("findings", "text_length")
    assert await act(
        runtime, case.id, "record_findings", {"findings": "Se verificó y se corrigió el horario."}
    ) == ["CaseResolved"]
    assert await act(runtime, case.id, "close", {}) == ["CaseClosed"]

    await follows(
        platform,
        case.id,
        [
            "CaseReceived",
            "CaseClassified",
            "InspectionStarted",
            "CaseResolved",
            "CaseClosed",
        ],
    )
    started = next(
        b
        for _, b in platform.seen
        if b.get("case_id") == case.id and b["event_type"] == "InspectionStarted"
    )
    assert started["inspector"] == "Ing. Rosa Ortega"
    assert datetime.fromisoformat(started["scheduled_for"]) == datetime(
        2026, 6, 3, 14, 0, tzinfo=UTC
    )
    resolved = next(
        b
        for _, b in platform.seen
        if b.get("case_id") == case.id and b["event_type"] == "CaseResolved"
    )
    assert resolved["path"] == "inspection"
    async with runtime.deps.uow() as uow:
        rows = await history(uow, case.id)
        final = await get_case(uow, case_id=case.id)
    assert [(r.action, r.from_state, r.to_state) for r in rows] == [
        ("file", None, "received"),
        ("classify", "received", "classified"),
        ("start_inspection", "classified", "inspection"),
        ("record_findings", "inspection", "resolved"),
        ("close", "resolved", "closed"),
    ]
    assert rows[2].details is not None
    assert rows[2].details["inspector"] == "Ing. Rosa Ortega"
    assert rows[2].details["scheduled_for"] == "2026-06-03T09:00:00-05:00"
    assert (final.inspector, final.resolution_path) == ("Ing. Rosa Ortega", "inspection")


async def test_meeting_agenda_and_outcome(runtime: Runtime, platform: Platform311) -> None:
    await platform.submit(submission("sugerencia", SUGGESTION, "311-S"))
    case = await settled(runtime, "311-S", "on_agenda")

    markdown = await agenda_text(runtime.settings, "markdown", runtime.deps.clock)
    assert markdown.startswith("# Agenda de sugerencias")
    assert case.tracking_code in markdown and "Sugerencia" in markdown
    assert "María" not in markdown and "8-123-4567" not in markdown
    listed = json.loads(await agenda_text(runtime.settings, "json", runtime.deps.clock))
    assert [item["tracking_code"] for item in listed] == [case.tracking_code]
    assert listed[0]["days_left"] == 30

    for params, field, rule in [
        ({"meeting_date": "2026-06-01"}, "decision", "missing"),
        ({"meeting_date": "2026-06-01", "decision": "maybe"}, "decision", "literal_error"),
        ({"decision": "accepted"}, "meeting_date", "missing"),
        (
            {"meeting_date": "01/06/2026", "decision": "accepted"},
            "meeting_date",
            "date_from_datetime_parsing",
        ),
        ({"meeting_date": "2026-06-02", "decision": "accepted"}, "meeting_date", "not_in_future"),
        (
            {"meeting_date": "2026-05-29", "decision": "accepted"},
            "meeting_date",
            "not_before_filing",
        ),
    ]:
        with pytest.raises(InvalidActionInput) as refused:
            await act(runtime, case.id, "record_meeting_outcome", params)
        assert (refused.value.field, refused.value.rule) == (field, rule), params

    assert await act(
        runtime,
        case.id,
        "record_meeting_outcome",
        {
            "meeting_date": "2026-06-01",
            "decision": "partially_accepted",
            "notes": "Se pondrán bancas.",
        },
    ) == ["CaseResolved"]
    await follows(
        platform, case.id, ["CaseReceived", "CaseClassified", "CaseAddedToAgenda", "CaseResolved"]
    )
    resolved = next(
        b
        for _, b in platform.seen
        if b.get("case_id") == case.id and b["event_type"] == "CaseResolved"
    )
    assert (resolved["path"], resolved["decision"]) == ("meeting", "partially_accepted")
    assert resolved["resolution"] == (
        "Reunión del 01/06/2026: sugerencia aceptada en parte. Se pondrán bancas."
    )
    async with runtime.deps.uow() as uow:
        rows = await history(uow, case.id)
    assert rows[-1].details is not None and rows[-1].details["meeting_date"] == "2026-06-01"
    assert json.loads(await agenda_text(runtime.settings, "json", runtime.deps.clock)) == []


async def test_staff_route_from_triage_and_the_kind_guards(
    runtime: Runtime, platform: Platform311, amqp_url: str
) -> None:
    await platform.submit(submission(None, UNMATCHED, "311-T"))
    case = await settled(runtime, "311-T", "classified")

    # A queja cannot be remitted nor put on the agenda: 409 with the allowed actions named.
    assert await act(runtime, case.id, "classify", {"kind": "queja"}) == ["CaseClassified"]
    with pytest.raises(IllegalTransition) as refused:
        await act(runtime, case.id, "remit", {"department": "obras"})
    # The domain names what its table allows in the state for anyone; each door narrows it
    # to what its caller is offered on the case.
    assert refused.value.allowed == [
        "classify",
        "start_inspection",
        "decline",
        "forward",
        "join",
        "separate",
        "add_information",
    ]
    with pytest.raises(IllegalTransition):
        await act(runtime, case.id, "add_to_agenda", {})
    with pytest.raises(InvalidActionInput) as bad_kind:
        await act(runtime, case.id, "classify", {"kind": "reclamo"})
    assert (bad_kind.value.field, bad_kind.value.rule) == ("kind", "literal_error")

    assert await act(runtime, case.id, "classify", {"kind": "denuncia", "category": "Obras"}) == [
        "CaseClassified"
    ]
    with pytest.raises(InvalidActionInput) as unknown:
        await act(runtime, case.id, "remit", {"department": "bomberos"})
    assert (unknown.value.field, unknown.value.rule) == ("department", "unknown_department")
    assert await act(runtime, case.id, "remit", {"department": "obras"}) == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
    ]

    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue("defensa311.department.obras", ensure=True)
        message = await eventually(lambda: queue.get(no_ack=True, fail=False))
        assert message.routing_key == "department.obras.remitted"
        assert json.loads(message.body)["case_id"] == case.id
    finally:
        await connection.close()

    # A sugerencia never goes to inspection; a classified case may be declined with a reason.
    await platform.submit(submission("sugerencia", SUGGESTION + " Gracias.", "311-U"))
    suggestion = await settled(runtime, "311-U", "on_agenda")
    with pytest.raises(IllegalTransition) as refused:
        await act(runtime, suggestion.id, "start_inspection", {})
    assert refused.value.allowed == ["record_meeting_outcome", "separate", "add_information"]
    await platform.submit(submission(None, UNMATCHED + " Es un duplicado.", "311-V"))
    duplicate = await settled(runtime, "311-V", "classified")
    with pytest.raises(InvalidActionInput) as no_reason:
        await act(runtime, duplicate.id, "decline", {"reason_code": "duplicada"})
    assert (no_reason.value.field, no_reason.value.rule) == ("reason", "missing")
    assert await act(
        runtime,
        duplicate.id,
        "decline",
        {"reason_code": "duplicada", "reason": "Duplicado de otro caso."},
    ) == ["CaseClosed"]
    await follows(platform, duplicate.id, ["CaseReceived", "CaseClassified", "CaseClosed"])
