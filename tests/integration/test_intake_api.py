"""Intake's HTTP API against the real PostgreSQL and RabbitMQ (issue 3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import func, select

from services.intake.app import service as intake_service
from services.intake.http import create_app
from services.router.app import service as router_service
from shared.clock import FixedClock
from shared.db.models import CaseHistoryRow, CaseRow, InboxRow, OutboxRow
from shared.messaging import PLATFORM311, ROUTER
from shared.runtime import Runtime
from tests.support import drain, eventually, running, settings_for

pytestmark = pytest.mark.connected

TOKENS = (
    "staff=s3cr3t-staff,supervisor=s3cr3t-sup,platform311=s3cr3t-311,"
    "department:vias=s3cr3t-vias,department:aseo=s3cr3t-aseo"
)
STAFF = {"Authorization": "Bearer s3cr3t-staff"}
SUPERVISOR = {"Authorization": "Bearer s3cr3t-sup"}
P311 = {"Authorization": "Bearer s3cr3t-311"}
VIAS = {"Authorization": "Bearer s3cr3t-vias"}
ASEO = {"Authorization": "Bearer s3cr3t-aseo"}
START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)  # a Monday

NAME = "Maribel Quintero Arosemena"
CEDULA = "8-123-4567"
PHONE = "6123-4567"
EMAIL = "maribel.quintero@example.com"
ADDRESS = "Calle 50, Casa 12, Bella Vista"
PERSONAL = [NAME, "Quintero", CEDULA, "1234567", "61234567", EMAIL, "maribel", ADDRESS, "Casa 12"]


def denuncia(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "web",
        "kind": "denuncia",
        "category": "Calles y huecos",
        "description": "Hay un hueco enorme frente a la escuela de la Calle 50 desde hace meses.",
        "citizen": {"full_name": NAME, "id_number": CEDULA, "phone": PHONE, "email": EMAIL},
        "notify": {"email": EMAIL, "phone": PHONE, "address": ADDRESS},
        "location": {"province": "Panamá", "district": "Panamá", "lat": 8.98, "lon": -79.52},
    }
    body.update(overrides)
    return body


@dataclass
class Api:
    client: httpx.AsyncClient
    runtime: Runtime
    clock: FixedClock
    amqp_url: str
    delivered: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)

    async def broker_messages(self, n: int) -> list[aio_pika.abc.AbstractIncomingMessage] | None:
        """What reached the 311 platform's queue (bound to case.#) so far, once ``n`` did."""
        self.delivered.extend(await drain(self.amqp_url, PLATFORM311.name))
        return list(self.delivered) if len(self.delivered) >= n else None

    async def file(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
        response = await self.client.post("/api/v1/cases", json=body, headers=headers or {})
        assert response.status_code == 201, response.text
        code: str = response.json()["tracking_code"]
        return code

    async def act(
        self,
        code: str,
        action: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        status: int = 200,
    ) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/cases/{code}/actions/{action}",
            json=body if body is not None else {},
            headers=STAFF if headers is None else headers,
        )
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        return result

    async def outbox(self) -> list[OutboxRow]:
        async with self.runtime.deps.uow() as uow:
            return list(await uow.session.scalars(select(OutboxRow).order_by(OutboxRow.id)))

    async def count_cases(self) -> int:
        async with self.runtime.deps.uow() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(CaseRow)) or 0)

    async def event_types(self, code: str) -> list[str]:
        return [
            row.event_type
            for row in await self.outbox()
            if json.loads(row.body).get("tracking_code") == code
        ]


@pytest.fixture
async def api(amqp_url: str, pg_url: str) -> AsyncIterator[Api]:
    clock = FixedClock(START)
    settings = settings_for(amqp_url, pg_url, api_tokens=TOKENS)
    async with running(settings, [intake_service()], clock=clock) as runtime:
        app = create_app(runtime.deps)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Api(client, runtime, clock, amqp_url)


# ------------------------------------------------------------------------ filing and tracking


