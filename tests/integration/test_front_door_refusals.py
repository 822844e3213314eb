"""A browser refused by the HTTP guard gets a Spanish page in the public look, with the status
kept (429: wait and try again; 413: the size limits); an API client keeps the JSON answer.
On the embedded default (SQLite), as the filing page's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.intake.observability import HttpLimits
from tests.integration.test_filing_page import DENUNCIA, Page, open_page

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API_CLIENT = {"Accept": "application/json"}


@pytest.fixture
async def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Page]:
    # One attachment of at most 0.5 MB: a filing may weigh 1.5 MB with its form.
    monkeypatch.setenv("DEFENSA311_ATTACHMENTS_MAX_FILES", "1")
    monkeypatch.setenv("DEFENSA311_ATTACHMENTS_MAX_MEGABYTES", "0.5")
    limits = HttpLimits(
        rate_limit_filing_burst=1,
        rate_limit_filing_per_minute=0.5,
        rate_limit_lookup_burst=2,
        rate_limit_lookup_per_minute=1,
    )
    async with open_page(tmp_path, monkeypatch, limits) as opened:
        yield opened


def _is_public_page(html: str) -> bool:
    return '<html lang="es">' in html and 'class="cabecera"' in html and "Presentar un caso" in html


async def test_a_browser_flooding_the_filing_page_gets_a_spanish_page_with_the_wait(
    page: Page,
) -> None:
    assert (await page.send(DENUNCIA)).status_code == 303
    hidden = await page.form()
    refused = await page.client.post("/presentar", data={**hidden, **DENUNCIA}, headers=BROWSER)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert refused.headers["Retry-After"] == "120"
    assert _is_public_page(refused.text)
    assert "<h1>Demasiadas solicitudes</h1>" in refused.text
    assert "Espere 2 minutos y vuelva a intentarlo" in refused.text
    assert "no se registró todavía" in refused.text
    assert 'href="/presentar"' in refused.text
    assert await page.cases() == 1


async def test_an_api_client_keeps_the_json_refusal(page: Page) -> None:
    assert (await page.send(DENUNCIA)).status_code == 303
    on_the_page = await page.client.post("/presentar", data=DENUNCIA, headers=API_CLIENT)
    assert on_the_page.status_code == 429
    assert "demasiadas solicitudes" in on_the_page.json()["detail"]
    on_the_api = await page.client.post("/api/v1/cases", json={}, headers=BROWSER)
    assert on_the_api.status_code == 429
    assert on_the_api.headers["content-type"] == "application/json"
    assert on_the_api.headers["Retry-After"]


async def test_the_tracking_pages_flood_gets_the_same_page(page: Page) -> None:
    statuses = []
    for _ in range(3):
        answer = await page.client.get("/seguimiento/2025-7K3-M9Q-XD2", headers=BROWSER)
        statuses.append(answer.status_code)
    assert statuses[-1] == 429
    assert _is_public_page(answer.text) and "Espere 1 minuto" in answer.text
    assert 'href="/seguimiento/2025-7K3-M9Q-XD2"' in answer.text
    assert 'aria-current="page">Seguimiento' in answer.text


async def test_a_browser_sending_too_much_gets_the_size_limits_in_spanish(page: Page) -> None:
    hidden = await page.form()
    big = ("foto.jpg", b"\xff\xd8\xff" + b"0" * (2 * 1024 * 1024), "image/jpeg")
    refused = await page.client.post(
        "/presentar",
        data={**hidden, **DENUNCIA},
        files=[("adjuntos", big)],
        headers=BROWSER,
    )
    assert refused.status_code == 413
    assert refused.headers["content-type"].startswith("text/html")
    assert _is_public_page(refused.text)
    assert "hasta 1 archivo de 0,5 MB" in refused.text
    assert "elija menos archivos o archivos más pequeños" in refused.text
    assert await page.cases() == 0
    # The tracking page's form with files: the same page, back to the case; JSON if asked.
    adding = "/seguimiento/2025-7K3-M9Q-XD2/add_information"
    for headers in (BROWSER, API_CLIENT):
        answer = await page.client.post(
            adding, data={"text": "más datos"}, files=[("adjuntos", big)], headers=headers
        )
        assert answer.status_code == 413
    assert "demasiado grande" in answer.json()["detail"]


async def test_a_form_without_files_sent_too_big_is_told_to_shorten_its_text(page: Page) -> None:
    refused = await page.client.post(
        "/seguimiento/2025-7K3-M9Q-XD2/reopen",
        data={"reason": "x" * (300 * 1024)},
        headers=BROWSER,
    )
    assert refused.status_code == 413
    assert _is_public_page(refused.text)
    assert "acorte el texto" in refused.text and "archivo" not in refused.text
