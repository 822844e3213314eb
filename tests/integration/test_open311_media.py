"""Open311 ``media_url`` (issue 19, point 2): fetched only from allow-listed hosts, cleaned
like any upload, and answered in ``GET requests`` only once staff made it public."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from shared.cases import get_case
from shared.clock import FixedClock
from shared.evidence import AttachmentRow
from tests.integration.test_open311 import FILED_AT, TOKEN, open311_server
from tests.integration.test_open311_standard_clients import STANDARD
from tests.unit.test_evidence import photo_with_exif

pytestmark = pytest.mark.connected

PHOTO = photo_with_exif()


class _Media(BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared by the test and its server thread

    def do_GET(self) -> None:
        _Media.hits.append(self.path)
        body = PHOTO if self.path.endswith(".jpg") else b"MZ not a photo"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@contextlib.contextmanager
def media_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def post(base: str, form: dict[str, str]) -> requests.Response:
    return requests.post(f"{base}/requests.json", data=form, timeout=10)


async def test_media_from_an_allowed_host_becomes_a_clean_private_attachment(
    amqp_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path))
    with media_server() as host:
        monkeypatch.setenv("DEFENSA311_MEDIA_URL_HOSTS", host)
        async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
            form = {**STANDARD, "media_url": f"http://{host}/fotos/parque.jpg"}
            filed = await asyncio.to_thread(post, base, form)
            assert filed.status_code == 201, filed.text
            code = filed.json()[0]["service_request_id"]
            async with runtime.deps.uow() as uow:
                case = await get_case(uow, tracking_code=code)
                [row] = list(
                    await uow.session.scalars(
                        select(AttachmentRow).where(AttachmentRow.case_id == case.id)
                    )
                )
            assert (row.source, row.media_type, row.public) == ("open311", "image/jpeg", False)
            assert b"CamaraDeEjemplo" not in (tmp_path / row.key).read_bytes()

            # Not public yet: GET requests answers no media_url.
            one = (await asyncio.to_thread(requests.get, f"{base}/requests/{code}.json")).json()
            assert one[0]["media_url"] is None
            async with runtime.deps.uow() as uow:
                stored = await uow.session.get(AttachmentRow, row.id)
                assert stored is not None
                stored.public = True
            one = (await asyncio.to_thread(requests.get, f"{base}/requests/{code}.json")).json()
            assert one[0]["media_url"].endswith(f"/seguimiento/{code}/adjuntos/{row.id}")

            refused = await asyncio.to_thread(
                post, base, {**STANDARD, "media_url": f"http://{host}/programa.exe"}
            )
            assert refused.status_code == 400
            assert refused.json()[0]["description"].startswith("media_url:")


async def test_media_from_any_other_host_is_never_fetched_and_stays_a_link(
    amqp_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("DEFENSA311_MEDIA_URL_HOSTS", "media.311.example")
    _Media.hits.clear()
    with media_server() as host:
        async with open311_server(amqp_url, pg_url, FixedClock(FILED_AT)) as (base, runtime):
            url = f"http://{host}/fotos/parque.jpg"
            filed = await asyncio.to_thread(post, base, {**STANDARD, "media_url": url})
            assert filed.status_code == 201, filed.text
            async with runtime.deps.uow() as uow:
                case = await get_case(uow, tracking_code=filed.json()[0]["service_request_id"])
                rows = list(await uow.session.scalars(select(AttachmentRow)))
    assert _Media.hits == []
    assert rows == []
    assert url in case.description
    assert TOKEN not in case.description
