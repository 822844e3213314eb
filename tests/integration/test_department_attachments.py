"""A department attaches documents and photos to its answer: from the console's answer form
or in one multipart request on the API; stored like every attachment (type by content, EXIF
removed), shown to staff, never public until staff publish them.
On the embedded default (SQLite), as the filing page's own tests."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.intake.observability import HttpLimits
from shared.cases import get_case
from shared.evidence import AttachmentRow, of_case
from tests.integration.test_filing_page import (
    DENUNCIA,
    OBRAS,
    STAFF,
    Page,
    errors_on,
    open_page,
    sign_in,
)
from tests.unit.test_evidence import photo_with_exif

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ANSWER = "Reparamos el hueco el 10 de marzo; se adjunta el informe técnico y la foto."


@pytest.fixture
async def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Page]:
    async with open_page(tmp_path, monkeypatch, HttpLimits()) as opened:
        yield opened


async def remitted_case(page: Page) -> str:
    """A denuncia filed on the page, classified and remitted to obras by staff on the API."""
    filed = await page.send(DENUNCIA)
    assert filed.status_code == 303
    code = filed.headers["location"].rsplit("/", 1)[-1]
    staff = {"Authorization": f"Bearer {STAFF}"}
    for action, body in (("classify", {"kind": "denuncia"}), ("remit", {"department": "obras"})):
        done = await page.client.post(
            f"/api/v1/cases/{code}/actions/{action}", json=body, headers=staff
        )
        assert done.status_code == 200, done.text
    return code


async def attachments(page: Page, code: str) -> list[AttachmentRow]:
    async with page.runtime.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        return await of_case(uow, case.id)


def department_client(page: Page) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=page.client._transport, base_url="http://intake")


async def test_the_department_answers_with_a_pdf_and_a_photo_that_only_staff_see(
    page: Page, tmp_path: Path
) -> None:
    code = await remitted_case(page)
    async with department_client(page) as obras:
        csrf = await sign_in(obras, OBRAS)
        form = (await obras.get(f"/consola/casos/{code}")).text
        respond = form[form.index('id="accion-respond"') - 200 :]
        assert 'enctype="multipart/form-data"' in respond[:400]
        assert 'name="adjuntos" type="file"' in respond
        answered = await obras.post(
            f"/consola/casos/{code}/respond",
            data={"csrf": csrf, "estado": "remitted", "response": ANSWER},
            files=[
                ("adjuntos", ("informe.pdf", PDF, "application/pdf")),
                ("adjuntos", ("obra.jpg", photo_with_exif(), "image/jpeg")),
            ],
        )
        assert answered.status_code == 303, errors_on(answered.text)
    rows = await attachments(page, code)
    assert sorted(r.name for r in rows) == ["informe.pdf", "obra.jpg"]
    assert {r.source for r in rows} == {"department"} and not any(r.public for r in rows)
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "adjuntos").rglob("*") if p.is_file())
    assert b"CamaraDeEjemplo" not in on_disk

    # Staff see them on the case's attachments, marked as the department's, EXIF gone.
    await sign_in(page.client, STAFF)
    listing = (await page.client.get(f"/consola/casos/{code}/adjuntos")).text
    assert listing.count("Adjunto a la respuesta de la dependencia") == 2
    photo = next(r for r in rows if r.name == "obra.jpg")
    served = await page.client.get(f"/consola/adjuntos/{photo.id}")
    assert served.status_code == 200
    assert dict(Image.open(io.BytesIO(served.content)).getexif()) == {}
    timeline = (await page.client.get(f"/consola/casos/{code}")).text
    assert "adjuntos: 2" in timeline

    # The public tracking page shows neither, and their addresses answer nothing.
    tracking = await page.client.get(f"/seguimiento/{code}")
    assert tracking.status_code == 200
    assert "informe.pdf" not in tracking.text and "/adjuntos/" not in tracking.text
    for row in rows:
        assert (await page.client.get(f"/seguimiento/{code}/adjuntos/{row.id}")).status_code == 404


async def test_a_refused_file_leaves_the_case_unanswered_and_nothing_stored(
    page: Page, tmp_path: Path
) -> None:
    code = await remitted_case(page)
    async with department_client(page) as obras:
        csrf = await sign_in(obras, OBRAS)
        refused = await obras.post(
            f"/consola/casos/{code}/respond",
            data={"csrf": csrf, "estado": "remitted", "response": ANSWER},
            files=[("adjuntos", ("informe.exe", b"MZ\x90\x00", "application/pdf"))],
        )
    assert refused.status_code == 422
    assert "tipo de archivo no admitido" in refused.text
    assert re.search(r'id="error-respond-attachments"', refused.text)
    async with page.runtime.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).state == "remitted"
    assert await attachments(page, code) == []
    assert not any(p.is_file() for p in (tmp_path / "adjuntos").rglob("*"))


async def test_a_department_system_answers_with_its_documents_in_one_multipart_request(
    page: Page,
) -> None:
    code = await remitted_case(page)
    obras = {"Authorization": f"Bearer {OBRAS}"}
    typed = await page.client.post(
        f"/api/v1/cases/{code}/actions/respond",
        json={"response": ANSWER, "attachments": 3},
        headers=obras,
    )
    assert typed.status_code == 422
    assert typed.json()["detail"][0]["rule"] == "set_by_server"
    answered = await page.client.post(
        f"/api/v1/cases/{code}/actions/respond",
        data={"response": ANSWER},
        files=[("adjuntos", ("informe.pdf", PDF, "application/pdf"))],
        headers=obras,
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["state"] == "resolved"
    [row] = await attachments(page, code)
    assert (row.name, row.source, row.public) == ("informe.pdf", "department", False)
    public = await page.client.get(f"/api/v1/cases/{code}")
    assert "informe.pdf" not in public.text
