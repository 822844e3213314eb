"""Open311 GeoReport v2 against a real server: intake's app under uvicorn, a real RabbitMQ
vhost and PostgreSQL database, driven by the PyPI ``georeport`` client (JSON and XML) and by
httpx for filing, the XML documents (parsed with ``xml.etree``) and the error shapes."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import requests
import uvicorn
from georeport import GeoReport
from sqlalchemy import func, select

from services.intake.app import service
from services.intake.http import create_app
from shared.cases import get_case, history, perform
from shared.clock import FixedClock
from shared.db.models import CaseRow, OutboxRow
from shared.runtime import Runtime
from shared.tracking import is_valid_tracking_code
from tests.support import eventually, free_port, running, settings_for

pytestmark = pytest.mark.connected

TOKEN = "open311-test-token-7f3a"
STAFF_TOKEN = "staff-test-token-1b2c"
PANAMA = ZoneInfo("America/Panama")
FILED_AT = datetime(2025, 3, 10, 14, 0, tzinfo=UTC)  # Monday 09:00 in Panama

DENUNCIA = "denuncia-calles-y-huecos"
SUGERENCIA = "sugerencia-sugerencia"
CEDULA = "8-123-4567"
EMAIL = "ana.perez@correo.example"


@contextlib.asynccontextmanager
async def open311_server(
    amqp_url: str, pg_url: str, clock: FixedClock
) -> AsyncIterator[tuple[str, Runtime]]:
    settings = settings_for(amqp_url, pg_url, api_tokens=f"platform311={TOKEN},staff={STAFF_TOKEN}")
    async with running(settings, [service()], clock=clock) as runtime:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(runtime.deps),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started, timeout=10)
            yield f"http://127.0.0.1:{port}/open311/v2", runtime
        finally:
            server.should_exit = True
            await task


def denuncia_form(**overrides: str) -> dict[str, str]:
    form = {
        "api_key": TOKEN,
        "service_code": DENUNCIA,
        "lat": "8.9824",
        "long": "-79.5199",
        "address_string": "Calle 50 frente al banco, Bella Vista",
        "description": "Hay un hueco enorme en la calle que ya dañó varios carros",
        "first_name": "Ana",
        "last_name": "Pérez",
        "email": EMAIL,
        "phone": "6123-4567",
        "attribute[id_number]": CEDULA,
        "attribute[notify_email]": EMAIL,
        "attribute[external_ref]": "311-2025-000123",
        "media_url": "https://fotos.example/hueco.jpg",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v != ""}


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.deps.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


def errors_of(response: httpx.Response) -> list[dict[str, str]]:
    body = response.json()
    assert isinstance(body, list) and body, body
    for error in body:
        assert set(error) == {"code", "description"}
        assert error["code"] == str(response.status_code)
    return body


def xml_errors(response: httpx.Response) -> list[tuple[str, str]]:
    root = ET.fromstring(response.content)
    assert root.tag == "errors"
    return [(e.findtext("code") or "", e.findtext("description") or "") for e in root]


def as_list(value: Any) -> list[Any]:
    """xmltodict gives a dict for one element and a list for several."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------- catalogue


