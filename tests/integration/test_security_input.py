"""Hostile input at every HTTP door: a 4xx naming the rule in Spanish, never a 5xx, and the
Open311 XML stays well-formed whatever was stored."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import update

from shared.db.models import CaseRow
from tests.integration.security_app import (
    STAFF_TOKEN,
    intake_app,
    open311_denuncia,
    web_denuncia,
)

STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}
CONTROLS = "Calle 50\x01 casa\x0b 12\x1f, Bella Vista"


async def test_control_characters_in_an_address_are_refused_at_the_api_and_open311(
    tmp_path: Path,
) -> None:
    async with intake_app(tmp_path) as app:
        api = await app.client.post(
            "/api/v1/cases", json=web_denuncia(location={"address": CONTROLS})
        )
        assert api.status_code == 422
        assert api.json()["detail"][0]["field"] == "location.address"
        assert api.json()["detail"][0]["rule"] == "control_characters"

        open311 = await app.client.post(
            "/open311/v2/requests.xml", data=open311_denuncia(address_string=CONTROLS)
        )
        assert open311.status_code == 400
        description = ET.fromstring(open311.content).findtext("error/description") or ""
        assert description.startswith("address_string: contiene un carácter de control")


async def test_requests_xml_stays_well_formed_over_a_stored_control_character(
    tmp_path: Path,
) -> None:
    async with intake_app(tmp_path) as app:
        filed = await app.client.post("/api/v1/cases", json=web_denuncia())
        assert filed.status_code == 201
        # A row stored before the rule existed (or written around it).
        async with app.deps.uow() as uow:
            await uow.session.execute(
                update(CaseRow).values(
                    category="Calles\x02 y huecos",
                    location={"address": CONTROLS, "lat": 8.98, "lon": -79.52},
                )
            )
        listing = await app.client.get("/open311/v2/requests.xml")
        assert listing.status_code == 200
        assert not any(byte < 0x20 and byte not in b"\t\n\r" for byte in listing.content)
        root = ET.fromstring(listing.content)  # raises if not well-formed
        assert root.findtext("request/service_name") == "Calles y huecos"
        assert root.findtext("request/address") in (None, "", "Calle 50 casa 12, Bella Vista")


def spanish(response: httpx.Response) -> str:
    """The error's text, whichever door answered (the API's detail or Open311's list)."""
    body = response.json()
    if isinstance(body, list):
        return " ".join(str(error["description"]) for error in body)
    detail = body["detail"]
    if isinstance(detail, list):
        return " ".join(str(error["message"]) for error in detail)
    return str(detail)


SPANISH_WORDS = ("debe", "fecha", "no ", "máximo", "demasiad", "carácter", "entero", "menor")


def assert_refused_in_spanish(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    text = spanish(response)
    assert any(word in text for word in SPANISH_WORDS), text


async def test_the_inputs_that_once_gave_500_get_a_spanish_4xx(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        client = app.client
        filed = await client.post("/api/v1/cases", json=web_denuncia())
        code = filed.json()["tracking_code"]
        nul = "Hay un hueco\u0000 enorme en la calle 50 desde hace meses"
        answers = {
            "description with U+0000": await client.post(
                "/api/v1/cases", json=web_denuncia(description=nul)
            ),
            "end_date=0001-01-01": await client.get(
                "/open311/v2/requests.json", params={"end_date": "0001-01-01"}
            ),
            "start_date at the end of time": await client.get(
                "/open311/v2/requests.json", params={"start_date": "9999-12-31T23:59:59+14:00"}
            ),
            "page=2**62": await client.get(
                "/open311/v2/requests.json", params={"page": str(2**62)}
            ),
            "Open311 POST with %00": await client.post(
                "/open311/v2/requests.json",
                content=urlencode(open311_denuncia()).replace("Hay+un", "Hay%00un"),
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            "offset=2**63": await client.get(
                "/api/v1/cases", params={"offset": str(2**63)}, headers=STAFF
            ),
            "a task id past 64 bits": await client.post(
                "/api/v1/tasks/496263550406739681242076342061629440/done", headers=STAFF
            ),
            "an action body nested 50,000 deep": await client.post(
                f"/api/v1/cases/{code}/actions/classify",
                content="[" * 50_000 + "]" * 50_000,
                headers={**STAFF, "content-type": "application/json"},
            ),
            "a filing nested 100,000 deep": await client.post(
                "/api/v1/cases",
                content="[" * 100_000 + "]" * 100_000,
                headers={"content-type": "application/json"},
            ),
            "a query parameter with U+0000": await client.get(
                "/api/v1/cases", params={"department": "\u0000obras"}, headers=STAFF
            ),
        }
        for name, response in answers.items():
            try:
                assert_refused_in_spanish(response)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None
