"""The citizen follows up in a real browser (issue 20), at desktop and 390 px phone widths:
the receipt shows the clave; with it the tracking page adds information (with a photo),
answers the survey once the case is closed and says "no está resuelto"; a wrong clave is named
next to its field; the link of the receipt e-mail gives a new clave once.
axe-core finds no violation on the pages. On the embedded default (SQLite, no broker)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from shared.cases import get_case, perform
from shared.domain.key_link import binding_of
from shared.evidence import of_case
from tests.e2e.test_filing_browser import DESKTOP, PHONE, Site, shot, site
from tests.unit.test_evidence import photo_with_exif

pytestmark = pytest.mark.browser


async def file_a_sugerencia(s: Site, page: Page) -> tuple[str, str]:
    await page.goto("/presentar")
    await page.get_by_label("Sugerencia", exact=True).check()
    await page.get_by_label("Qué ocurrió").fill(
        "Pongan bancas con sombra y bebederos en el parque de Bella Vista, por favor."
    )
    await page.get_by_label("Presentar mi sugerencia de forma anónima", exact=False).check()
    s.clock.advance(timedelta(minutes=2))
    await page.get_by_role("button", name="Enviar caso").click()
    await expect(page.get_by_role("heading", name="Su caso fue recibido")).to_be_visible()
    code = (await page.locator(".codigo-grande .codigo").first.inner_text()).strip()
    clave = (await page.locator("#clave").inner_text()).strip()
    await s.accessible(page)
    return code, clave


async def staff_take(s: Site, code: str, action: str, body: dict[str, Any]) -> None:
    deps = s.runtime.deps
    async with deps.uow() as uow:
        case = await get_case(uow, tracking_code=code, lock=True)
        await perform(uow, deps.cases, case, action, body, actor="staff", now=s.clock.now())


async def follow_up(s: Site, page: Page, name: str, width: int | None) -> None:
    code, clave = await file_a_sugerencia(s, page)
    await page.goto(f"/seguimiento/{code}")

    info = page.locator("#informacion")
    await info.get_by_label("Clave del caso").fill("AAAA-BBBB-CCCC")
    await info.get_by_label("Información adicional").fill("También falta iluminación de noche.")
    await info.get_by_role("button", name="Añadir información").click()
    await expect(page.locator("#error-clave-add_information")).to_contain_text(
        "no corresponde a este caso"
    )
    await expect(page.get_by_label("Información adicional")).to_have_value(
        "También falta iluminación de noche."
    )
    await s.accessible(page)
    await page.locator("#informacion").get_by_label("Clave del caso").fill(clave.lower())
    await page.get_by_label("Fotos o documentos (opcional)").set_input_files(
        files=[{"name": "parque.jpg", "mimeType": "image/jpeg", "buffer": photo_with_exif()}]
    )
    await page.locator("#informacion").get_by_role("button", name="Añadir información").click()
    await expect(page.get_by_role("status")).to_contain_text("Recibimos su información")
    async with s.runtime.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        (photo,) = await of_case(uow, case.id)
    assert (photo.source, photo.public) == ("citizen", False)  # staff decide what is shown
    await expect(page.get_by_text("Información añadida por el ciudadano")).to_be_visible()
    await s.accessible(page)
    await shot(page, f"seguimiento-informacion-{name}")

    for action, body in (
        ("classify", {"kind": "sugerencia"}),
        ("add_to_agenda", {}),
        ("record_meeting_outcome", {"decision": "accepted", "meeting_date": date(2025, 3, 11)}),
        ("close", {}),
    ):
        await staff_take(s, code, action, body)
    await page.goto(f"/seguimiento/{code}")
    await expect(page.locator("#informacion")).to_have_count(0)  # closed: nothing to add

    survey = page.locator("#encuesta")
    await survey.get_by_label("Clave del caso").fill(clave)
    await survey.get_by_label("4 — Buena").check()
    await survey.get_by_label("Comentario (opcional)").fill("Me respondieron a tiempo.")
    await s.accessible(page)
    if width is not None:
        await s.no_horizontal_scroll(page, width)
    await shot(page, f"seguimiento-cerrado-{name}")
    await survey.get_by_role("button", name="Enviar encuesta").click()
    await expect(page.get_by_role("status")).to_contain_text("Gracias por responder la encuesta")
    await expect(page.get_by_text("ya fue respondida")).to_be_visible()
    await expect(page.locator("#encuesta")).to_have_count(0)

    reopen = page.locator("#reabrir")
    await reopen.get_by_label("Clave del caso").fill(clave)
    await reopen.get_by_label("¿Qué falta por resolver? (opcional)").fill("No pusieron nada.")
    await reopen.get_by_role("button", name="No está resuelto").click()
    await expect(page.get_by_role("status")).to_contain_text("Su caso fue reabierto")
    await expect(page.get_by_role("heading", name="Estado: En revisión")).to_be_visible()
    await expect(page.locator("#informacion")).to_be_visible()  # open again
    await s.accessible(page)
    if width is not None:
        await s.no_horizontal_scroll(page, width)
    await shot(page, f"seguimiento-reabierto-{name}")


async def test_a_citizen_adds_information_answers_the_survey_and_reopens_at_both_widths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    async with site(tmp_path) as s:
        desktop = await (await s.context(DESKTOP)).new_page()
        await follow_up(s, desktop, "escritorio", None)
        phone = await (await s.context(PHONE)).new_page()
        await follow_up(s, phone, "telefono", 390)


async def new_clave_from_the_link(s: Site, page: Page, name: str, width: int | None) -> None:
    code, old_clave = await file_a_sugerencia(s, page)
    links = s.runtime.deps.key_links
    assert links is not None  # the embedded default keeps its own secret
    async with s.runtime.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
    link = links.url(s.base, code, binding_of(case.clave_hash), links.expiry(s.clock.now()))

    await page.goto(link)
    await expect(page.get_by_role("heading", name="¿Qué es la clave?")).to_be_visible()
    await s.accessible(page)
    if width is not None:
        await s.no_horizontal_scroll(page, width)
    await page.get_by_role("button", name="Obtener mi clave").click()
    clave = (await page.locator("#clave").inner_text()).strip()
    assert clave and clave != old_clave
    await s.accessible(page)
    await shot(page, f"clave-enlace-{name}")

    await page.goto(link)  # the link served once
    await expect(page.get_by_role("alert")).to_be_visible()
    await s.accessible(page)

    await page.goto(f"/seguimiento/{code}")
    info = page.locator("#informacion")
    await info.get_by_label("Clave del caso").fill(clave)
    await info.get_by_label("Información adicional").fill("Las bancas serían de concreto.")
    await info.get_by_role("button", name="Añadir información").click()
    await expect(page.get_by_role("status")).to_contain_text("Recibimos su información")


async def test_the_e_mailed_link_gives_a_new_clave_once_at_both_widths(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        desktop = await (await s.context(DESKTOP)).new_page()
        await new_clave_from_the_link(s, desktop, "escritorio", None)
        phone = await (await s.context(PHONE)).new_page()
        await new_clave_from_the_link(s, phone, "telefono", 390)