async def test_discovery_services_and_definitions(amqp_url: str, pg_url: str) -> None:
    async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
        as_json = GeoReport(base)
        as_xml = GeoReport(base, output_format="xml")

        services = await asyncio.to_thread(as_json.get_service_list)
        codes = [s["service_code"] for s in services]
        assert len(codes) == len(set(codes))
        assert all(isinstance(c, str) for c in codes)
        assert {DENUNCIA, SUGERENCIA, "queja-recoleccion-de-basura"} <= set(codes)
        # Rules without a kind (outside competence, congratulations) are not services.
        assert not any("fuera-de-competencia" in c for c in codes)
        calles = next(s for s in services if s["service_code"] == DENUNCIA)
        assert calles["metadata"] is True and calles["type"] == "realtime"
        assert calles["group"] == "Denuncias"
        assert calles["service_name"] == "Calles y huecos"
        assert "huecos" in calles["keywords"]
        assert "Dirección de Mantenimiento Vial" in calles["description"]

        xml_services = as_list(await asyncio.to_thread(as_xml.get_service_list))
        assert [s["service_code"] for s in xml_services] == codes
        assert {s["metadata"] for s in xml_services} == {"true"}

        definition = await asyncio.to_thread(as_json.get_service_definition, DENUNCIA)
        assert definition["service_code"] == DENUNCIA
        attributes = {a["code"]: a for a in definition["attributes"]}
        assert attributes["id_number"]["required"] is True
        assert attributes["id_number"]["datatype"] == "string"
        assert "Ley 38" in attributes["id_number"]["description"]
        assert {"notify_email", "notify_phone", "notify_address"} <= set(attributes)
        assert "anonymous" not in attributes
        orders = [a["order"] for a in definition["attributes"]]
        assert orders == sorted(orders)

        sugerencia = await asyncio.to_thread(as_xml.get_service_definition, SUGERENCIA)
        xml_attributes = {a["code"]: a for a in as_list(sugerencia["attributes"]["attribute"])}
        assert xml_attributes["id_number"]["required"] == "false"
        anonymous = xml_attributes["anonymous"]
        assert anonymous["datatype"] == "singlevaluelist"
        assert {v["key"] for v in as_list(anonymous["values"]["value"])} == {"true", "false"}

        async with httpx.AsyncClient(base_url=base) as http:
            discovery = ET.fromstring((await http.get("/discovery.xml")).content)
            assert discovery.tag == "discovery"
            endpoint = discovery.find("endpoints/endpoint")
            assert endpoint is not None
            assert (endpoint.findtext("url") or "").endswith("/open311/v2")
            assert endpoint.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
            formats = [f.text for f in endpoint.iterfind("formats/format")]
            assert formats == ["text/xml", "application/json"]
            changeset = discovery.findtext("changeset") or ""
            assert datetime.fromisoformat(changeset).tzinfo is not None
            assert (await http.get("/discovery.json")).json()["endpoints"][0]["type"] == (
                "production"
            )

            services_xml = ET.fromstring((await http.get("/services.xml")).content)
            assert services_xml.tag == "services"
            assert [s.findtext("service_code") for s in services_xml] == codes

            missing = await http.get("/services/no-existe.json")
            assert missing.status_code == 404
            assert "no-existe" in errors_of(missing)[0]["description"]
            missing_xml = await http.get("/services/no-existe.xml")
            assert missing_xml.status_code == 404
            assert xml_errors(missing_xml)[0][0] == "404"
            assert (await http.get("/services.csv")).status_code == 404
            assert errors_of(await http.get("/nada.json"))[0]["code"] == "404"
        assert await count(runtime, CaseRow) == 0


# ---------------------------------------------------------------------------- requests


