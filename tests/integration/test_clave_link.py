"""The receipt e-mail's clave link (issue 20) over the real app: a case filed on the web is
received, the notifier e-mails the receipt (RabbitMQ, PostgreSQL, an aiosmtpd server), and the
link in it, opened on intake, issues a clave that works on the tracking page; a used, expired
or forged link is refused in Spanish with the way to the front desk, never a 5xx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

import shared.startup
from services.intake import app as intake_app
from services.intake.http import create_app
from services.intake.settings import IntakeSettings
from services.notifier import app as notifier_app
from services.notifier.settings import NotifierSettings
from shared.cases import get_case, history
from shared.cli import main
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.domain.key_link import binding_of
from shared.key_links import SECRET_FILE_SUFFIX
from shared.runtime import Deps, Runtime
from shared.settings import Settings
from tests.support import eventually, free_port, running, settings_for

SECRET = "secreto-de-los-enlaces-de-clave-0123456789"
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # Monday 10:00 in Panama
CEDULA = "8-123-4567"
EMAIL = "maribel@example.com"
FILING = {
    "kind": "queja",
    "category": "Calles y huecos",
    "description": "Hay un hueco enorme frente a la escuela de la Calle 50 desde hace meses.",
    "citizen.full_name": "Maribel Quintero",
    "citizen.id_number": CEDULA,
    "notify.email": EMAIL,
    "notify.phone": "+507 6123-4567",
}
CLAVE = re.compile(r'<span class="codigo" id="clave">([0-9A-Z-]+)</span>')


@dataclass
class Inbox:
    """aiosmtpd handler: keeps every message."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append(mail)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    port, box = free_port(), Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@dataclass
class Site:
    client: httpx.AsyncClient
    deps: Deps
    clock: FixedClock


async def file_on_the_web(site: Site) -> tuple[str, str]:
    """File on /presentar; the tracking code and the clave its receipt page showed."""
    form = await site.client.get("/presentar")
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    site.clock.advance(timedelta(seconds=30))
    filed = await site.client.post("/presentar", data={**hidden, **FILING})
    assert filed.status_code == 303, filed.text
    receipt = await site.client.get(filed.headers["location"])
    match = CLAVE.search(receipt.text)
    assert match
    return filed.headers["location"].rsplit("/", 1)[-1], match.group(1)


def link_in(mail: EmailMessage) -> str:
    """The clave link of the receipt's text part, as a path with its query."""
    text = mail.get_body(("plain",))
    assert text is not None
    (url,) = re.findall(r"https?://\S+/clave/\S+", text.get_content())
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def add_information(site: Site, code: str, clave: str) -> httpx.Response:
    return await site.client.post(
        f"/seguimiento/{code}/add_information",
        data={"clave": clave, "text": "El hueco ya dañó dos carros."},
    )


@pytest.mark.connected
async def test_the_receipt_link_issues_a_clave_that_works_on_the_tracking_page(
    amqp_url: str,
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inbox: tuple[Inbox, int],
) -> None:
    box, port = inbox
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    monkeypatch.setenv("DEFENSA311_CLAVE_LINK_SECRET", SECRET)
    clock = FixedClock(START)
    notifier = NotifierSettings(smtp_host="127.0.0.1", smtp_port=port, smtp_reuse_seconds=0)
    services = [intake_app.service(), notifier_app.service(notifier)]
    async with running(settings_for(amqp_url, pg_url), services, clock) as runtime:
        app = create_app(runtime.deps, IntakeSettings(auth_failures_burst=3))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            site = Site(client, runtime.deps, clock)
            code, receipt_clave = await file_on_the_web(site)

            (mail,) = await eventually(lambda: [m for m in box.messages if EMAIL in m["To"]])
            raw = mail.as_string()
            body = "\n".join(
                part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"
            )
            # No clave in clear, nothing personal beyond the greeting the receipt always had.
            for secret in (receipt_clave, receipt_clave.replace("-", "")):
                assert secret not in raw
            for personal in (CEDULA, "6123-4567", "Calle 50"):
                assert personal not in body
            assert "Obtener mi clave" in body
            link = link_in(mail)
            assert link.startswith(f"/clave/{code}?t=")

            shown = await client.get(link)
            assert shown.status_code == 200, shown.text
            assert "¿Qué es la clave?" in unescape(shown.text)
            assert shown.headers["Cache-Control"] == "no-store"
            token = re.search(r'name="t" value="([^"]+)"', shown.text)
            assert token

            issued = await client.post(f"/clave/{code}", data={"t": unescape(token.group(1))})
            assert issued.status_code == 200, issued.text
            match = CLAVE.search(issued.text)
            assert match and match.group(1) != receipt_clave
            clave = match.group(1)
            assert f'href="/seguimiento/{code}"' in issued.text

            # The receipt's clave no longer works; the new one does.
            assert (await add_information(site, code, receipt_clave)).status_code == 403
            added = await add_information(site, code, clave)
            assert added.status_code == 303, added.text
            page = await client.get(added.headers["location"])
            assert "Recibimos su información" in unescape(page.text)

            # The link was spent: once more (GET or POST) it says so, and issues nothing.
            for again in (
                await client.get(link),
                await client.post(f"/clave/{code}", data={"t": unescape(token.group(1))}),
            ):
                assert again.status_code == 410
                assert "ya se usó" in unescape(again.text)
                assert "documento de identidad" in unescape(again.text)
            assert (await add_information(site, code, clave)).status_code == 303

            async with runtime.deps.uow() as uow:
                case = await get_case(uow, tracking_code=code)
                rows = await history(uow, case.id)
            issued_rows = [r for r in rows if r.action == "citizen_key_issued"]
            assert [r.actor for r in issued_rows] == ["ciudadano"]
            assert all(clave not in str(r.details) for r in rows)


