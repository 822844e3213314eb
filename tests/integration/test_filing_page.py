"""The public filing page ``/presentar`` (issue 19, point 1), over HTTP without a browser:
the same validation as the API, errors next to their fields, the anti-abuse checks, the receipt.
On the embedded default (SQLite); nothing is published, so no broker is needed."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from services.intake.app import service as intake_service
from services.intake.http import create_app
from services.intake.observability import HttpLimits
from services.intake.web.filing import corregimiento_names, divisions
from services.intake.web.pages import format_date
from shared.cases import get_case
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.db.models import CaseRow
from shared.runtime import Runtime
from tests.support import settings_for
from tests.unit.test_evidence import photo_with_exif

STAFF = "t-staff-5f1e"
OBRAS = "t-obras-9a2c"
START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)  # Monday 09:00 in Panama


@dataclass
class Page:
    client: httpx.AsyncClient
    clock: FixedClock
    runtime: Runtime

    async def form(self) -> dict[str, str]:
        """The page's hidden fields, as a browser would send them back."""
        page = await self.client.get("/presentar")
        assert page.status_code == 200
        return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))

    async def send(
        self,
        fields: dict[str, str],
        *,
        wait: float = 30,
        files: list[tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        hidden = await self.form()
        self.clock.advance(timedelta(seconds=wait))
        uploads = [("adjuntos", item) for item in files or []]
        return await self.client.post(
            "/presentar", data={**hidden, **fields}, files=uploads or None
        )

    async def cases(self) -> int:
        async with self.runtime.deps.uow() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(CaseRow)) or 0)


@contextlib.asynccontextmanager
async def open_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: HttpLimits
) -> AsyncIterator[Page]:
    """The intake app on SQLite with a local attachment folder, a staff and an obras token."""
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    clock = FixedClock(START)
    settings = settings_for(
        "amqp://guest:guest@127.0.0.1:5672/",
        f"sqlite:///{tmp_path}/d.db",
        api_tokens=f"staff={STAFF},department:obras={OBRAS}",
    )
    runtime = Runtime(settings, [intake_service()], clock=clock)
    await upgrade(runtime.deps.engine)
    transport = httpx.ASGITransport(app=create_app(runtime.deps, limits=limits))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield Page(client, clock, runtime)
    await runtime.deps.engine.dispose()


@pytest.fixture
async def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Page]:
    limits = HttpLimits(rate_limit_filing_burst=6, rate_limit_filing_per_minute=0.001)
    async with open_page(tmp_path, monkeypatch, limits) as opened:
        yield opened


DENUNCIA = {
    "kind": "denuncia",
    "category": "Calles y huecos",
    "description": "Hay un hueco enorme frente a la escuela de la Calle 50 desde hace meses.",
    "location.province": "Panamá",
    "location.district": "Panamá",
    "location.corregimiento": "Bella Vista",
    "location.address": "Calle 50, frente a la escuela",
    "citizen.full_name": "Maribel Quintero",
    "citizen.id_number": "8-123-4567",
    "notify.email": "maribel@example.com",
}


def errors_on(html: str) -> dict[str, str]:
    """Each field's error as shown next to it (``id="error-<field>"``)."""
    found = re.findall(r'<p class="error-campo" id="error-([^"]+)">([^<]*)</p>', html)
    return {name: unescape(text) for name, text in found}


async def test_a_citizen_files_a_denuncia_and_gets_a_printable_receipt(page: Page) -> None:
    filed = await page.send(DENUNCIA)
    assert filed.status_code == 303
    receipt_url = filed.headers["location"]
    code = receipt_url.rsplit("/", 1)[-1]
    receipt = await page.client.get(receipt_url)
    assert receipt.status_code == 200
    assert code in receipt.text
    assert "Plazo legal de respuesta" in receipt.text
    assert "Maribel" not in receipt.text and "8-123-4567" not in receipt.text
    async with page.runtime.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
    assert (case.channel, case.kind, case.category) == ("web", "denuncia", "Calles y huecos")
    assert case.citizen == {
        "full_name": "Maribel Quintero",
        "id_type": "cedula",
        "id_number": "8-123-4567",
    }
    assert case.location == {
        "province": "Panamá",
        "district": "Panamá",
        "corregimiento": "Bella Vista",
        "address": "Calle 50, frente a la escuela",
    }
    assert f"a más tardar el {format_date(case.due_at)}" in receipt.text