async def test_file_and_follow_requests(amqp_url: str, pg_url: str) -> None:
    clock = FixedClock(FILED_AT)
    async with open311_server(amqp_url, pg_url, clock) as (base, runtime):
        deps = runtime.deps
        async with httpx.AsyncClient(base_url=base) as http:
            filed = await http.post("/requests.json", data=denuncia_form())
            assert filed.status_code == 201, filed.text
            [answer] = filed.json()
            tracking = answer["service_request_id"]
            assert isinstance(tracking, str) and is_valid_tracking_code(tracking)
            assert tracking in answer["service_notice"]
            assert "denuncia" in answer["service_notice"]

            # The same 311 reference again: the same case, nothing new stored.
            again = await http.post("/requests.json", data=denuncia_form())
            assert again.status_code == 200
            assert again.json()[0]["service_request_id"] == tracking

            clock.advance(timedelta(hours=1))
            sugerencia = await http.post(
                "/requests.xml",
                data={
                    "api_key": TOKEN,
                    "service_code": SUGERENCIA,
                    "address_string": "Parque Urracá",
                    "description": "Sería bueno poner más bancas y sombra en el parque",
                    "attribute[anonymous]": "true",
                },
            )
            assert sugerencia.status_code == 201, sugerencia.text
            root = ET.fromstring(sugerencia.content)
            assert root.tag == "service_requests"
            suggestion_id = root.findtext("request/service_request_id") or ""
            assert is_valid_tracking_code(suggestion_id)
            assert "sugerencia" in (root.findtext("request/service_notice") or "")

        # Stored as any other filing: channel 311, the first state, the audit row, the outbox.
        async with deps.uow() as uow:
            case = await get_case(uow, tracking_code=tracking)
            rows = await history(uow, case.id)
            received = await uow.session.scalar(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.event_type == "CaseReceived")
            )
        assert await count(runtime, CaseRow) == 2
        assert received == 2
        assert (case.channel, case.state, case.kind) == ("311", "received", "denuncia")
        assert case.category == "Calles y huecos"
        assert case.external_ref == "311-2025-000123"
        assert case.citizen == {
            "full_name": "Ana Pérez",
            "id_type": "cedula",
            "id_number": CEDULA,
            "email": EMAIL,
            "phone": "+50761234567",
        }
        assert case.notify == {"email": EMAIL}
        assert case.location is not None and case.location["lat"] == pytest.approx(8.9824)
        assert "https://fotos.example/hueco.jpg" in case.description
        assert [(r.actor, r.action) for r in rows] == [("open311", "file")]

        as_json = GeoReport(base)
        as_xml = GeoReport(base, output_format="xml")
        due = deps.cases.terms.legal_due(FILED_AT).astimezone(PANAMA)

        one = await asyncio.to_thread(as_json.get_service_request, tracking)
        assert one["service_request_id"] == tracking
        assert one["status"] == "open"
        assert one["service_code"] == DENUNCIA
        assert one["agency_responsible"] == "Departamento Defensa del Usuario – 311"
        assert "pendiente de clasificación" in one["status_notes"]
        assert one["requested_datetime"] == "2025-03-10T09:00:00-05:00"
        assert one["expected_datetime"] == due.replace(microsecond=0).isoformat()
        assert one["expected_datetime"].endswith("-05:00")
        # No free-text address; coordinates rounded to about 100 m (the default).
        assert one["address"] is None
        assert (one["lat"], one["long"]) == (8.982, -79.52)

        # The public outputs carry no personal data.
        async with httpx.AsyncClient(base_url=base) as http:
            public = (await http.get(f"/requests/{tracking}.json")).text
        for personal in (CEDULA, EMAIL, "Pérez", "61234567"):
            assert personal not in public

        one_xml = await asyncio.to_thread(as_xml.get_service_request, tracking)
        assert one_xml["service_request_id"] == tracking
        assert one_xml["status"] == "open"
        assert one_xml["expected_datetime"] == one["expected_datetime"]

        # The case moves through the lifecycle; Open311 follows it.
        async def act(action: str, params: dict[str, Any]) -> None:
            async with deps.uow() as uow:
                row = await get_case(uow, tracking_code=tracking, lock=True)
                await perform(uow, deps.cases, row, action, params, actor="staff", now=clock.now())

        clock.advance(timedelta(days=1))
        await act("classify", {"kind": "denuncia", "category": "Calles y huecos"})
        await act("remit", {"department": "vias"})
        remitted = await asyncio.to_thread(as_json.get_service_request, tracking)
        assert remitted["status"] == "open"
        assert remitted["agency_responsible"] == "Dirección de Mantenimiento Vial"
        assert "Remitido a Dirección de Mantenimiento Vial" in remitted["status_notes"]
        assert remitted["updated_datetime"] == "2025-03-11T10:00:00-05:00"

        clock.advance(timedelta(days=2))
        await act("respond", {"response": "Se reparó el hueco con asfalto nuevo"})
        resolved = await asyncio.to_thread(as_json.get_service_request, tracking)
        assert resolved["status"] == "closed"
        assert resolved["status_notes"].startswith("Resuelto")
        assert resolved["expected_datetime"] == one["expected_datetime"]

        # Filters.
        closed = await asyncio.to_thread(as_json.get_service_requests, status="closed")
        assert [r["service_request_id"] for r in closed] == [tracking]
        still_open = await asyncio.to_thread(as_json.get_service_requests, status="open")
        assert [r["service_request_id"] for r in still_open] == [suggestion_id]
        both = await asyncio.to_thread(
            as_json.get_service_requests,
            service_request_id=f"{tracking},{suggestion_id.lower()}",
            status="open",  # the ids override every other filter
        )
        assert {r["service_request_id"] for r in both} == {tracking, suggestion_id}
        by_code = await asyncio.to_thread(as_json.get_service_requests, service_code=SUGERENCIA)
        assert [r["service_request_id"] for r in by_code] == [suggestion_id]
        assert by_code[0]["agency_responsible"] == "Departamento Defensa del Usuario – 311"
        newest_first = await asyncio.to_thread(as_xml.get_service_requests)
        assert [r["service_request_id"] for r in as_list(newest_first)] == [
            suggestion_id,
            tracking,
        ]
        earlier = await asyncio.to_thread(
            as_json.get_service_requests,
            start_date="2025-01-01T00:00:00-05:00",
            end_date="2025-03-10T09:30:00-05:00",
        )
        assert [r["service_request_id"] for r in earlier] == [tracking]
        async with httpx.AsyncClient(base_url=base) as http:
            page2 = (await http.get("/requests.json", params={"page_size": 1, "page": 2})).json()
            assert [r["service_request_id"] for r in page2] == [tracking]
            listed = ET.fromstring((await http.get("/requests.xml")).content)
            assert listed.tag == "service_requests"
            assert [r.findtext("service_request_id") for r in listed] == [suggestion_id, tracking]
            assert listed.findtext("request/lat") == ""
            assert listed.findtext("request/address") == ""