async def test_file_on_the_web_and_track_without_personal_data(api: Api) -> None:
    response = await api.client.post("/api/v1/cases", json=denuncia())
    assert response.status_code == 201, response.text
    filed = response.json()
    assert set(filed) == {"case_id", "tracking_code", "state", "received_at", "due_at"}
    assert filed["state"] == "received"
    assert datetime.fromisoformat(filed["received_at"]) == START
    # 30 business days from Monday 3 March 2025 (Carnival 3–4 March and Holy Friday 18 April
    # are holidays in Panama): the term ends mid-April.
    due = datetime.fromisoformat(filed["due_at"])
    assert START + timedelta(days=40) <= due <= START + timedelta(days=50)

    public = await api.client.get(f"/api/v1/cases/{filed['tracking_code']}")
    assert public.status_code == 200
    text = public.text
    for secret in PERSONAL:
        assert secret.lower() not in text.lower(), secret
    view = public.json()
    assert view["state"] == "received"
    assert view["kind"] == "denuncia"
    assert [h["to_state"] for h in view["history"]] == ["received"]
    assert "citizen" not in view and "notify" not in view and "description" not in view

    # The lookup forgives what people type: lowercase, spaces, O for 0.
    sloppy = filed["tracking_code"].lower().replace("-", " ").replace("0", "o")
    assert (await api.client.get(f"/api/v1/cases/{sloppy}")).status_code == 200

    staff = (await api.client.get(f"/api/v1/cases/{filed['tracking_code']}", headers=STAFF)).json()
    assert staff["citizen"]["full_name"] == NAME
    assert staff["citizen"]["id_number"] == CEDULA
    assert staff["notify"]["email"] == EMAIL
    assert staff["notify"]["address"] == ADDRESS
    assert staff["case_id"] == filed["case_id"]
    assert set(staff["allowed_actions"]) == {"classify", "decline", "forward", "join"}

    # The 311 platform sees the public view and the ids, not the citizen.
    p311 = await api.client.get(f"/api/v1/cases/{filed['tracking_code']}", headers=P311)
    assert p311.json()["case_id"] == filed["case_id"]
    for secret in PERSONAL:
        assert secret.lower() not in p311.text.lower(), secret

    # Stored with its audit row and its CaseReceived in the outbox, published once.
    outbox = await api.outbox()
    assert [row.event_type for row in outbox] == ["CaseReceived"]
    for secret in PERSONAL:
        assert secret.lower() not in outbox[0].body.lower()
    received = await eventually(lambda: api.broker_messages(1))
    assert [m.message_id for m in received] == [outbox[0].event_id]


async def test_unknown_or_mistyped_codes_are_404(api: Api) -> None:
    code = await api.file(denuncia())
    wrong_check = code[:-1] + ("A" if code[-1] != "A" else "B")
    for ref in (wrong_check, "2025-ZZZ-ZZZ-ZZZ", "nada", "2025-000-000-000"):
        response = await api.client.get(f"/api/v1/cases/{ref}")
        assert response.status_code == 404, ref
        assert response.json() == {"detail": "caso no encontrado"}


async def test_public_lookups_of_unknown_codes_are_rate_limited(api: Api) -> None:
    code = await api.file(denuncia())
    for _ in range(30):
        assert (await api.client.get("/api/v1/cases/2025-000-000-000")).status_code == 404
    blocked = await api.client.get(f"/api/v1/cases/{code}")
    assert blocked.status_code == 429
    assert "Retry-After" in blocked.headers
    # Staff are not limited; and the window slides with the (injected) clock.
    assert (await api.client.get(f"/api/v1/cases/{code}", headers=STAFF)).status_code == 200
    api.clock.advance(timedelta(minutes=2))
    assert (await api.client.get(f"/api/v1/cases/{code}")).status_code == 200