async def test_the_page_shows_the_apis_own_errors_next_to_each_field(page: Page) -> None:
    body: dict[str, Any] = {
        "channel": "web",
        "kind": "denuncia",
        "description": "corto",
        "citizen": {"id_number": "12345"},
        "notify": {"email": "no-es-correo"},
    }
    api = await page.client.post("/api/v1/cases", json=body)
    assert api.status_code == 422
    expected = {e["field"]: e["message"] for e in api.json()["detail"]}
    shown = await page.send(
        {
            "kind": "denuncia",
            "description": "corto",
            "citizen.id_number": "12345",
            "notify.email": "no-es-correo",
        }
    )
    assert shown.status_code == 422
    errors = errors_on(shown.text)
    for field, message in expected.items():
        assert errors[field.replace(".", "-")] == message
    # The summary links to each field, and the field points at its error.
    assert 'href="#campo-citizen-id_number"' in shown.text
    assert 'aria-describedby="error-citizen-id_number"' in shown.text
    assert 'id="resumen-errores"' in shown.text
    # What was typed comes back.
    assert 'value="12345"' in shown.text
    assert await page.cases() == 0


async def test_an_anonymous_sugerencia_needs_no_name_and_no_address(page: Page) -> None:
    filed = await page.send(
        {
            "kind": "sugerencia",
            "description": "Pongan más bancas con sombra en el parque de Bella Vista.",
            "anonymous": "si",
        }
    )
    assert filed.status_code == 303
    refused = await page.send(
        {"kind": "queja", "description": "La basura no se recoge hace semanas.", "anonymous": "si"}
    )
    assert refused.status_code == 422
    assert "solo una sugerencia" in errors_on(refused.text)["anonymous"]


async def test_a_form_sent_faster_than_a_person_can_fill_it_is_not_filed(page: Page) -> None:
    too_fast = await page.send(DENUNCIA, wait=1)
    assert too_fast.status_code == 422
    assert "demasiado rápido" in too_fast.text
    assert 'value="maribel@example.com"' in too_fast.text  # nothing to type again
    assert await page.cases() == 0


async def test_a_form_without_a_valid_stamp_is_not_filed(page: Page) -> None:
    forged = await page.client.post("/presentar", data={**DENUNCIA, "emitido": "1741010400.00"})
    assert forged.status_code == 422
    assert "caducó" in forged.text
    stale = await page.send(DENUNCIA, wait=13 * 3600)
    assert stale.status_code == 422
    assert await page.cases() == 0


async def test_a_filled_honeypot_files_nothing(page: Page) -> None:
    trapped = await page.send({**DENUNCIA, "sitio_web": "http://spam.example"})
    assert trapped.status_code == 422
    assert await page.cases() == 0


async def test_the_filing_page_shares_the_public_filing_rate_limit(page: Page) -> None:
    statuses = [(await page.send(DENUNCIA)).status_code for _ in range(7)]
    assert statuses[:6] == [303] * 6
    assert statuses[6] == 429


async def test_only_the_page_script_may_run_and_it_is_not_needed(page: Page) -> None:
    form = await page.client.get("/presentar")
    assert "script-src 'self'" in form.headers["Content-Security-Policy"]
    assert (
        "script-src 'none'"
        in (await page.client.get("/seguimiento")).headers["Content-Security-Policy"]
    )
    # Without the script the position offer stays hidden; everything else is plain HTML.
    assert '<div class="posicion" hidden>' in form.text


def test_the_shipped_list_has_every_province_and_comarca_and_their_districts() -> None:
    provinces = {p.name: p for p in divisions()}
    assert len(provinces) == 14  # 10 provinces and 4 comarcas with provincial rank
    assert sum(len(p.districts) for p in provinces.values()) >= 81
    capital = {d.name: d for d in provinces["Panamá"].districts}["Panamá"]
    assert "Bella Vista" in capital.corregimientos