async def test_listing_without_api_key_is_small_and_counted_like_a_code_lookup(
    amqp_url: str, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_RATE_LIMIT_LOOKUP_BURST", "10")
    async with (
        open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, _runtime),
        httpx.AsyncClient(base_url=base) as http,
    ):
        assert (await http.post("/requests.json", data=denuncia_form())).status_code == 201
        too_big = await http.get("/requests.json", params={"page_size": 50})
        assert too_big.status_code == 400
        assert "page_size" in errors_of(too_big)[0]["description"]
        deep = await http.get("/requests.json", params={"page": 6})
        assert deep.status_code == 400
        # With the platform's key: the full page size, and no budget spent.
        keyed = await http.get("/requests.json", params={"page_size": 200, "api_key": TOKEN})
        assert keyed.status_code == 200 and len(keyed.json()) == 1
        wrong = await http.get("/requests.json", params={"api_key": "otra"})
        assert wrong.status_code == 403
        statuses = [(await http.get("/requests.json")).status_code for _ in range(12)]
        assert 429 in statuses
        first_refusal = statuses.index(429)
        assert set(statuses[:first_refusal]) == {200}
        assert set(statuses[first_refusal:]) == {429}
        # The same budget as the tracking lookups: spent here, refused there too.
        site = base.removesuffix("/open311/v2")
        assert (await http.get(f"{site}/api/v1/cases/2025-AAA-BBB-CCC")).status_code == 429
        # The platform is not slowed by anonymous clients.
        keyed = await http.get("/requests.json", params={"api_key": TOKEN})
        assert keyed.status_code == 200


# ---------------------------------------------------------------------------- errors


