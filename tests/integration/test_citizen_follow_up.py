"""The citizen follows up with the clave (issue 20) over the real app, PostgreSQL and RabbitMQ:
the receipt shows the clave once; with it the tracking page adds information (the department
hears of it on its queue and reads it on the timeline), says "no está resuelto" (a new legal
clock starts) within the term and answers the survey once; a wrong clave is a throttled guess;
staff issue a new clave at the front desk."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.deadlines import app as deadlines_app
from services.deadlines.models import ClockRow
from services.intake import app as intake_app
from services.intake.http import create_app
from services.intake.settings import IntakeSettings
from shared.cases import get_case, history
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.domain.citizen_key import key_matches
from shared.runtime import Deps, Runtime
from tests.support import drain, eventually, running, settings_for

STAFF_TOKEN = "tok-staff-0123456789abcdef"
VIAS_TOKEN = "tok-vias-0123456789abcdef"
TOKENS = f"staff={STAFF_TOKEN},department:vias={VIAS_TOKEN}"
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # Monday 10:00 in Panama
FILING = {
    "kind": "denuncia",
    "category": "Calles y huecos",
    "description": "Hay un hueco enorme frente a la escuela de la Calle 50 desde hace meses.",
    "citizen.full_name": "Maribel Quintero",
    "citizen.id_number": "8-123-4567",
    "notify.email": "maribel@example.com",
}


@dataclass
class Site:
    client: httpx.AsyncClient
    deps: Deps
    clock: FixedClock
    amqp_url: str
    app: Any


@pytest.fixture
async def local_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    """The embedded default (SQLite, no broker): events stay in the outbox."""
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    clock = FixedClock(START)
    settings = settings_for(
        "amqp://guest:guest@127.0.0.1:5672/", f"sqlite:///{tmp_path}/d.db", api_tokens=TOKENS
    )
    runtime = Runtime(settings, [intake_app.service()], clock=clock)
    await upgrade(runtime.deps.engine)
    app = create_app(runtime.deps, IntakeSettings(auth_failures_burst=3))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Site(client, runtime.deps, clock, "", app)
    await runtime.deps.engine.dispose()


@pytest.fixture
async def site(
    amqp_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    clock = FixedClock(START)
    settings = settings_for(amqp_url, pg_url, api_tokens=TOKENS)
    services = [intake_app.service(), deadlines_app.service()]
    async with running(settings, services, clock) as runtime:
        app = create_app(runtime.deps, IntakeSettings(auth_failures_burst=3))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Site(client, runtime.deps, clock, amqp_url, app)


async def file_on_the_web(site: Site) -> tuple[str, str]:
    """File on /presentar; return the tracking code and the clave shown on the receipt."""
    form = await site.client.get("/presentar")
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    site.clock.advance(timedelta(seconds=30))
    filed = await site.client.post("/presentar", data={**hidden, **FILING})
    assert filed.status_code == 303, filed.text
    receipt = await site.client.get(filed.headers["location"])
    match = re.search(r'<span class="codigo" id="clave">([0-9A-Z-]+)</span>', receipt.text)
    assert match, "the receipt shows no clave"
    again = await site.client.get(filed.headers["location"])
    assert match.group(1) not in again.text  # shown once
    return filed.headers["location"].rsplit("/", 1)[-1], match.group(1)


async def console(site: Site, token: str) -> tuple[httpx.AsyncClient, str]:
    """A staff or department browser at the front desk (another address than the citizen's)."""
    desk = httpx.ASGITransport(app=site.app, client=("192.0.2.10", 4000))
    client = httpx.AsyncClient(transport=desk, base_url="http://testserver")
    signed = await client.post("/consola/entrar", data={"token": token})
    assert signed.status_code == 303
    page = await client.get("/consola")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return client, match.group(1)


async def staff_act(site: Site, code: str, action: str, **data: str) -> None:
    client, csrf = await console(site, STAFF_TOKEN)
    done = await client.post(f"/consola/casos/{code}/{action}", data={"csrf": csrf, **data})
    await client.aclose()
    assert done.status_code == 303, done.text


async def step(site: Site, code: str, action: str, **data: str) -> httpx.Response:
    return await site.client.post(f"/seguimiento/{code}/{action}", data=data)


@pytest.mark.connected
async def test_information_added_with_the_clave_reaches_the_department_and_the_timeline(
    site: Site,
) -> None:
    code, clave = await file_on_the_web(site)
    await staff_act(site, code, "classify", kind="denuncia")
    await staff_act(site, code, "remit", department="vias")
    await drain(site.amqp_url, "defensa311.department.vias")

    wrong = await step(site, code, "add_information", clave="AAAA-BBBB-CCCC", text="Intruso")
    assert wrong.status_code == 403
    assert "no corresponde a este caso" in unescape(wrong.text)
    added = await step(
        site, code, "add_information", clave=clave.lower(), text="Ya hay un carro dañado."
    )
    assert added.status_code == 303
    page = await site.client.get(added.headers["location"])
    assert "Recibimos su información" in page.text
    assert "Información añadida por el ciudadano" in page.text
    assert "carro dañado" not in page.text  # the public page shows the step, not the text

    async def heard() -> list[dict[str, object]]:
        bodies = [
            json.loads(m.body) for m in await drain(site.amqp_url, "defensa311.department.vias")
        ]
        return [b for b in bodies if b["event_type"] == "CitizenAddedInformation"]

    (event,) = await eventually(heard)
    assert event["tracking_code"] == code and "carro" not in json.dumps(event)

    department, _ = await console(site, VIAS_TOKEN)
    shown = await department.get(f"/consola/casos/{code}")
    await department.aclose()
    assert "Ya hay un carro dañado." in unescape(shown.text)


@pytest.mark.connected
async def test_not_resolved_reopens_the_case_with_a_new_legal_clock_until_the_term_ends(
    site: Site,
) -> None:
    code, clave = await file_on_the_web(site)
    await staff_act(site, code, "classify", kind="queja")
    await staff_act(site, code, "start_inspection")
    await staff_act(site, code, "record_findings", findings="Se rellenó el hueco.")
    site.clock.advance(timedelta(days=2))
    await staff_act(site, code, "close")

    reopened = await step(site, code, "reopen", clave=clave, reason="El hueco sigue ahí.")
    assert reopened.status_code == 303, reopened.text
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        assert case.state == "classified" and case.flagged and case.reopen_count == 1
        assert case.due_at == site.deps.cases.terms.legal_due(site.clock.now())
        assert "reopen" in [r.action for r in await history(uow, case.id)]
        case_id, due = case.id, case.due_at

    async def new_clock() -> list[ClockRow]:
        async with site.deps.uow() as uow:
            rows = await uow.session.scalars(
                select(ClockRow).where(ClockRow.case_id == case_id, ClockRow.stopped_at.is_(None))
            )
            return [r for r in rows if r.due_at == due]

    assert await eventually(new_clock)

    # Resolved again; past the term the page says when it ended and nothing changes.
    await staff_act(site, code, "start_inspection")
    await staff_act(site, code, "record_findings", findings="Reparado de nuevo.")
    site.clock.advance(timedelta(days=30))
    late = await step(site, code, "reopen", clave=clave)
    assert late.status_code == 409
    assert "el plazo para indicar que el caso no está resuelto terminó el" in unescape(late.text)
    async with site.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).state == "resolved"


