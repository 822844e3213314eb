"""The citizen files a recurso against the decision in a real browser, at desktop and 390 px
phone widths: with the clave, the tracking page takes a reconsideración (a wrong clave is named
next to its field), shows the recurso pending with the date it must be decided by, and once the
office confirms the decision offers the apelación alone. axe-core finds no violation. On the
embedded default (SQLite, no broker)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from shared.cases import get_case
from tests.e2e.test_filing_browser import DESKTOP, PHONE, Site, shot, site
from tests.e2e.test_follow_up_browser import file_a_sugerencia, staff_take

pytestmark = pytest.mark.browser


async def recurso(s: Site, page: Page, name: str, width: int | None) -> None:
    code, clave = await file_a_sugerencia(s, page)
    for action, body in (
        ("classify", {"kind": "sugerencia"}),
        ("add_to_agenda", {}),
        ("record_meeting_outcome", {"decision": "rejected", "meeting_date": date(2025, 3, 11)}),
    ):
        await staff_take(s, code, action, body)
    await page.goto(f"/seguimiento/{code}")
    await expect(page.get_by_role("heading", name="Recurrir la decisión")).to_be_visible()

    form = page.locator('form[action$="/file_reconsideration"]')
    await form.get_by_label("Clave del caso").fill("AAAA-BBBB-CCCC")
    grounds = "La reunión no consideró las firmas de los vecinos que entregué."
    await form.get_by_label("Fundamentos", exact=False).fill(grounds)
    await form.get_by_role("button", name="Presentar reconsideración").click()
    await expect(page.locator("#error-clave-file_reconsideration")).to_contain_text(
        "no corresponde a este caso"
    )
    form = page.locator('form[action$="/file_reconsideration"]')
    await expect(form.get_by_label("Fundamentos", exact=False)).to_have_value(grounds)
    await s.accessible(page)
    if width is not None:
        await s.no_horizontal_scroll(page, width)
    await shot(page, f"seguimiento-recurso-{name}")

    await form.get_by_label("Clave del caso").fill(clave)
    await form.get_by_role("button", name="Presentar reconsideración").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Recibimos su recurso de reconsideración"
    )
    await expect(page.get_by_role("heading", name="Estado: En reconsideración")).to_be_visible()
    await expect(page.get_by_text("Fecha límite para decidir el recurso")).to_be_visible()
    await expect(page.get_by_text("Recurso de reconsideración presentado")).to_be_visible()
    await expect(page.locator("#recurso")).to_have_count(0)  # one recurso pending at a time
    assert grounds not in await page.content()  # the public page shows the step, not the text
    async with s.runtime.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).state == "reconsideration"
    await s.accessible(page)
    if width is not None:
        await s.no_horizontal_scroll(page, width)
    await shot(page, f"seguimiento-reconsideracion-{name}")

    await staff_take(
        s, code, "decide_reconsideration", {"outcome": "confirm", "reasoning": "Se consideraron."}
    )
    await page.goto(f"/seguimiento/{code}")
    await expect(page.get_by_role("heading", name="Estado: Resuelto")).to_be_visible()
    await expect(page.get_by_role("button", name="Presentar apelación")).to_be_visible()
    await expect(page.get_by_role("button", name="Presentar reconsideración")).to_have_count(0)
    await s.accessible(page)


async def test_a_citizen_files_a_reconsideration_with_the_clave_at_both_widths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    async with site(tmp_path) as s:
        desktop = await (await s.context(DESKTOP)).new_page()
        await recurso(s, desktop, "escritorio", None)
        phone = await (await s.context(PHONE)).new_page()
        await recurso(s, phone, "telefono", 390)
