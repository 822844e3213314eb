"""The citizen's front door in a real browser (issue 19): Debian's Chromium driven by
Playwright files on ``/presentar`` at desktop and phone widths, reads the printable receipt,
and axe-core (from npm, in ``.cache/axe``) finds no accessibility violation on the public pages.
The transparency page fits a 390 px phone. Runs on the embedded default (SQLite, no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.intake.app import service as intake_service
from services.intake.http import create_app
from shared.cases import file_case, get_case
from shared.clock import FixedClock
from shared.contract import validate_submission
from shared.db.migrate import upgrade
from shared.runtime import Runtime
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support import ROOT, eventually, free_port, settings_for
from tests.unit.test_evidence import photo_with_exif

pytestmark = pytest.mark.browser

AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "artifacts" / "screenshots"
STAFF_TOKEN = "consola-staff-3c9d1a-7e42b8f05d61"
NOW = datetime(2025, 3, 11, 14, 30, tzinfo=UTC)
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
NPM_INSTALL_AXE = ["npm", "install", "--silent", "--no-audit", "--no-fund"]
NPM_INSTALL_AXE += ["--prefix", ".cache/axe", "axe-core"]
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}


def axe_source() -> str:
    """axe-core, installed by the test set-up (scripts/setup) or here if npm is at hand."""
    if not AXE.exists():
        subprocess.run(
            NPM_INSTALL_AXE,
            cwd=ROOT,
            check=False,
            capture_output=True,
            timeout=300,
        )
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run scripts/setup (needs npm)")
    return AXE.read_text(encoding="utf-8")


@dataclass
class Site:
    base: str
    clock: FixedClock
    runtime: Runtime
    browser: Browser
    axe: str

    async def context(self, shape: dict[str, Any]) -> BrowserContext:
        return await self.browser.new_context(base_url=self.base, locale="es-PA", **shape)

    async def accessible(self, page: Page) -> None:
        """No axe-core violation (WCAG 2.1 A and AA rules) on the page as it is now."""
        await page.evaluate(self.axe)
        result = await page.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: "
            "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        )
        violations = [
            (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"]
        ]
        assert violations == [], f"{page.url}: {violations}"
        assert len(result["passes"]) > 10  # axe really looked at the page

    async def no_horizontal_scroll(self, page: Page, width: int = 390) -> None:
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{page.url}: horizontal scroll on a phone ({scroll}px)"


@contextlib.asynccontextmanager
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    clock = FixedClock(NOW)
    settings = settings_for(
        "amqp://guest:guest@127.0.0.1:5672/",
        f"sqlite:///{tmp_path}/d.db",
        api_tokens=f"staff={STAFF_TOKEN}",
    )
    runtime = Runtime(settings, [intake_service()], clock=clock)
    await upgrade(runtime.deps.engine)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime.deps),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=20)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield Site(f"http://127.0.0.1:{port}", clock, runtime, browser, axe_source())
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await task
        await runtime.deps.engine.dispose()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def file_a_denuncia(site: Site, page: Page, name: str) -> str:
    """Errors first (no cédula, short text), then the corrected form; returns the code."""
    await page.goto("/presentar")
    await site.accessible(page)
    await page.get_by_label("Denuncia", exact=True).check()
    await page.get_by_label("Qué ocurrió").fill("Muy corto")
    await page.get_by_label("Nombre completo").fill("Rosa Elena Quintero")
    await page.get_by_label("Correo electrónico").fill("rosa.q@example.com")
    site.clock.advance(timedelta(minutes=2))
    await page.get_by_role("button", name="Enviar caso").click()

    summary = page.locator("#resumen-errores")
    await expect(summary).to_be_focused()
    await expect(summary).to_contain_text("indique su documento de identidad")
    document = page.get_by_label("Número del documento", exact=True)
    await expect(document).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Nombre completo")).to_have_value("Rosa Elena Quintero")
    await site.accessible(page)
    await shot(page, f"presentar-errores-{name}")
    await summary.get_by_role("link", name="Número del documento").click()
    await expect(document).to_be_in_viewport()

    await document.fill("8-765-4321")
    await page.get_by_label("Qué ocurrió").fill(
        "Un funcionario pidió dinero para agilizar un permiso de construcción en la oficina."
    )
    await page.get_by_label("Provincia o comarca").select_option("Panamá")
    await page.get_by_label("Distrito").select_option("San Miguelito")
    await page.get_by_label("Corregimiento").fill("Belisario Porras")
    await page.get_by_label("Dirección o punto de referencia").fill("Oficina de permisos")
    await page.get_by_label("Fotos o documentos (opcional)").set_input_files(
        files=[{"name": "oficina.jpg", "mimeType": "image/jpeg", "buffer": photo_with_exif()}]
    )
    site.clock.advance(timedelta(minutes=2))
    await page.get_by_role("button", name="Enviar caso").click()

    await expect(page.get_by_role("heading", name="Su caso fue recibido")).to_be_visible()
    code = (await page.locator(".codigo-grande .codigo:not(#clave)").inner_text()).strip()
    await expect(page.get_by_text("Plazo legal de respuesta")).to_be_visible()
    await site.accessible(page)
    await shot(page, f"presentar-recibo-{name}")
    # Printed, the receipt keeps the code and drops the navigation.
    await page.emulate_media(media="print")
    await expect(page.get_by_role("navigation", name="Secciones")).to_be_hidden()
    await expect(page.locator(".codigo-grande").first).to_be_visible()
    await page.emulate_media(media="screen")
    return code


async def thumbnail_in_the_console(site: Site, code: str) -> None:
    """Staff find the photo's thumbnail on the case's attachments, with no EXIF left."""
    staff = await (await site.context(DESKTOP)).new_page()
    await staff.goto("/consola")
    await staff.get_by_label("Token de acceso").fill(STAFF_TOKEN)
    await staff.get_by_role("button", name="Entrar").click()
    await staff.goto(f"/consola/casos/{code}")
    await staff.get_by_role("link", name="Ver los adjuntos del caso").click()
    thumbnail = staff.get_by_role("img", name="Foto adjunta: oficina.jpg")
    await expect(thumbnail).to_be_visible()
    # loaded, and upright: the photo was taken sideways and its EXIF said to turn it
    assert await thumbnail.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [213, 320]
    await site.accessible(staff)
    source = await thumbnail.get_attribute("src")
    assert source is not None
    for url in (source, source.removesuffix("/miniatura")):
        served = await staff.request.get(url)
        assert served.ok
        image = Image.open(io.BytesIO(await served.body()))
        assert dict(image.getexif()) == {}
        assert b"CamaraDeEjemplo" not in await served.body()
    await shot(staff, "consola-adjuntos")
    await staff.context.close()


async def test_a_citizen_files_with_a_photo_at_desktop_and_phone_widths_and_staff_see_it_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    async with site(tmp_path) as s:
        desktop = await (await s.context(DESKTOP)).new_page()
        await desktop.goto("/presentar")
        await desktop.keyboard.press("Tab")
        await expect(desktop.locator(":focus")).to_have_text("Saltar al contenido")
        first = await file_a_denuncia(s, desktop, "escritorio")
        await thumbnail_in_the_console(s, first)

        phone = await (await s.context(PHONE)).new_page()
        await phone.goto("/presentar")
        await s.no_horizontal_scroll(phone)
        second = await file_a_denuncia(s, phone, "movil")
        await s.no_horizontal_scroll(phone)
        await thumbnail_in_the_console(s, second)
        assert first != second

        # An anonymous sugerencia, on the phone, with nothing personal.
        await phone.goto("/presentar")
        await phone.get_by_label("Sugerencia", exact=True).check()
        await phone.get_by_label("Qué ocurrió").fill(
            "Pongan más bancas con sombra en el parque, para las personas mayores."
        )
        await phone.get_by_label("Presentar mi sugerencia de forma anónima").check()
        s.clock.advance(timedelta(minutes=1))
        await phone.get_by_role("button", name="Enviar caso").click()
        await expect(phone.get_by_role("heading", name="Su caso fue recibido")).to_be_visible()


async def test_a_juridical_person_files_through_its_legal_representative_on_a_phone(
    tmp_path: Path,
) -> None:
    """A company files a queja at phone width: the RUC's own fields, their errors in Spanish
    next to each (linked from the summary), then the receipt; axe finds nothing at each step."""
    async with site(tmp_path) as s:
        page = await (await s.context(PHONE)).new_page()
        await page.goto("/presentar")
        await s.accessible(page)
        await page.get_by_label("Queja", exact=True).check()
        await page.get_by_label("Qué ocurrió").fill(
            "El camión de la basura no pasa por el local de la empresa desde hace un mes."
        )
        await page.get_by_label("Nombre completo").fill("Constructora del Istmo, S.A.")
        # With the page's script, the juridical person's fields appear for a RUC only.
        juridical = page.locator("#grupo-juridica")
        await expect(juridical).to_be_hidden()
        await page.get_by_label("Tipo de documento", exact=True).select_option("ruc")
        await expect(juridical).to_be_visible()
        await page.get_by_label("Número del documento", exact=True).fill("155587169-2-2014")
        await page.get_by_label("Correo electrónico").fill("legal@istmo.example")
        s.clock.advance(timedelta(minutes=2))
        await page.get_by_role("button", name="Enviar caso").click()

        summary = page.locator("#resumen-errores")
        await expect(summary).to_be_focused()
        await expect(summary).to_contain_text("indique el dígito verificador (DV) del RUC")
        await expect(summary).to_contain_text("por medio de su representante legal")
        dv = page.get_by_label("DV del RUC (solo para personas jurídicas)")
        await expect(dv).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#grupo-juridica")).to_have_attribute(
            "aria-describedby", "error-citizen-representative"
        )
        await s.no_horizontal_scroll(page)
        await s.accessible(page)
        await shot(page, "presentar-juridica-errores-movil")
        await summary.get_by_role("link", name="DV del RUC").click()
        await expect(dv).to_be_in_viewport()

        await dv.fill("09")
        await page.get_by_label("Nombre del representante legal").fill("Maribel Quintero")
        await page.get_by_label("Tipo de documento del representante legal").select_option(
            "pasaporte"
        )
        await page.get_by_label("Número del documento del representante legal").fill("PA1234567")
        s.clock.advance(timedelta(minutes=1))
        await page.get_by_role("button", name="Enviar caso").click()
        await expect(page.get_by_role("heading", name="Su caso fue recibido")).to_be_visible()
        await s.no_horizontal_scroll(page)
        await s.accessible(page)
        code = (await page.locator(".codigo-grande .codigo:not(#clave)").inner_text()).strip()
        async with s.runtime.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code)
        assert case.citizen is not None
        assert (case.citizen["id_type"], case.citizen["ruc_dv"]) == ("ruc", "09")
        assert case.citizen["representative"] == {
            "full_name": "Maribel Quintero",
            "id_type": "pasaporte",
            "id_number": "PA1234567",
        }


async def test_the_filing_page_works_without_javascript(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        context = await s.browser.new_context(
            base_url=s.base, locale="es-PA", java_script_enabled=False, **PHONE
        )
        page = await context.new_page()
        await page.goto("/presentar")
        await expect(page.get_by_role("button", name="Usar mi ubicación actual")).to_be_hidden()
        await expect(page.get_by_role("group", name="Solo para personas jurídicas")).to_be_visible()
        await page.get_by_label("Queja", exact=True).check()
        await page.get_by_label("Qué ocurrió").fill(
            "La basura no se recoge en mi calle desde hace tres semanas."
        )
        await page.get_by_label("Nombre completo").fill("Pedro Pérez")
        await page.get_by_label("Número del documento", exact=True).fill("8-222-3333")
        await page.get_by_label("Teléfono").fill("6234-5678")
        s.clock.advance(timedelta(minutes=1))
        await page.get_by_role("button", name="Enviar caso").click()
        await expect(page.get_by_role("heading", name="Su caso fue recibido")).to_be_visible()


async def test_the_public_pages_fit_a_phone_and_pass_axe(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        deps = s.runtime.deps
        for kind, channel in (("denuncia", "web"), ("queja", "presencial"), ("queja", "311")):
            submission = validate_submission(
                {
                    "kind": kind,
                    "description": "Caso de ejemplo para las cifras públicas.",
                    "citizen": {"full_name": "Persona de Ejemplo", "id_number": "8-111-2222"},
                    "notify": {"email": "ejemplo@example.com"},
                }
            )
            async with deps.uow() as uow:
                case, _ = await file_case(
                    uow, deps.cases, submission, channel=channel, actor="seed", now=NOW
                )
            code = case.tracking_code
        page = await (await s.context(PHONE)).new_page()
        for path in ("/transparencia", "/seguimiento", f"/seguimiento/{code}", "/consola"):
            await page.goto(path)
            await s.no_horizontal_scroll(page)
            await s.accessible(page)
        await page.goto("/transparencia")
        await shot(page, "transparencia-movil")
        smallest = await page.evaluate(
            """() => Math.min(...Array.from(document.querySelectorAll('svg.grafico text'))
                .map(t => t.ownerSVGElement.getScreenCTM().a
                          * parseFloat(getComputedStyle(t).fontSize)))"""
        )
        assert smallest >= 12, f"chart text drawn at {smallest:.1f} px"
        assert await page.locator('svg.grafico rect[width="0"]').count() == 0
