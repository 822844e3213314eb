"""The departments' side on the real broker: a department written with plain aio-pika (not the
project's code) consumes ``defensa311.department.<code>`` and answers on
``case.responded.<code>`` / ``case.returned.<code>``, as docs/departments.md tells it to."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from shared.cases import get_case, history, perform
from shared.messaging import ANSWERS_INBOX
from shared.runtime import Runtime
from tests.integration.test_router_paths import (
    CORRUPTION,
    NOW,
    Platform311,
    act,
    platform,
    runtime,
    settled,
    submission,
)
from tests.support import eventually

pytestmark = pytest.mark.connected
__all__ = ["platform", "runtime"]  # fixtures shared with the paths test

# 30 business days after Monday 1 June 2026 (the remittance day is not counted; no Panama
# holiday falls in between): 2-5 June (4), 8-12 (9), 15-19 (14), 22-26 (19), 29 June-3 July
# (24), 6-10 July (29), Monday 13 July (30). Remitted the day it was filed, the department's own
# term would end with the legal one, so it ends 2 working days earlier (department_margin_days):
# Thursday 9 July, 23:59:59 America/Panama.
DEPARTMENT_DUE = datetime(2026, 7, 10, 4, 59, 59, tzinfo=UTC)


class Department:
    """A department's own client: what docs/departments.md shows, nothing of ours."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractRobustConnection,
        code: str,
        user_id: str | None = "guest",
    ) -> None:
        # Messages on a department's key carry the publishing account (RabbitMQ checks it).
        # These tests connect with the services' own account, which the router also trusts;
        # tests/integration/test_forgeries.py publishes as the department's own account.
        self.connection = connection
        self.code = code
        self.user_id = user_id

    async def next_message(self, queue: str | None = None) -> aio_pika.abc.AbstractIncomingMessage:
        channel = await self.connection.channel()
        name = queue or f"defensa311.department.{self.code}"
        incoming = await channel.get_queue(name, ensure=True)

        async def one() -> aio_pika.abc.AbstractIncomingMessage | None:
            message = await incoming.get(no_ack=True, fail=False)
            return message

        message: aio_pika.abc.AbstractIncomingMessage = await eventually(one)
        await channel.close()
        return message

    async def pending(self, queue: str | None = None) -> int:
        channel = await self.connection.channel()
        name = queue or f"defensa311.department.{self.code}"
        declared = await channel.declare_queue(name, passive=True)
        await channel.close()
        count: int = declared.declaration_result.message_count or 0
        return count

    async def send(self, routing_key: str, body: dict[str, Any] | bytes) -> None:
        channel = await self.connection.channel()
        exchange = await channel.get_exchange("defensa311")
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message_id = body.get("event_id") if isinstance(body, dict) else None
        await exchange.publish(
            aio_pika.Message(
                raw,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                user_id=self.user_id,
            ),
            routing_key=routing_key,
        )
        await channel.close()

    async def respond(self, case: dict[str, Any], text: str, event_id: str | None = None) -> str:
        event_id = event_id or str(uuid.uuid4())
        await self.send(
            f"case.responded.{self.code}",
            {
                "event_id": event_id,
                "event_type": "DepartmentResponded",
                "occurred_at": datetime.now(UTC).isoformat(),
                "schema_version": 1,
                "case_id": case["case_id"],
                "tracking_code": case["tracking_code"],
                "department": self.code,
                "response": text,
            },
        )
        return event_id

    async def give_back(self, case: dict[str, Any], reason: str) -> str:
        event_id = str(uuid.uuid4())
        await self.send(
            f"case.returned.{self.code}",
            {
                "event_id": event_id,
                "event_type": "CaseReturned",
                "occurred_at": datetime.now(UTC).isoformat(),
                "schema_version": 1,
                "case_id": case["case_id"],
                "tracking_code": case["tracking_code"],
                "department": self.code,
                "reason": reason,
            },
        )
        return event_id


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(amqp_url)
    try:
        yield conn
    finally:
        await conn.close()


async def remitted_case(
    runtime: Runtime, platform: Platform311, rrhh: Department, ref: str
) -> dict[str, Any]:
    await platform.submit(submission("denuncia", CORRUPTION, ref))
    await settled(runtime, ref, "remitted")
    message = await rrhh.next_message()
    assert message.routing_key == "department.rrhh.remitted"
    body: dict[str, Any] = json.loads(message.body)
    return body