INVALID_FILINGS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "denuncia sin nombre",
        denuncia(citizen={"id_number": CEDULA}),
        "citizen.full_name",
        "required_for_kind",
    ),
    (
        "denuncia sin cédula",
        denuncia(citizen={"full_name": NAME}),
        "citizen.id_number",
        "required_for_kind",
    ),
    (
        "cédula inválida",
        denuncia(citizen={"full_name": NAME, "id_number": "14-123-4567"}),
        "citizen.id_number",
        "cedula",
    ),
    (
        "queja sin notificación",
        denuncia(kind="queja", notify=None),
        "notify",
        "notification_address_required",
    ),
    ("notificación vacía", denuncia(notify={}), "notify", "notification_address_required"),
    ("denuncia anónima", denuncia(anonymous=True), "anonymous", "anonymous_only_sugerencia"),
    ("descripción corta", denuncia(description="   hueco    "), "description", "text_length"),
    ("descripción larga", denuncia(description="x" * 4001), "description", "text_length"),
    ("correo inválido", denuncia(notify={"email": "maribel@@example"}), "notify.email", "email"),
    ("teléfono inválido", denuncia(notify={"phone": "12"}), "notify.phone", "phone"),
    ("fuera de Panamá", denuncia(location={"lat": 40.4, "lon": -3.7}), "location", "in_panama"),
    ("tipo desconocido", denuncia(kind="reclamo"), "kind", "literal_error"),
    ("canal desconocido", denuncia(channel="fax"), "channel", "literal_error"),
    ("sin canal", {k: v for k, v in denuncia().items() if k != "channel"}, "channel", "missing"),
    ("campo extra", denuncia(prioridad="alta"), "prioridad", "extra_forbidden"),
    ("external_ref en web", denuncia(external_ref="311-1"), "external_ref", "only_channel_311"),
]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [pytest.param(body, field, rule, id=name) for name, body, field, rule in INVALID_FILINGS],
)
async def test_invalid_filings_name_field_and_rule_and_store_nothing(
    api: Api, body: dict[str, Any], field: str, rule: str
) -> None:
    response = await api.client.post("/api/v1/cases", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in detail
    ]
    assert all(
        e["message"] and not e["message"].startswith(("Field", "Input", "Value")) for e in detail
    )
    assert await api.count_cases() == 0
    assert await api.outbox() == []


async def test_one_answer_names_format_and_law_failures_together(api: Api) -> None:
    body = {
        "channel": "web",
        "kind": "denuncia",
        "description": "corto",
        "citizen": {"id_number": "123"},
    }
    response = await api.client.post("/api/v1/cases", json=body)
    assert response.status_code == 422, response.text
    rules = {e["field"]: e["rule"] for e in response.json()["detail"]}
    assert rules == {
        "description": "text_length",
        "citizen.id_number": "cedula",
        "citizen.full_name": "required_for_kind",
        "notify": "notification_address_required",
    }
    assert await api.count_cases() == 0


async def test_the_front_page_leads_to_the_tracking_form(api: Api) -> None:
    response = await api.client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/seguimiento"