async def test_the_page_suggests_the_whole_country_s_corregimientos_once_each(page: Page) -> None:
    form = await page.client.get("/presentar")
    suggestions = form.text.split('<datalist id="corregimientos">')[1].split("</datalist>")[0]
    names = re.findall(r'<option value="([^"]*)"></option>', suggestions)
    assert len(names) == len(set(names)) == len(corregimiento_names())
    assert {"Bella Vista", "Tortí", "Cucunatí", "San José"} <= {unescape(n) for n in names}
    # Plain HTML: a text field with suggestions, so any corregimiento can still be typed.
    assert 'name="location.corregimiento" type="text" list="corregimientos"' in form.text


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    """Sign in on the console; the CSRF token of the session."""
    assert (await client.post("/consola/entrar", data={"token": token})).status_code == 303
    page = await client.get("/consola")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def test_a_photo_is_filed_without_exif_and_only_staff_see_it_until_they_publish_it(
    page: Page, tmp_path: Path
) -> None:
    photo = photo_with_exif()
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    filed = await page.send(
        DENUNCIA,
        files=[("hueco.jpg", photo, "image/jpeg"), ("constancia.pdf", pdf, "application/pdf")],
    )
    assert filed.status_code == 303, filed.text
    code = filed.headers["location"].rsplit("/", 1)[-1]
    stored = sorted(p.name for p in (tmp_path / "adjuntos").rglob("*") if p.is_file())
    assert len(stored) == 3 and sum(n.endswith("-miniatura.jpg") for n in stored) == 1

    # Nobody outside sees it: not the public page, not the console signed out.
    tracking = await page.client.get(f"/seguimiento/{code}")
    assert "miniatura" not in tracking.text
    console = await page.client.get(f"/consola/casos/{code}/adjuntos")
    assert console.status_code == 303

    csrf = await sign_in(page.client, STAFF)
    listing = await page.client.get(f"/consola/casos/{code}/adjuntos")
    assert "hueco.jpg" in listing.text and "constancia.pdf" in listing.text
    thumbnail_url = re.search(r'<img class="miniatura" src="([^"]+)"', listing.text)
    assert thumbnail_url is not None
    thumbnail = await page.client.get(thumbnail_url.group(1))
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert dict(Image.open(io.BytesIO(thumbnail.content)).getexif()) == {}
    full_url = thumbnail_url.group(1).removesuffix("/miniatura")
    full = await page.client.get(full_url)
    assert b"CamaraDeEjemplo" not in full.content
    assert dict(Image.open(io.BytesIO(full.content)).getexif()) == {}

    # A department sees only the cases remitted to it.
    other = httpx.AsyncClient(transport=page.client._transport, base_url="http://intake")
    async with other:
        await sign_in(other, OBRAS)
        assert (await other.get(full_url)).status_code == 404

    # Staff publish the photo: the tracking page shows it; the PDF stays private.
    attachment_id = full_url.rsplit("/", 1)[-1]
    published = await page.client.post(
        f"/consola/adjuntos/{attachment_id}/publico", data={"csrf": csrf, "publico": "si"}
    )
    assert published.status_code == 303
    tracking = await page.client.get(f"/seguimiento/{code}")
    assert f"/seguimiento/{code}/adjuntos/{attachment_id}?miniatura=true" in tracking.text
    assert "Documento" not in tracking.text
    public = await page.client.get(f"/seguimiento/{code}/adjuntos/{attachment_id}")
    assert public.status_code == 200
    assert (
        await page.client.get(f"/seguimiento/2025-7K3-M9Q-XD2/adjuntos/{attachment_id}")
    ).status_code == 404


async def test_a_file_that_is_not_a_photo_or_pdf_is_refused_and_nothing_is_stored(
    page: Page, tmp_path: Path
) -> None:
    refused = await page.send(
        DENUNCIA,
        files=[
            ("foto.jpg", b"MZ\x90\x00 not a photo", "image/jpeg"),
            ("ok.jpg", photo_with_exif(), "image/jpeg"),
        ],
    )
    assert refused.status_code == 422
    assert "tipo de archivo no admitido" in errors_on(refused.text)["attachments"]
    assert 'href="#campo-adjuntos"' in refused.text
    assert await page.cases() == 0
    assert not any(p.is_file() for p in (tmp_path / "adjuntos").rglob("*"))


async def test_a_local_store_link_serves_until_it_expires(page: Page) -> None:
    store = page.client._transport.app.state.attachment_store  # type: ignore[attr-defined]
    await store.put("adjuntos/x.pdf", b"%PDF-1.4 x", "application/pdf")
    link = await store.link("adjuntos/x.pdf", timedelta(minutes=5), page.clock.now())
    path = link.split("://", 1)[1].split("/", 1)[1]
    served = await page.client.get("/" + path)
    assert served.status_code == 200 and served.content == b"%PDF-1.4 x"
    page.clock.advance(timedelta(minutes=6))
    assert (await page.client.get("/" + path)).status_code == 403
