"""The whole path in a real browser: Debian's Chromium driven by Playwright.

Staff file a presencial case through the console form (a validation error first), remit it
from the triage queue, the department answers it, and the citizen sees it resolved on the
tracking page. Every page is saved as a screenshot in ``artifacts/screenshots/``; two of them
are copied to ``docs/screenshots/`` for docs/web.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect

from services.intake import app as intake_app
from services.intake.http import create_app
from services.router import app as router_app
from shared.cases import file_case, get_case, perform
from shared.clock import FixedClock
from shared.contract import validate_submission
from shared.runtime import Deps
from tests.support import ROOT, eventually, free_port, running, settings_for

pytestmark = [pytest.mark.browser, pytest.mark.connected]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
STAFF_TOKEN = "consola-staff-7f3a9c"
OBRAS_TOKEN = "consola-obras-51d2e8"
# Tuesday 11 March 2025, 09:30 in Panama.
NOW = datetime(2025, 3, 11, 14, 30, tzinfo=UTC)
# No routing rule matches this text: the router leaves the case in triage for staff.
DESCRIPTION = (
    "En la calle 50 frente al número 24 hay una situación irregular que nadie atiende "
    "desde hace semanas."
)


@contextlib.asynccontextmanager
async def serving(deps: Deps) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(deps), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def seed_history(deps: Deps) -> None:
    """Earlier months' cases, so the transparency page has figures to show."""
    plan = [
        # (days before NOW, kind, channel, path, business-ish days to resolve)
        (95, "denuncia", "311", ("remit", "aseo"), 12),
        (90, "queja", "presencial", ("inspect", None), 6),
        (80, "denuncia", "311", ("remit", "aseo"), 20),
        (70, "sugerencia", "web", ("agenda", None), 25),
        (60, "denuncia", "presencial", ("remit", "vias"), 9),
        (50, "queja", "311", ("inspect", None), 3),
        (40, "denuncia", "311", ("remit", "aseo"), 35),
        (35, "queja", "web", ("inspect", None), None),
        (25, "denuncia", "311", ("remit", "vias"), None),
    ]
    for ago, kind, channel, (route, department), took in plan:
        filed = NOW - timedelta(days=ago)
        submission = validate_submission(
            {
                "kind": kind,
                "description": "Caso de ejemplo para las cifras públicas del Departamento.",
                "citizen": {"full_name": "Persona de Ejemplo", "id_number": "8-111-2222"},
                "notify": {"email": "ejemplo@example.com"},
            }
        )
        async with deps.uow() as uow:
            case, _ = await file_case(
                uow, deps.cases, submission, channel=channel, actor="seed", now=filed
            )
            await perform(
                uow, deps.cases, case, "classify", {"kind": kind}, actor="seed", now=filed
            )
            action, params = {
                "remit": ("remit", {"department": department}),
                "inspect": ("start_inspection", {}),
                "agenda": ("add_to_agenda", {}),
            }[route]
            await perform(uow, deps.cases, case, action, params, actor="seed", now=filed)
            if took is not None:
                done = filed + timedelta(days=took)
                final, final_params = {
                    "remit": ("respond", {"response": "Atendido por la dependencia."}),
                    "inspect": ("record_findings", {"findings": "Inspección realizada."}),
                    "agenda": (
                        "record_meeting_outcome",
                        {"decision": "accepted", "meeting_date": done.date().isoformat()},
                    ),
                }[route]
                await perform(uow, deps.cases, case, final, final_params, actor="seed", now=done)


