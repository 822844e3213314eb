"""Everyone may petition, on both web doors: the filing page ``/presentar`` and the console's
presencial form offer cédula, passport, and RUC with its DV and legal representative, read
by one shared function and judged by the API's own model (errors next to each field).
On the embedded default (SQLite), as the filing page's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.intake.observability import HttpLimits
from shared.cases import get_case
from shared.cases.form import submission_data
from tests.integration.test_filing_page import (
    DENUNCIA,
    STAFF,
    Page,
    errors_on,
    open_page,
    sign_in,
)

PASSPORT = {
    "citizen.full_name": "Ann Lee",
    "citizen.id_type": "pasaporte",
    "citizen.id_number": "pa 123 4567",
}
COMPANY = {
    "citizen.full_name": "Constructora del Istmo, S.A.",
    "citizen.id_type": "ruc",
    "citizen.id_number": "155587169-2-2014",
    "citizen.ruc_dv": "09",
    "citizen.representative.full_name": "Maribel Quintero",
    "citizen.representative.id_type": "cedula",
    "citizen.representative.id_number": "8-123-4567",
}


@pytest.fixture
async def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Page]:
    async with open_page(tmp_path, monkeypatch, HttpLimits()) as opened:
        yield opened


def _without_identity(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if not k.startswith("citizen.")}


async def _stored_citizen(page: Page, location: str) -> Any:
    code = location.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    async with page.runtime.deps.uow() as uow:
        return (await get_case(uow, tracking_code=code)).citizen


async def test_the_page_offers_every_document_of_the_law_without_javascript(page: Page) -> None:
    form = (await page.client.get("/presentar")).text
    for value in ("cedula", "pasaporte", "ruc"):
        assert f'<option value="{value}"' in form
    assert "<legend>Solo para personas jurídicas (RUC)</legend>" in form
    for field in (
        "citizen-id_type",
        "citizen-id_number",
        "citizen-ruc_dv",
        "citizen-representative-full_name",
        "citizen-representative-id_type",
        "citizen-representative-id_number",
    ):
        assert f'<label for="campo-{field}">' in form
        assert f'id="campo-{field}"' in form


async def test_a_foreigner_files_with_a_passport(page: Page) -> None:
    filed = await page.send({**_without_identity(DENUNCIA), **PASSPORT})
    assert filed.status_code == 303, errors_on(filed.text)
    assert await _stored_citizen(page, filed.headers["location"]) == {
        "full_name": "Ann Lee",
        "id_type": "pasaporte",
        "id_number": "PA1234567",
    }


async def test_a_juridical_person_files_with_its_ruc_dv_and_legal_representative(
    page: Page,
) -> None:
    filed = await page.send({**_without_identity(DENUNCIA), **COMPANY})
    assert filed.status_code == 303, errors_on(filed.text)
    assert await _stored_citizen(page, filed.headers["location"]) == {
        "full_name": "Constructora del Istmo, S.A.",
        "id_type": "ruc",
        "id_number": "155587169-2-2014",
        "ruc_dv": "09",
        "representative": {
            "full_name": "Maribel Quintero",
            "id_type": "cedula",
            "id_number": "8-123-4567",
        },
    }


async def test_identity_errors_are_the_apis_own_in_spanish_next_to_each_field(
    page: Page,
) -> None:
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        # A RUC without its DV nor its representative.
        (
            {k: v for k, v in COMPANY.items() if k.startswith(("citizen.full", "citizen.id"))},
            {
                "full_name": COMPANY["citizen.full_name"],
                "id_type": "ruc",
                "id_number": COMPANY["citizen.id_number"],
            },
        ),
        # A passport number too short, and a DV given with a cédula.
        (
            {**PASSPORT, "citizen.id_number": "12"},
            {"full_name": "Ann Lee", "id_type": "pasaporte", "id_number": "12"},
        ),
        (
            {"citizen.full_name": "Ana", "citizen.id_number": "8-123-4567", "citizen.ruc_dv": "1"},
            {"full_name": "Ana", "id_number": "8-123-4567", "ruc_dv": "1"},
        ),
        # The representative's own document is checked by its type.
        (
            {**COMPANY, "citizen.representative.id_number": "99-1-1"},
            {
                **{k.removeprefix("citizen."): v for k, v in COMPANY.items() if k.count(".") == 1},
                "representative": {"full_name": "Maribel Quintero", "id_number": "99-1-1"},
            },
        ),
    ]
    base = _without_identity(DENUNCIA)
    for fields, citizen in cases:
        body = {
            "channel": "web",
            "kind": "denuncia",
            "description": base["description"],
            "citizen": citizen,
            "notify": {"email": base["notify.email"]},
        }
        api = await page.client.post("/api/v1/cases", json=body)
        assert api.status_code == 422
        expected = {e["field"]: e["message"] for e in api.json()["detail"]}
        shown = await page.send({**base, **fields})
        assert shown.status_code == 422
        errors = errors_on(shown.text)
        assert expected and all(
            errors[field.replace(".", "-")] == message for field, message in expected.items()
        ), (expected, errors)
        for field in expected:
            anchor = (
                "grupo-juridica"
                if field == "citizen.representative"
                else ("campo-" + field.replace(".", "-"))
            )
            assert f'href="#{anchor}"' in shown.text
    assert await page.cases() == 0
    # The messages name the field's rule in Spanish.
    assert "dígito verificador" in expected_messages(await _ruc_without_dv(page))


async def _ruc_without_dv(page: Page) -> str:
    fields = {k: v for k, v in COMPANY.items() if k != "citizen.ruc_dv"}
    return (await page.send({**_without_identity(DENUNCIA), **fields})).text


def expected_messages(html: str) -> str:
    return " ".join(errors_on(html).values())


async def test_the_console_registers_a_juridical_person_through_the_same_reading(
    page: Page,
) -> None:
    csrf = await sign_in(page.client, STAFF)
    form = (await page.client.get("/consola/nuevo")).text
    assert "<legend>Solo para personas jurídicas (RUC)</legend>" in form
    base = {**_without_identity(DENUNCIA), "csrf": csrf}
    refused = await page.client.post(
        "/consola/nuevo", data={**base, **COMPANY, "citizen.ruc_dv": "123"}
    )
    assert refused.status_code == 422
    assert "dígito verificador" in errors_on(refused.text)["citizen-ruc_dv"]
    assert 'href="#campo-citizen-ruc_dv"' in refused.text
    filed = await page.client.post("/consola/nuevo", data={**base, **COMPANY})
    assert filed.status_code == 303
    citizen = await _stored_citizen(page, filed.headers["location"])
    assert citizen["representative"]["id_number"] == "8-123-4567"
    shown = await page.client.get(filed.headers["location"])
    assert "RUC 155587169-2-2014 DV 09" in shown.text
    assert "Maribel Quintero (Cédula 8-123-4567)" in shown.text


def test_both_doors_read_a_document_type_alone_as_no_document() -> None:
    assert "citizen" not in submission_data({"description": "x", "citizen.id_type": "pasaporte"})
    data = submission_data(
        {
            "description": "x",
            "citizen.full_name": "Ana",
            "citizen.representative.id_type": "cedula",
        }
    )
    assert data["citizen"] == {"full_name": "Ana"}
    assert submission_data({**COMPANY, "description": "x"})["citizen"]["representative"] == {
        "full_name": "Maribel Quintero",
        "id_type": "cedula",
        "id_number": "8-123-4567",
    }