async def test_bodies_that_are_not_json_objects_are_refused_not_500(api: Api) -> None:
    attempts = [
        (
            {"content": b"{no es json", "headers": {"Content-Type": "application/json"}},
            "json_invalid",
        ),
        ({"content": b"\xff\xfe\x00", "headers": {"Content-Type": "application/json"}}, None),
        ({"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, None),
        ({"content": b"kind=denuncia", "headers": {"Content-Type": "text/plain"}}, None),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, "missing"),
        ({"content": b"null", "headers": {"Content-Type": "application/json"}}, None),
    ]
    for kwargs, rule in attempts:
        response = await api.client.post("/api/v1/cases", **kwargs)
        assert response.status_code in (400, 422), (kwargs, response.text)
        detail = response.json()["detail"]
        if rule:
            assert detail[0]["rule"] == rule
        assert "Field required" not in response.text and "JSON decode" not in response.text
    assert await api.count_cases() == 0


async def test_anonymous_sugerencia_needs_no_name_or_notification(api: Api) -> None:
    body = {
        "channel": "web",
        "kind": "sugerencia",
        "description": "Sería bueno poner más bancas en el parque de Bella Vista.",
        "anonymous": True,
    }
    code = await api.file(body)
    staff = (await api.client.get(f"/api/v1/cases/{code}", headers=STAFF)).json()
    assert staff["anonymous"] is True and staff["citizen"] is None


async def test_channels_need_their_token(api: Api) -> None:
    presencial = denuncia(channel="presencial")
    assert (await api.client.post("/api/v1/cases", json=presencial)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (
        await api.client.post("/api/v1/cases", json=presencial, headers=wrong)
    ).status_code == 401
    bad_scheme = {"Authorization": "Basic czNjcjN0"}
    assert (
        await api.client.post("/api/v1/cases", json=presencial, headers=bad_scheme)
    ).status_code == 401
    assert (
        await api.client.post("/api/v1/cases", json=presencial, headers=VIAS)
    ).status_code == 403
    assert (
        await api.client.post("/api/v1/cases", json=presencial, headers=P311)
    ).status_code == 403
    # Public web filing with a wrong token is still a wrong token.
    assert (
        await api.client.post("/api/v1/cases", json=denuncia(), headers=wrong)
    ).status_code == 401
    assert await api.count_cases() == 0
    code = await api.file(presencial, STAFF)
    await api.file(denuncia(channel="presencial"), SUPERVISOR)
    async with api.runtime.deps.uow() as uow:
        rows = list(await uow.session.scalars(select(CaseHistoryRow).order_by(CaseHistoryRow.id)))
    assert [r.actor for r in rows] == ["staff", "supervisor"]
    assert (await api.client.get(f"/api/v1/cases/{code}")).json()["channel"] == "presencial"


async def test_the_311_platform_files_over_http_once_per_ticket(api: Api) -> None:
    ticket = denuncia(channel="311", external_ref="311-PA-000123")
    assert (await api.client.post("/api/v1/cases", json=ticket)).status_code == 401
    assert (await api.client.post("/api/v1/cases", json=ticket, headers=STAFF)).status_code == 403
    missing = await api.client.post("/api/v1/cases", json=denuncia(channel="311"), headers=P311)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["field"] == "external_ref"
    first = await api.client.post("/api/v1/cases", json=ticket, headers=P311)
    assert first.status_code == 201
    again = await api.client.post("/api/v1/cases", json=ticket, headers=P311)
    assert again.status_code == 200
    assert again.json()["tracking_code"] == first.json()["tracking_code"]
    assert await api.count_cases() == 1
    assert [r.event_type for r in await api.outbox()] == ["CaseReceived"]


# ------------------------------------------------------------------------ each lifecycle path


async def test_inspection_path_through_the_api(api: Api) -> None:
    code = await api.file(denuncia(kind="queja", category=None))
    view = await api.act(code, "classify", {"kind": "queja", "category": "Atención al usuario"})
    assert view["state"] == "classified" and view["category"] == "Atención al usuario"
    assert set(view["allowed_actions"]) == {
        "classify",
        "start_inspection",
        "decline",
        "forward",
        "join",
    }
    view = await api.act(
        code,
        "start_inspection",
        {"inspector": "Inspector Pérez", "scheduled_for": "2025-03-05T09:00:00-05:00"},
    )
    assert view["state"] == "inspection" and view["inspector"] == "Inspector Pérez"
    view = await api.act(
        code, "record_findings", {"findings": "Se verificó la queja y se corrigió."}
    )
    assert view["state"] == "resolved" and view["resolution_path"] == "inspection"
    view = await api.act(code, "close", {}, headers=SUPERVISOR)
    assert view["state"] == "closed"
    assert [h["to_state"] for h in view["history"]] == [
        "received", "classified", "inspection", "resolved", "closed",
    ]  # fmt: skip
    assert [h["actor"] for h in view["history"]][1:] == ["staff", "staff", "staff", "supervisor"]
    assert await api.event_types(code) == [
        "CaseReceived", "CaseClassified", "InspectionStarted", "CaseResolved", "CaseClosed",
    ]  # fmt: skip
    public = (await api.client.get(f"/api/v1/cases/{code}")).json()
    assert [h["to_state"] for h in public["history"]][-1] == "closed"
    # Every outgoing event reaches the broker exactly once.
    event_ids = [row.event_id for row in await api.outbox()]
    messages = await eventually(lambda: api.broker_messages(len(event_ids)))
    assert sorted(m.message_id for m in messages) == sorted(event_ids)


async def test_remit_then_the_department_responds_over_http(api: Api) -> None:
    code = await api.file(denuncia())
    await api.act(code, "classify", {"kind": "denuncia", "category": "Calles y huecos"})
    # Before remittance no department sees the case.
    assert (await api.client.get(f"/api/v1/cases/{code}", headers=VIAS)).status_code == 404
    view = await api.act(code, "remit", {"department": "vias"})
    assert view["state"] == "remitted" and view["department"] == "vias"
    assert view["department_due_at"] is not None
    assert [c["clock"] for c in view["clocks"]] == ["legal", "department"]

    # Another department: as if the case did not exist.
    assert (await api.client.get(f"/api/v1/cases/{code}", headers=ASEO)).status_code == 404
    other = await api.act(code, "respond", {"response": "No es nuestro."}, ASEO, status=404)
    assert other == {"detail": "caso no encontrado"}
    # Staff may not answer for the department, and the department may not do staff's work.
    await api.act(code, "respond", {"response": "Atendido."}, STAFF, status=403)
    await api.act(code, "close", {}, VIAS, status=403)

    seen = (await api.client.get(f"/api/v1/cases/{code}", headers=VIAS)).json()
    assert seen["citizen"]["full_name"] == NAME  # the department needs to reach the citizen
    assert seen["allowed_actions"] == ["respond", "return"]
    view = await api.act(code, "respond", {"response": "Se rellenó el hueco el 5 de marzo."}, VIAS)
    assert view["state"] == "resolved" and view["resolution_path"] == "department"
    assert view["history"][-1]["actor"] == "department:vias"
    assert view["history"][-1]["actor_name"] == "Dirección de Mantenimiento Vial"
    assert view["history"][-1]["text"] == (
        "Respuesta de la dependencia registrada (respuesta: Se rellenó el hueco el 5 de marzo.; "
        "dependencia: Dirección de Mantenimiento Vial)"
    )
    types = await api.event_types(code)
    assert types[-4:] == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
        "DepartmentResponded",
        "CaseResolved",
    ]

    # The router, which takes departments' answers from case.responded.*, must not apply it again.
    outbox = {row.event_type: row for row in await api.outbox()}
    responded = outbox["DepartmentResponded"]
    assert responded.routing_key == "case.responded.vias"
    async with api.runtime.deps.uow() as uow:
        marks = await uow.session.scalars(select(InboxRow).where(InboxRow.consumer == "router"))
        assert [m.event_id for m in marks] == [responded.event_id]

    twice = await api.act(code, "respond", {"response": "Otra vez."}, VIAS, status=409)
    assert twice["allowed"] == [] and "close" not in twice["detail"]  # not the department's
    assert (await api.act(code, "close"))["state"] == "closed"


async def test_a_department_returns_a_case_it_does_not_own(api: Api) -> None:
    code = await api.file(denuncia())
    await api.act(code, "classify", {"kind": "denuncia", "category": "Basura"})
    await api.act(code, "remit", {"department": "vias"})
    view = await api.act(code, "return", {"reason": "Corresponde a Aseo, no a Vías."}, VIAS)
    assert view["state"] == "classified" and view["return_count"] == 1
    assert view["department"] is None
    assert (await api.client.get(f"/api/v1/cases/{code}", headers=VIAS)).status_code == 404
    await api.act(code, "return", {"reason": "Tampoco es nuestro."}, VIAS, status=404)
    types = await api.event_types(code)
    assert types[-4:] == [
        "CaseRemitted",
        "CaseRemittedToDepartment",
        "CaseReturned",
        "CaseReturnAccepted",
    ]
    returned = next(r for r in await api.outbox() if r.event_type == "CaseReturned")
    assert returned.routing_key == "case.returned.vias"
    # Re-routed to the right department, which answers.
    await api.act(code, "remit", {"department": "aseo"})
    view = await api.act(code, "respond", {"response": "Se recogió la basura."}, ASEO)
    assert view["state"] == "resolved"


async def test_sugerencia_goes_on_the_agenda_and_the_meeting_decides(api: Api) -> None:
    body = {
        "channel": "web",
        "kind": "sugerencia",
        "description": "Propongo jornadas de reciclaje los sábados en cada corregimiento.",
        "notify": {"email": EMAIL},
    }
    code = await api.file(body)
    await api.act(code, "classify", {"kind": "sugerencia", "category": "Sugerencia"})
    await api.act(code, "remit", {"department": "aseo"}, status=409)
    view = await api.act(code, "add_to_agenda")
    assert view["state"] == "on_agenda"
    agenda = (await api.client.get("/api/v1/agenda", headers=STAFF)).json()
    assert [item["tracking_code"] for item in agenda["items"]] == [code]
    assert agenda["items"][0]["description"].startswith("Propongo")
    assert (await api.client.get("/api/v1/agenda", headers=VIAS)).status_code == 403
    refused = await api.act(
        code, "record_meeting_outcome", {"decision": "maybe", "notes": "xyz"}, status=422
    )
    assert {e["field"] for e in refused["detail"]} == {"decision", "meeting_date"}
    future = {"decision": "accepted", "meeting_date": "2025-03-10"}
    too_soon = await api.act(code, "record_meeting_outcome", future, status=422)
    assert too_soon["detail"][0] == {
        "field": "meeting_date",
        "rule": "not_in_future",
        "message": "la fecha de la reunión no puede ser futura",
    }
    view = await api.act(
        code,
        "record_meeting_outcome",
        {
            "decision": "partially_accepted",
            "meeting_date": "2025-03-03",
            "notes": "Se harán jornadas mensuales.",
        },
    )
    assert view["state"] == "resolved" and view["decision"] == "partially_accepted"
    assert (await api.client.get("/api/v1/agenda", headers=STAFF)).json()["items"] == []
    await api.act(code, "close", {"reason": "Ciudadano notificado por correo."})
    assert await api.event_types(code) == [
        "CaseReceived", "CaseClassified", "CaseAddedToAgenda", "CaseResolved", "CaseClosed",
    ]  # fmt: skip


async def test_decline_needs_a_reason(api: Api) -> None:
    code = await api.file(denuncia())
    detail = (await api.act(code, "decline", {}, status=422))["detail"]
    assert detail == [
        {"field": "reason_code", "rule": "missing", "message": "campo obligatorio"},
        {"field": "reason", "rule": "missing", "message": "campo obligatorio"},
    ]
    unknown = {"reason_code": "capricho", "reason": "Duplicado del caso anterior."}
    detail = (await api.act(code, "decline", unknown, status=422))["detail"]
    assert [(d["field"], d["rule"]) for d in detail] == [("reason_code", "unknown_reason")]
    body = {"reason_code": "duplicada", "reason": "Duplicado del caso anterior."}
    view = await api.act(code, "decline", body)
    assert view["state"] == "closed"
    assert view["resolution"] == (
        "Petición duplicada de otra ya presentada. Duplicado del caso anterior."
    )
    closed = [json.loads(r.body) for r in await api.outbox() if r.event_type == "CaseClosed"]
    assert closed[0]["declined"] is True and closed[0]["decline_reason"] == "duplicada"


# ------------------------------------------------------------------------ each error code


async def test_action_errors(api: Api) -> None:
    code = await api.file(denuncia())
    # 401: no token, unknown token.
    response = await api.client.post(f"/api/v1/cases/{code}/actions/classify", json={})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    await api.act(code, "classify", {"kind": "queja"}, {"Authorization": "Bearer x"}, status=401)
    # 404: unknown action, unknown case.
    unknown = await api.act(code, "escalate", {}, status=404)
    assert "classify" in unknown["actions"]
    await api.act("2025-000-000-000", "classify", {"kind": "queja"}, status=404)
    # 403: the 311 platform reads and files, it does not act.
    await api.act(code, "classify", {"kind": "queja"}, P311, status=403)
    # 409: the state does not allow it, and the answer says what would be.
    conflict = await api.act(code, "close", {}, status=409)
    assert conflict["state"] == "received"
    assert conflict["allowed"] == ["classify", "decline", "forward", "join"]
    assert "close" in conflict["detail"]
    await api.act(code, "classify", {"kind": "queja"})
    conflict = await api.act(code, "remit", {"department": "vias"}, status=409)
    assert conflict["allowed"] == ["classify", "start_inspection", "decline", "forward", "join"]
    # 422: invalid body, unknown department, anonymous case classified as denuncia, not JSON.
    bad = await api.act(code, "classify", {"kind": "reclamo", "extra": 1}, status=422)
    assert {(e["field"], e["rule"]) for e in bad["detail"]} == {
        ("kind", "literal_error"),
        ("extra", "extra_forbidden"),
    }
    await api.act(code, "classify", {"kind": "denuncia"})
    unknown_dep = await api.act(code, "remit", {"department": "marte"}, status=422)
    assert unknown_dep["detail"][0]["rule"] == "unknown_department"
    raw = await api.client.post(
        f"/api/v1/cases/{code}/actions/decline",
        content=b"{razon: nada",
        headers={**STAFF, "Content-Type": "application/json"},
    )
    assert raw.status_code == 422 and raw.json()["detail"][0]["rule"] == "json_invalid"
    listed = await api.act(code, "decline", ["no", "objeto"], status=422)  # type: ignore[arg-type]
    assert listed["detail"][0]["rule"] == "model_type"
    # Nothing of the refused actions was stored.
    state = (await api.client.get(f"/api/v1/cases/{code}", headers=STAFF)).json()
    assert state["state"] == "classified"
    assert await api.event_types(code) == ["CaseReceived", "CaseClassified", "CaseClassified"]

    anonymous = await api.file(
        {"channel": "web", "kind": "sugerencia", "anonymous": True,
         "description": "Que pongan más luces en la avenida principal."}
    )  # fmt: skip
    refused = await api.act(anonymous, "classify", {"kind": "denuncia"}, status=422)
    assert refused["detail"][0]["rule"] == "anonymous_only_sugerencia"


# ------------------------------------------------------------------------ the list


async def test_list_filters_and_pagination(api: Api) -> None:
    web = await api.file(denuncia())
    presencial = await api.file(denuncia(channel="presencial", kind="queja"), STAFF)
    remitted = await api.file(denuncia())
    await api.act(remitted, "classify", {"kind": "denuncia"})
    await api.act(remitted, "remit", {"department": "vias"})
    api.clock.advance(timedelta(days=10))
    sugerencia = await api.file(
        {"channel": "web", "kind": "sugerencia", "anonymous": True,
         "description": "Más árboles en la Cinta Costera, por favor."}
    )  # fmt: skip

    async def listing(headers: dict[str, str] = STAFF, **params: Any) -> dict[str, Any]:
        response = await api.client.get("/api/v1/cases", params=params, headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def codes(result: dict[str, Any]) -> set[str]:
        return {item["tracking_code"] for item in result["items"]}

    everything = await listing()
    assert everything["total"] == 4
    assert next(i["tracking_code"] for i in everything["items"]) == sugerencia  # newest first
    for item in everything["items"]:
        assert "citizen" not in item and "notify" not in item
    assert codes(await listing(state="remitted")) == {remitted}
    assert codes(await listing(kind="queja")) == {presencial}
    assert codes(await listing(channel="presencial")) == {presencial}
    assert codes(await listing(department="vias")) == {remitted}
    assert codes(await listing(overdue="false")) == {web, presencial, remitted, sugerencia}
    assert (await listing(overdue="true"))["total"] == 0
    page = await listing(limit=2, offset=1)
    assert page["total"] == 4 and len(page["items"]) == 2
    assert codes(page) | codes(await listing(limit=1)) | codes(
        await listing(limit=1, offset=3)
    ) == codes(everything)

    # An hour past the legal term of the first three: the sugerencia, filed ten days later,
    # still has time, and a closed case is never overdue.
    await api.act(web, "decline", {"reason_code": "duplicada", "reason": "Duplicado."})
    first_due = datetime.fromisoformat(everything["items"][-1]["due_at"])
    last_due = datetime.fromisoformat(everything["items"][0]["due_at"])
    api.clock.at = first_due + timedelta(hours=1)
    assert last_due > api.clock.at
    overdue = await listing(overdue="true")
    assert codes(overdue) == {presencial, remitted}
    assert all(item["overdue"] for item in overdue["items"])
    assert codes(await listing(overdue="false")) == {web, sugerencia}

    # A department lists only what is remitted to it, whatever it asks for.
    assert codes(await listing(VIAS)) == {remitted}
    assert codes(await listing(VIAS, department="aseo")) == {remitted}
    assert (await listing(ASEO))["total"] == 0
    assert (await api.client.get("/api/v1/cases")).status_code == 401
    assert (await api.client.get("/api/v1/cases", headers=P311)).status_code == 403
    bad = await api.client.get(
        "/api/v1/cases", params={"state": "abierto", "limit": 0, "overdue": "quizás"}, headers=STAFF
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"state", "limit", "overdue"}
    assert all(e["message"].startswith("debe") for e in bad.json()["detail"])


async def test_departments_health_and_docs(api: Api) -> None:
    departments = (await api.client.get("/api/v1/departments")).json()
    assert {"code": "vias", "name": "Dirección de Mantenimiento Vial"} in departments
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert (await api.client.get("/docs")).status_code == 200
    spec = (await api.client.get("/openapi.json")).json()
    assert "/api/v1/cases/{tracking_code}/actions/{action}" in spec["paths"]
    assert "bearer" in json.dumps(spec["components"]["securitySchemes"]).lower()


# ------------------------------------------------------------------------ with the router running


async def test_the_router_does_not_apply_an_http_answer_twice(amqp_url: str, pg_url: str) -> None:
    clock = FixedClock(START)
    settings = settings_for(amqp_url, pg_url, api_tokens=TOKENS)
    async with running(settings, [intake_service(), router_service()], clock=clock) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime.deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            filed = await client.post("/api/v1/cases", json=denuncia())
            code = filed.json()["tracking_code"]

            async def routed() -> bool:
                view = (await client.get(f"/api/v1/cases/{code}", headers=STAFF)).json()
                return bool(view["state"] == "remitted")

            await eventually(routed)  # "hueco" → remit:vias by the default rules
            answer = await client.post(
                f"/api/v1/cases/{code}/actions/respond",
                json={"response": "Hueco reparado el 4 de marzo."},
                headers=VIAS,
            )
            assert answer.status_code == 200, answer.text

            def router_consumed() -> bool:
                consumed = runtime.deps.metrics.registry.get_sample_value(
                    "defensa311_messages_total", {"queue": ROUTER.name, "outcome": "consumed"}
                )
                return consumed == 2  # CaseReceived, then the department's answer

            await eventually(router_consumed)
            view = (await client.get(f"/api/v1/cases/{code}", headers=STAFF)).json()
            assert view["state"] == "resolved"
            assert "answer_refused" not in [h["action"] for h in view["history"]]
            async with runtime.deps.uow() as uow:
                types = list(await uow.session.scalars(select(OutboxRow.event_type)))
            assert "SubmissionRejected" not in types
            assert types.count("CaseResolved") == 1


async def test_a_juridical_person_files_through_its_legal_representative(api: Api) -> None:
    company = {
        "full_name": "Comercial Ejemplo, S.A.",
        "id_type": "ruc",
        "id_number": "155587169-2-2014",
        "email": EMAIL,
    }
    refused = await api.client.post("/api/v1/cases", json=denuncia(citizen=company))
    assert refused.status_code == 422
    fields = {(e["field"], e["rule"]) for e in refused.json()["detail"]}
    assert fields == {
        ("citizen.ruc_dv", "required_for_ruc"),
        ("citizen.representative", "required_for_ruc"),
    }
    assert await api.count_cases() == 0

    company |= {"ruc_dv": "09", "representative": {"full_name": NAME, "id_number": CEDULA}}
    filed = await api.client.post("/api/v1/cases", json=denuncia(citizen=company))
    assert filed.status_code == 201, filed.text
    passport = {"full_name": NAME, "id_type": "pasaporte", "id_number": "12"}
    bad = await api.client.post("/api/v1/cases", json=denuncia(citizen=passport))
    assert bad.status_code == 422
    (error,) = bad.json()["detail"]
    assert (error["field"], error["rule"]) == ("citizen.id_number", "pasaporte")