async def shot(page: Page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(browser: Browser, base: str, token: str) -> Page:
    context = await browser.new_context(
        base_url=base, locale="es-PA", viewport={"width": 1280, "height": 900}
    )
    page = await context.new_page()
    await page.goto("/consola")
    await page.get_by_label("Token de acceso").fill(token)
    await page.get_by_role("button", name="Entrar").click()
    return page


async def test_file_remit_answer_and_follow_a_case_in_chromium(amqp_url: str, pg_url: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    settings = settings_for(
        amqp_url, pg_url, api_tokens=f"staff={STAFF_TOKEN},department:obras={OBRAS_TOKEN}"
    )
    clock = FixedClock(NOW)
    async with (
        running(settings, [intake_app.service(), router_app.service()], clock) as runtime,
        serving(runtime.deps) as base,
        async_playwright() as pw,
    ):
        deps = runtime.deps
        await seed_history(deps)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # --- staff: sign in, keyboard reaches the skip link first
            anonymous = await browser.new_page(base_url=base)
            await anonymous.goto("/consola")
            await anonymous.keyboard.press("Tab")
            await expect(anonymous.locator(":focus")).to_have_text("Saltar al contenido")
            await shot(anonymous, "01-consola-entrar")

            staff = await sign_in(browser, base, STAFF_TOKEN)
            await expect(staff.get_by_role("heading", name="Bandeja de casos")).to_be_visible()

            # --- file a presencial case; the first try misses the cédula
            await staff.get_by_role("link", name="Registrar caso presencial").click()
            await staff.get_by_label("Tipo", exact=True).select_option("denuncia")
            await staff.get_by_label("Descripción de los hechos").fill(DESCRIPTION)
            await staff.get_by_label("Nombre completo").fill("Rosa Elena Quintero")
            await staff.get_by_label("Teléfono", exact=True).fill("6234-5678")
            await staff.get_by_label("Correo para notificaciones").fill("rosa.q@example.com")
            await staff.get_by_role("button", name="Registrar caso").click()
            error = staff.locator("#error-citizen-id_number")
            await expect(error).to_contain_text("identifíquese debidamente")
            await expect(staff.get_by_label("Número del documento", exact=True)).to_have_attribute(
                "aria-invalid", "true"
            )
            await shot(staff, "02-consola-nuevo-errores")
            await staff.get_by_label("Número del documento", exact=True).fill("8-765-4321")
            await staff.get_by_role("button", name="Registrar caso").click()
            notice = staff.get_by_role("status")
            await expect(notice).to_contain_text("Entregue al ciudadano su código de seguimiento")
            code = (await staff.locator("h1 .codigo").inner_text()).strip()

            # --- the router finds no rule: the case waits in triage
            async def in_triage() -> bool:
                async with deps.uow() as uow:
                    return (await get_case(uow, tracking_code=code)).state == "classified"

            await eventually(in_triage, timeout=20)
            await staff.goto("/consola")
            triage = staff.locator(
                "section", has=staff.get_by_role("heading", name="Cola de triaje")
            )
            await expect(triage.get_by_role("link", name=code)).to_be_visible()
            await shot(staff, "03-consola-bandeja")

            # --- search by code, remit to Obras from the case page
            await staff.get_by_label("Buscar casos").fill(code.lower())
            await staff.get_by_role("button", name="Buscar").click()
            await expect(staff.get_by_role("heading", name=f"Caso {code}")).to_be_visible()
            # classify, inspect, remit, decline, forward, join, and a new clave for the citizen
            await expect(staff.locator("form.accion")).to_have_count(7)
            await staff.get_by_label("Dependencia").select_option("obras")
            await staff.get_by_role("button", name="Remitir").click()
            await expect(staff.locator(".estado-actual")).to_contain_text(
                "Remitido a la dependencia responsable"
            )
            await expect(staff.locator(".relojes")).to_contain_text("Plazo de la dependencia")
            await shot(staff, "04-consola-caso")

            # --- the department answers
            obras = await sign_in(browser, base, OBRAS_TOKEN)
            await expect(obras.get_by_role("heading", name="Casos remitidos a")).to_be_visible()
            await shot(obras, "05-departamento-bandeja")
            await obras.get_by_role("link", name=code).click()
            await expect(obras.locator("form.accion")).to_have_count(2)  # respond, return
            await obras.get_by_label("Respuesta de la dependencia").fill(
                "Se inspeccionó el lugar y se ordenó corregir la situación el 12 de marzo."
            )
            await shot(obras, "06-departamento-caso")
            await obras.get_by_role("button", name="Enviar respuesta").click()
            await expect(obras.get_by_role("status")).to_contain_text("quedó resuelto")

            # --- the citizen follows it, on a phone
            phone = await browser.new_context(
                base_url=base,
                locale="es-PA",
                viewport={"width": 390, "height": 844},
                is_mobile=True,
                has_touch=True,
                device_scale_factor=2,
            )
            citizen = await phone.new_page()
            await citizen.goto("/seguimiento")
            await citizen.get_by_label("Código de seguimiento").fill(code.replace("-", " "))
            await citizen.get_by_role("button", name="Consultar").click()
            await expect(citizen.get_by_role("heading", name="Estado: Resuelto")).to_be_visible()
            await expect(citizen.locator(".linea-tiempo")).to_contain_text(
                "Respuesta de la dependencia registrada"
            )
            body = await citizen.locator("body").inner_text()
            for personal in ("Rosa", "Quintero", "8-765-4321", "6234", "rosa.q", "calle 50"):
                assert personal not in body
            width = await citizen.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"horizontal scroll on a phone: {width}px"
            await shot(citizen, "07-seguimiento-movil")

            # --- staff see the whole timeline; the public sees the figures
            await staff.goto(f"/consola/casos/{code}")
            await expect(staff.locator(".estado-actual")).to_contain_text("Resuelto")
            # close, the two recursos filed at the desk, a new clave
            await expect(staff.locator("form.accion")).to_have_count(4)
            await shot(staff, "08-consola-caso-resuelto")
            await staff.goto("/transparencia")
            await expect(staff.locator("svg.grafico")).to_have_count(4)
            await expect(staff.get_by_text("muestra pequeña").first).to_be_visible()
            await shot(staff, "09-transparencia")
        finally:
            await browser.close()

    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHOTS / "08-consola-caso-resuelto.png", DOCS_SHOTS / "consola-caso.png")
    shutil.copy(SHOTS / "07-seguimiento-movil.png", DOCS_SHOTS / "seguimiento-movil.png")
