"""A standard GeoReport v2 client (issue 19, point 3): it knows only the standard fields —
``first_name``, ``last_name``, ``email``, ``phone`` — and files a case with them; it follows
the case with the PyPI ``georeport`` client."""

from __future__ import annotations

import asyncio

import pytest
import requests
from georeport import GeoReport

from shared.cases import get_case
from shared.clock import FixedClock
from tests.integration.test_open311 import FILED_AT, SUGERENCIA, TOKEN, open311_server

pytestmark = pytest.mark.connected

# Exactly what GeoReport v2 defines for POST requests: no attribute[...] at all.
STANDARD = {
    "api_key": TOKEN,
    "jurisdiction_id": "alcaldia.example",
    "service_code": SUGERENCIA,
    "lat": "8.9824",
    "long": "-79.5199",
    "address_string": "Parque Urracá, Bella Vista",
    "description": "Sería bueno poner más bancas con sombra en el parque para los mayores.",
    "first_name": "Luis",
    "last_name": "Batista",
    "email": "luis.batista@correo.example",
    "phone": "6987-6543",
    "device_id": "app-311-abc",
    "account_id": "",
}


def post(base: str, form: dict[str, str]) -> requests.Response:
    return requests.post(f"{base}/requests.json", data=form, timeout=10)


async def test_a_request_with_only_standard_fields_files_a_case_notified_at_its_email_and_phone(
    amqp_url: str, pg_url: str
) -> None:
    async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
        filed = await asyncio.to_thread(post, base, STANDARD)
        assert filed.status_code == 201, filed.text
        code = filed.json()[0]["service_request_id"]
        async with runtime.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code)
        assert case.citizen == {
            "full_name": "Luis Batista",
            "email": "luis.batista@correo.example",
            "phone": "+50769876543",
        }
        assert case.notify == {"email": "luis.batista@correo.example", "phone": "+50769876543"}
        followed = await asyncio.to_thread(GeoReport(base).get_service_request, code)
        assert followed["service_request_id"] == code
        assert followed["status"] == "open"
        assert "luis" not in str(followed).lower()


async def test_a_notification_attribute_says_otherwise_than_the_standard_email(
    amqp_url: str, pg_url: str
) -> None:
    form = {**STANDARD, "attribute[notify_address]": "Apartado 0816-01234, Panamá"}
    async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
        filed = await asyncio.to_thread(post, base, form)
        assert filed.status_code == 201, filed.text
        async with runtime.deps.uow() as uow:
            case = await get_case(uow, tracking_code=filed.json()[0]["service_request_id"])
        assert case.notify == {"address": "Apartado 0816-01234, Panamá"}


async def test_a_standard_request_without_email_or_phone_is_told_where_to_give_one(
    amqp_url: str, pg_url: str
) -> None:
    form = {k: v for k, v in STANDARD.items() if k not in ("email", "phone")}
    async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, _runtime):
        refused = await asyncio.to_thread(post, base, form)
        assert refused.status_code == 400
        assert refused.json()[0]["description"].startswith("email, phone, attribute[notify_email]")