async def test_errors_and_nothing_half_stored(amqp_url: str, pg_url: str) -> None:
    async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
        async with httpx.AsyncClient(base_url=base) as http:
            for key in ("", "not-a-token", STAFF_TOKEN):
                refused = await http.post("/requests.json", data=denuncia_form(api_key=key))
                assert refused.status_code == 403
                assert "api_key" in errors_of(refused)[0]["description"]
            refused_xml = await http.post("/requests.xml", data=denuncia_form(api_key="x"))
            assert refused_xml.status_code == 403
            [(code, description)] = xml_errors(refused_xml)
            assert code == "403" and "platform311" in description

            async def bad(**overrides: str) -> list[str]:
                response = await http.post("/requests.json", data=denuncia_form(**overrides))
                assert response.status_code == 400, response.text
                return [e["description"] for e in errors_of(response)]

            # The law, through the same validation as every other door.
            law = await bad(**{"attribute[id_number]": "", "first_name": "", "last_name": ""})
            assert any(
                d.startswith("attribute[id_number]:") and "required_for_kind" in d for d in law
            )
            assert any(d.startswith("first_name, last_name:") and "Ley 38" in d for d in law)
            cedula = await bad(**{"attribute[id_number]": "12345"})
            assert cedula == [cedula[0]]
            assert cedula[0].startswith("attribute[id_number]:") and "(regla: cedula)" in cedula[0]
            notify = await bad(**{"attribute[notify_email]": "", "email": "", "phone": ""})
            assert notify[0].startswith("email, phone, attribute[notify_email]")
            assert "notification" in notify[0]
            outside = await bad(lat="40.7", long="-74.0")
            assert outside[0].startswith("lat, long:") and "in_panama" in outside[0]
            short = await bad(description="corto", media_url="")
            assert short[0].startswith("description:") and "text_length" in short[0]
            anonymous = await bad(**{"attribute[anonymous]": "true"})
            assert "unknown_attribute" in anonymous[0]  # only a sugerencia offers anonymity
            nowhere = await bad(lat="", long="", address_string="")
            assert "location_required" in nowhere[0]
            assert "(regla: number)" in (await bad(lat="norte"))[0]
            assert "(regla: url)" in (await bad(media_url="javascript:alert(1)"))[0]
            assert "unknown_service" in (await bad(service_code="no-existe"))[0]
            assert "(regla: required)" in (await bad(service_code=""))[0]

            invalid_xml = await http.post(
                "/requests.xml", data=denuncia_form(**{"attribute[id_number]": "12345"})
            )
            assert invalid_xml.status_code == 400
            assert xml_errors(invalid_xml)[0][1].startswith("attribute[id_number]:")

            # Following: 404 for a missing request, 400 for bad filters.
            for missing in ("2025-7K3-M9Q-XD2", "no-such-code"):
                response = await http.get(f"/requests/{missing}.json")
                assert response.status_code == 404
                assert errors_of(response)[0]["description"].startswith("service_request_id")
            for params, rule in (
                ({"start_date": "2025-01-01", "end_date": "2025-06-01"}, "max_90_days"),
                ({"start_date": "2025-03-01", "end_date": "2025-02-01"}, "date_order"),
                ({"start_date": "ayer"}, "w3c_datetime"),
                ({"status": "pending"}, "status"),
                ({"page_size": "5000"}, "integer"),
                ({"service_code": "no-existe"}, "unknown_service"),
                ({"service_request_id": "2025-XXX"}, "tracking_code"),
            ):
                response = await http.get("/requests.json", params=params)
                assert response.status_code == 400, (params, response.text)
                assert f"(regla: {rule})" in errors_of(response)[0]["description"]
            bad_dates_xml = await http.get(
                "/requests.xml", params={"start_date": "2025-01-01", "end_date": "2025-06-01"}
            )
            assert xml_errors(bad_dates_xml)[0][0] == "400"

        with pytest.raises(requests.HTTPError) as raised:
            await asyncio.to_thread(GeoReport(base).get_service_request, "2025-7K3-M9Q-XD2")
        refusal = raised.value.response
        assert refusal is not None and refusal.status_code == 404
        assert refusal.json()[0]["code"] == "404"

        # Nothing refused was stored, nothing was published.
        assert await count(runtime, CaseRow) == 0
        assert await count(runtime, OutboxRow) == 0