async def test_the_survey_is_answered_once_after_closure_and_shown_to_staff(
    local_site: Site,
) -> None:
    site = local_site
    code, clave = await file_on_the_web(site)
    await staff_act(
        site, code, "decline", reason_code="desistimiento", reason="El ciudadano desistió."
    )
    bad = await step(site, code, "answer_survey", clave=clave, score="9")
    assert bad.status_code == 422 and "Calificación" in unescape(bad.text)
    answered = await step(site, code, "answer_survey", clave=clave, score="4", comment="Bien.")
    assert answered.status_code == 303
    twice = await step(site, code, "answer_survey", clave=clave, score="1")
    assert twice.status_code in (409, 422) or "ya fue respondida" in unescape(twice.text)
    async with site.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).survey_score == 4
    staff, _ = await console(site, STAFF_TOKEN)
    shown = await staff.get(f"/consola/casos/{code}")
    await staff.aclose()
    assert "4 de 5" in shown.text


async def test_guessing_the_clave_is_throttled_and_staff_can_issue_a_new_one(
    local_site: Site,
) -> None:
    site = local_site
    code, clave = await file_on_the_web(site)
    for _ in range(3):
        assert (
            await step(site, code, "add_information", clave="AAAA-BBBB-CCCC", text="x" * 5)
        ).status_code == 403
    blocked = await step(site, code, "add_information", clave=clave, text="Algo más que decir.")
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers

    staff, csrf = await console(site, STAFF_TOKEN)
    issued = await staff.post(f"/consola/casos/{code}/nueva-clave", data={"csrf": csrf})
    await staff.aclose()
    assert issued.status_code == 200
    match = re.search(r"Nueva clave del caso: ([0-9A-Z-]{14})", issued.text)
    assert match
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        rows = await history(uow, case.id)
    assert rows[-1].action == "citizen_key_issued" and rows[-1].actor.startswith("staff")
    assert match.group(1) not in json.dumps([r.details for r in rows])
    assert match.group(1) not in (case.clave_hash or "")
    assert key_matches(match.group(1), case.clave_hash)  # the new clave works …
    assert not key_matches(clave, case.clave_hash)  # … and the old one no longer does