async def handled_everything_before(rrhh: Department) -> dict[str, Any]:
    """A message for an unknown case goes to the router's DLQ. The router takes its queue in
    order, so once this marker is dead-lettered every answer sent before it was handled."""
    marker = str(uuid.uuid4())
    await rrhh.respond(
        {"case_id": marker, "tracking_code": "DDU-2026-0000000000"}, "marcador", event_id=marker
    )
    while True:
        dead = await rrhh.next_message("defensa311.router.dlq")
        if dead.message_id == marker:
            return dict(dead.headers)


async def actions(runtime: Runtime, case_id: str) -> list[tuple[str, str | None, str | None]]:
    async with runtime.deps.uow() as uow:
        return [(r.action, r.from_state, r.to_state) for r in await history(uow, case_id)]


async def test_department_reads_its_queue_and_answers_once(
    runtime: Runtime, platform: Platform311, connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    rrhh = Department(connection, "rrhh")
    remitted = await remitted_case(runtime, platform, rrhh, "311-R1")

    # Everything the department needs to act without calling back.
    assert remitted["event_type"] == "CaseRemittedToDepartment"
    assert remitted["department"] == "rrhh"
    assert remitted["kind"] == "denuncia"
    assert remitted["category"] == "Corrupción de funcionarios"
    assert remitted["description"] == CORRUPTION
    assert remitted["location"]["corregimiento"] == "Betania"
    assert remitted["location"]["address"] == "Calle 50, casa 12"
    assert remitted["citizen"] == {
        "full_name": "María Pérez",
        "id_type": "cedula",
        "id_number": "8-123-4567",
        "ruc_dv": None,
        "representative": None,
        "phone": "+50761234567",
        "email": None,
        "notify_email": "maria.perez@example.com",
        "notify_phone": None,
        "notify_address": None,
    }
    assert datetime.fromisoformat(remitted["remitted_at"]) == NOW
    assert datetime.fromisoformat(remitted["due_at"]) == DEPARTMENT_DUE
    case = await settled(runtime, "311-R1", "remitted")
    assert remitted["case_id"] == case.id and remitted["tracking_code"] == case.tracking_code
    assert case.department_due_at == DEPARTMENT_DUE

    # The same answer delivered twice (same event_id) has one effect.
    answer = await rrhh.respond(remitted, "Se abrió un proceso disciplinario al funcionario.")
    await settled(runtime, "311-R1", "resolved")
    await rrhh.respond(remitted, "Se abrió un proceso disciplinario al funcionario.", answer)
    headers = await handled_everything_before(rrhh)
    assert headers["x-defensa311-reason"] == "caso desconocido"

    assert await actions(runtime, case.id) == [
        ("file", None, "received"),
        ("classify", "received", "classified"),
        ("remit", "classified", "remitted"),
        ("respond", "remitted", "resolved"),
    ]
    resolved = await settled(runtime, "311-R1", "resolved")
    assert resolved.resolution == "Se abrió un proceso disciplinario al funcionario."
    assert (resolved.resolution_path, resolved.department) == ("department", "rrhh")
    assert await rrhh.pending() == 0  # no refusal came back
    events = await platform.events_of(case.id)
    # 311 hears the department's answer as often as the department sent it, and one effect.
    assert [e for e in events if e != "DepartmentResponded"] == [
        "CaseReceived",
        "CaseClassified",
        "CaseRemitted",
        "CaseResolved",
    ]
    assert {
        body["event_id"]
        for _, body in platform.seen
        if body.get("case_id") == case.id and body["event_type"] == "DepartmentResponded"
    } == {answer}

    # A late answer (the case is already resolved) changes nothing and is refused to rrhh.
    late = await rrhh.respond(remitted, "Otra respuesta que llega tarde.")
    refusal = json.loads((await rrhh.next_message()).body)
    assert refusal["event_type"] == "SubmissionRejected"
    assert refusal["refused_event_id"] == late
    assert refusal["reasons"][0]["rule"] == "illegal_transition"
    assert (await settled(runtime, "311-R1", "resolved")).resolution == resolved.resolution


async def test_an_answer_from_a_foreign_department_changes_nothing(
    runtime: Runtime, platform: Platform311, connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    rrhh, aseo = Department(connection, "rrhh"), Department(connection, "aseo")
    remitted = await remitted_case(runtime, platform, rrhh, "311-F1")

    foreign = await aseo.respond(remitted, "Nosotros lo resolvemos.")
    refusal_message = await aseo.next_message()
    assert refusal_message.routing_key == "case.rejected.aseo"
    refusal = json.loads(refusal_message.body)
    assert refusal["event_type"] == "SubmissionRejected"
    assert refusal["refused_event_id"] == foreign
    assert (refusal["department"], refusal["case_id"]) == ("aseo", remitted["case_id"])
    assert refusal["tracking_code"] == remitted["tracking_code"]
    assert refusal["reasons"] == [
        {
            "field": "department",
            "rule": "not_remitted_to_department",
            "message": "el caso no está remitido al departamento «aseo»",
        }
    ]
    await aseo.give_back(remitted, "Tampoco es nuestro.")
    returned_refusal = json.loads((await aseo.next_message()).body)
    assert returned_refusal["reasons"][0]["rule"] == "not_remitted_to_department"

    case = await settled(runtime, "311-F1", "remitted")
    assert (case.department, case.resolution, case.return_count) == ("rrhh", None, 0)
    assert await rrhh.pending() == 0  # rrhh's queue gets no refusal of aseo's
    async with runtime.deps.uow() as uow:
        rows = await history(uow, case.id)
    refused = [r for r in rows if r.action == "answer_refused"]
    assert len(refused) == 2
    assert all(r.actor == "department:aseo" for r in refused)
    assert all(r.from_state == r.to_state == "remitted" for r in refused)
    assert refused[0].details is not None
    assert refused[0].details["event_id"] == foreign
    assert refused[0].details["rule"] == "not_remitted_to_department"

    # rrhh can still answer.
    await rrhh.respond(remitted, "Respuesta del departamento correcto.")
    await settled(runtime, "311-F1", "resolved")


async def test_returned_cases_go_back_to_triage_and_twice_is_flagged(
    runtime: Runtime, platform: Platform311, connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    rrhh, obras = Department(connection, "rrhh"), Department(connection, "obras")
    remitted = await remitted_case(runtime, platform, rrhh, "311-B1")

    await rrhh.give_back(remitted, "No es de nuestra competencia: es un permiso de obra.")
    case = await settled(runtime, "311-B1", "classified")
    assert (case.department, case.return_count, case.flagged) == (None, 1, False)
    assert case.department_due_at is None

    await act(runtime, case.id, "remit", {"department": "obras"})
    again = json.loads((await obras.next_message()).body)
    assert again["case_id"] == case.id
    await obras.give_back(again, "Tampoco nos corresponde; es conducta de un funcionario.")

    async def flagged() -> bool:
        row = await settled(runtime, "311-B1", "classified")
        return row.flagged

    await eventually(flagged)
    case = await settled(runtime, "311-B1", "classified")
    assert (case.return_count, case.flagged) == (2, True)
    async with runtime.deps.uow() as uow:
        rows = await history(uow, case.id)
    returns = [r for r in rows if r.action == "return"]
    assert [(r.actor, r.details["flagged"], r.details["return_count"]) for r in returns] == [  # type: ignore[index]
        ("department:rrhh", False, 1),
        ("department:obras", True, 2),
    ]

    # 311 sees both departments' requests and the system's verdict on each, the second flagged.
    async def announced() -> list[dict[str, Any]]:
        await platform.drain()
        return [
            body
            for _, body in platform.seen
            if body.get("case_id") == case.id
            and body["event_type"] in ("CaseReturned", "CaseReturnAccepted")
        ]

    async def four() -> list[dict[str, Any]] | None:
        seen = await announced()
        return seen if len(seen) == 4 else None

    returned = await eventually(four)
    facts = sorted((r["event_type"], r["department"], r.get("flagged", False)) for r in returned)
    assert facts == [
        ("CaseReturnAccepted", "obras", True),
        ("CaseReturnAccepted", "rrhh", False),
        ("CaseReturned", "obras", False),
        ("CaseReturned", "rrhh", False),
    ]
    await handled_everything_before(rrhh)
    assert (await settled(runtime, "311-B1", "classified")).return_count == 2
    assert await obras.pending() == 0


async def test_an_answer_given_over_http_is_not_applied_twice_by_the_router(
    runtime: Runtime, platform: Platform311, connection: aio_pika.abc.AbstractRobustConnection
) -> None:
    rrhh = Department(connection, "rrhh")
    remitted = await remitted_case(runtime, platform, rrhh, "311-H1")

    # The HTTP door (a department token) calls perform, which emits DepartmentResponded.
    async with runtime.deps.uow() as uow:
        case = await get_case(uow, case_id=remitted["case_id"], lock=True)
        events = await perform(
            uow,
            runtime.deps.cases,
            case,
            "respond",
            {"response": "Respuesta enviada por el portal."},
            actor="department:rrhh",
            now=runtime.deps.clock.now(),
            department="rrhh",
            answers_heard_by=ANSWERS_INBOX,
        )
    assert [e.event_type for e in events] == ["DepartmentResponded", "CaseResolved"]

    await handled_everything_before(rrhh)  # the router has heard case.responded.rrhh by now
    assert await actions(runtime, remitted["case_id"]) == [
        ("file", None, "received"),
        ("classify", "received", "classified"),
        ("remit", "classified", "remitted"),
        ("respond", "remitted", "resolved"),
    ]
    assert await rrhh.pending() == 0  # and sent no refusal of its own fact


@pytest.mark.parametrize(
    ("routing_key", "body", "reason"),
    [
        ("case.responded.rrhh", b"{no es json", "el cuerpo no es JSON válido"),
        (
            "case.responded.rrhh",
            b'{"event_type": "Hola"}',
            "event_type 'Hola' no admitido en 'case.responded.rrhh' (admite: DepartmentResponded)",
        ),
        (
            "case.responded.rrhh",
            {"event_type": "DepartmentResponded", "department": "rrhh"},
            "no cumple el esquema del evento DepartmentResponded",
        ),
        (
            "case.responded.aseo",
            None,  # a valid rrhh answer published under aseo's key
            "el departamento del mensaje no coincide con su clave de enrutamiento",
        ),
        ("case.responded.rrhh", "wrong-tracking", "tracking_code no corresponde al case_id"),
        (
            "case.responded.rrhh",
            "no-user-id",
            "falta user_id: 'case.responded.rrhh' exige la cuenta 'dept-rrhh'",
        ),
    ],
)
async def test_unusable_answers_are_dead_lettered_with_the_reason(
    runtime: Runtime,
    platform: Platform311,
    connection: aio_pika.abc.AbstractRobustConnection,
    routing_key: str,
    body: Any,
    reason: str,
) -> None:
    rrhh = Department(connection, "rrhh")
    remitted = await remitted_case(runtime, platform, rrhh, "311-P1")
    answer = {
        "event_id": str(uuid.uuid4()),
        "event_type": "DepartmentResponded",
        "occurred_at": NOW.isoformat(),
        "schema_version": 1,
        "case_id": remitted["case_id"],
        "tracking_code": remitted["tracking_code"],
        "department": "rrhh",
        "response": "Respuesta.",
    }
    if body is None:
        body = answer
    elif body == "wrong-tracking":
        body = {**answer, "tracking_code": "DDU-2026-0000000000"}
    if body == "no-user-id":
        await Department(connection, "rrhh", user_id=None).send(routing_key, answer)
    else:
        await rrhh.send(routing_key, body)

    dead = await rrhh.next_message("defensa311.router.dlq")
    headers = dict(dead.headers)
    assert str(headers["x-defensa311-reason"]).startswith(reason)
    assert headers["x-defensa311-queue"] == "defensa311.router"
    assert headers["x-defensa311-routing-key"] == routing_key
    assert (await settled(runtime, "311-P1", "remitted")).resolution is None

    # The consumer is still alive: the proper answer goes through.
    await rrhh.respond(remitted, "Respuesta válida después del mensaje dañado.")
    await settled(runtime, "311-P1", "resolved")