@dataclass
class Local:
    site: Site
    app: Any
    tmp_path: Path


@pytest.fixture
async def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Local]:
    """The embedded default (SQLite, no broker, no secret configured)."""
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    monkeypatch.delenv("DEFENSA311_CLAVE_LINK_SECRET", raising=False)
    clock = FixedClock(START)
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/", f"sqlite:///{tmp_path}/d.db")
    runtime = Runtime(settings, [intake_app.service()], clock=clock)
    await upgrade(runtime.deps.engine)
    app = create_app(runtime.deps, IntakeSettings(auth_failures_burst=3))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Local(Site(client, runtime.deps, clock), app, tmp_path)
    await runtime.deps.engine.dispose()


async def link_for(site: Site, code: str) -> str:
    """The link the notifier would e-mail now for ``code``."""
    links = site.deps.key_links
    assert links is not None
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
    url = links.url(
        "http://testserver", code, binding_of(case.clave_hash), links.expiry(site.clock.now())
    )
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_the_embedded_default_signs_links_with_a_secret_kept_beside_its_database(
    local: Local,
) -> None:
    site = local.site
    code, _ = await file_on_the_web(site)
    link = await link_for(site, code)
    assert (local.tmp_path / f"d.db{SECRET_FILE_SUFFIX}").is_file()
    assert (await site.client.get(link)).status_code == 200


async def test_an_expired_link_is_gone_and_says_where_to_get_a_clave(local: Local) -> None:
    site = local.site
    code, clave = await file_on_the_web(site)
    link = await link_for(site, code)
    site.clock.advance(timedelta(days=31))
    token = link.split("t=", 1)[1]
    for answer in (
        await site.client.get(link),
        await site.client.post(f"/clave/{code}", data={"t": token}),
    ):
        assert answer.status_code == 410
        text = unescape(answer.text)
        assert "Este enlace venció" in text and "documento de identidad" in text
    # Nothing was issued: the receipt's clave still works.
    assert (await add_information(site, code, clave)).status_code == 303


async def test_a_forged_link_is_a_throttled_guess_and_never_a_server_error(local: Local) -> None:
    site = local.site
    code, clave = await file_on_the_web(site)
    link = await link_for(site, code)
    answers = [
        await site.client.get(link[:-2] + ("AA" if not link.endswith("AA") else "BB")),
        await site.client.get(f"/clave/{code}"),  # no token (not counted: nothing guessed)
        await site.client.get("/clave/no-es-un-codigo?t=1.2.3"),
        await site.client.post(f"/clave/{code}", data={"t": "9999999999.abc.def"}),
        await site.client.get(link.replace("t=", "t=1")),
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 400]
    assert "Este enlace no es válido" in unescape(answers[0].text)
    # The failed-authentication budget (3) is spent: even the real link waits, with a reason.
    blocked = await site.client.get(link)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "intente de nuevo" in unescape(blocked.text)
    # The tracking page's clave shares that budget.
    assert (await add_information(site, code, clave)).status_code == 429


def test_a_short_link_secret_stops_the_start_with_one_line_for_both_services(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def reachable(_settings: Settings) -> None:
        return None

    monkeypatch.setattr(shared.startup, "check_services", reachable)
    monkeypatch.setattr(shared.startup, "check_port", lambda _settings: None)
    monkeypatch.setenv("DEFENSA311_CLAVE_LINK_SECRET", "corto-secreto-2")
    assert main(["run", "all"]) == 2
    err = capsys.readouterr().err
    assert err.count("DEFENSA311_CLAVE_LINK_SECRET") == 1
    assert "al menos 32 caracteres" in err
    assert "corto-secreto-2" not in err and "Traceback" not in err


async def test_without_a_link_secret_every_link_is_answered_not_valid(local: Local) -> None:
    site = local.site
    code, _ = await file_on_the_web(site)
    link = await link_for(site, code)
    site.deps.__dict__["key_links"] = None  # PostgreSQL without DEFENSA311_CLAVE_LINK_SECRET
    for answer in (
        await site.client.get(link),
        await site.client.post(f"/clave/{code}", data={"t": link.split("t=", 1)[1]}),
    ):
        assert answer.status_code == 400
        assert "Este enlace no es válido" in unescape(answer.text)
