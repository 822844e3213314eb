"""Hostile input at every HTTP door: a 4xx naming the rule in Spanish, never a 5xx, and the
Open311 XML stays well-formed whatever was stored."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

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
