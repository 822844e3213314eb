"""Recursos against a decision (Ley 38 de 2000) over the real app, PostgreSQL and RabbitMQ: the
citizen files a reconsideración with the clave and the office confirms it; the front desk files
an apelación and the superior revokes the decision (a new legal clock starts); a recurso out of
term is refused naming the day the term ended; only the roles the registry names may decide."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.deadlines import app as deadlines_app
from services.deadlines.models import LEGAL, RECOURSE, ClockRow
from services.intake import app as intake_app
from services.intake.http import create_app
from services.intake.settings import IntakeSettings
from services.notifier import app as notifier_app
from services.notifier.models import NotificationRow
from shared.cases import get_case
from shared.clock import FixedClock
from tests.integration.test_citizen_follow_up import Site, file_on_the_web, step
from tests.support import drain, eventually, running, settings_for

pytestmark = pytest.mark.connected

TOKENS = {
    "staff": "tok-staff-0123456789abcdef",
    "supervisor": "tok-super-0123456789abcdef",
    "superior": "tok-superior-0123456789abc",
    "department:vias": "tok-vias-0123456789abcdef",
}
# Monday 2 March 2026, 10:00 in Panama.
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def site(
    amqp_url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Site]:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    clock = FixedClock(START)
    tokens = ",".join(f"{role}={token}" for role, token in TOKENS.items())
    settings = settings_for(amqp_url, pg_url, api_tokens=tokens)
    services = [intake_app.service(), deadlines_app.service(), notifier_app.service()]
    async with running(settings, services, clock) as runtime:
        app = create_app(runtime.deps, IntakeSettings(auth_failures_burst=3))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Site(client, runtime.deps, clock, amqp_url, app)


async def api(site: Site, role: str, code: str, action: str, **body: str) -> httpx.Response:
    return await site.client.post(
        f"/api/v1/cases/{code}/actions/{action}",
        json=body,
        headers={"Authorization": f"Bearer {TOKENS[role]}"},
    )


async def resolved_case(site: Site) -> tuple[str, str]:
    """A queja filed on the web and resolved after an inspection: its code and clave."""
    code, clave = await file_on_the_web(site)
    for action, body in (
        ("classify", {"kind": "queja"}),
        ("start_inspection", {}),
        ("record_findings", {"findings": "Se rellenó el hueco."}),
    ):
        done = await api(site, "staff", code, action, **body)
        assert done.status_code == 200, done.text
    return code, clave


async def clocks_of(site: Site, case_id: str, clock: str) -> list[ClockRow]:
    async with site.deps.uow() as uow:
        rows = await uow.session.scalars(
            select(ClockRow).where(ClockRow.case_id == case_id, ClockRow.clock == clock)
        )
        return list(rows)


async def sent_to_citizen(site: Site, case_id: str, template: str) -> list[str]:
    async with site.deps.uow() as uow:
        rows = await uow.session.scalars(
            select(NotificationRow).where(
                NotificationRow.case_id == case_id, NotificationRow.template == template
            )
        )
        return [r.recipient for r in rows]


async def test_a_reconsideration_filed_with_the_clave_and_confirmed(site: Site) -> None:
    code, clave = await resolved_case(site)
    site.clock.advance(timedelta(days=1))
    grounds = "El hueco sigue igual: la reparación no se hizo."
    filed = await step(site, code, "file_reconsideration", clave=clave, grounds=grounds)
    assert filed.status_code == 303, filed.text
    page = await site.client.get(filed.headers["location"])
    assert "Recibimos su recurso de reconsideración" in page.text
    assert "En reconsideración" in page.text and "Fecha límite para decidir el recurso" in page.text
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        assert (case.state, case.recourse) == ("reconsideration", "reconsideration")
        assert case.recourse_due_at == site.deps.cases.terms.appeal_decision_due(site.clock.now())
        case_id, due = case.id, case.recourse_due_at

    async def recourse_clock() -> list[ClockRow]:
        rows = await clocks_of(site, case_id, RECOURSE)
        return [r for r in rows if r.due_at == due and r.stopped_at is None]

    assert await eventually(recourse_clock)
    assert await eventually(lambda: sent_to_citizen(site, case_id, "recourse_filed")) == [
        "maribel@example.com"
    ]
    # The 311 platform hears that a recurso was filed, never the citizen's grounds.
    public = [json.loads(m.body) for m in await drain(site.amqp_url, "defensa311.platform311")]
    assert any(b["event_type"] == "RecourseFiled" for b in public)
    assert "reparación no se hizo" not in json.dumps(public)

    site.clock.advance(timedelta(days=3))
    decided = await api(
        site,
        "staff",
        code,
        "decide_reconsideration",
        outcome="confirm",
        reasoning="La inspección del 3 de marzo verificó la reparación.",
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "resolved"

    async def stopped() -> bool:
        return all(r.stopped_at is not None for r in await clocks_of(site, case_id, RECOURSE))

    assert await eventually(stopped)
    assert await eventually(lambda: sent_to_citizen(site, case_id, "recourse_decided"))
    # The apelación remains: the tracking page offers it, and no second reconsideración.
    page = await site.client.get(f"/seguimiento/{code}")
    assert "Presentar apelación" in page.text and "Presentar reconsideración" not in page.text
    assert "Reconsideración decidida" in page.text


async def test_an_appeal_filed_at_the_desk_and_revoked_by_the_superior_reopens_the_case(
    site: Site,
) -> None:
    code, _clave = await resolved_case(site)
    site.clock.advance(timedelta(days=2))
    filed = await api(site, "staff", code, "file_appeal", grounds="Presentado en ventanilla.")
    assert filed.status_code == 200, filed.text
    assert filed.json()["state"] == "appeal"

    # A department, or staff, may not decide it: the superior (or the supervisor) does.
    for role in ("department:vias", "staff"):
        refused = await api(site, role, code, "decide_appeal", outcome="revoke", reasoning="No.")
        assert refused.status_code in (403, 404), refused.text
    site.clock.advance(timedelta(days=5))
    revoked = await api(
        site,
        "superior",
        code,
        "decide_appeal",
        outcome="revoke",
        reasoning="La inspección no verificó la acera dañada: atiéndase de nuevo.",
    )
    assert revoked.status_code == 200, revoked.text
    new_due = site.deps.cases.terms.legal_due(site.clock.now())
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        assert (case.state, case.flagged, case.recourse) == ("classified", True, None)
        assert case.due_at == new_due and case.resolved_at is None
        case_id = case.id

    async def new_legal_clock() -> list[ClockRow]:
        rows = await clocks_of(site, case_id, LEGAL)
        return [r for r in rows if r.due_at == new_due and r.stopped_at is None]

    assert await eventually(new_legal_clock)
    assert await eventually(lambda: sent_to_citizen(site, case_id, "recourse_decided"))
    # Handled again: it may be remitted anew.
    remitted = await api(site, "staff", code, "classify", kind="denuncia")
    assert remitted.status_code == 200
    remitted = await api(site, "staff", code, "remit", department="vias")
    assert remitted.status_code == 200, remitted.text


async def test_a_recurso_out_of_term_is_refused_naming_the_day_the_term_ended(
    site: Site,
) -> None:
    code, clave = await resolved_case(site)  # resolved Monday 2 March 2026
    desk = httpx.ASGITransport(app=site.app, client=("192.0.2.30", 4000))
    async with httpx.AsyncClient(transport=desk, base_url="http://testserver") as staff:
        await staff.post("/consola/entrar", data={"token": TOKENS["staff"]})
        in_term = unescape((await staff.get(f"/consola/casos/{code}")).text)
        assert "Plazo para recurrir la decisión</strong>: vence el 9 de marzo de 2026" in in_term
        site.clock.advance(timedelta(days=10))  # Thursday 12 March: the term ended on 9 March
        late_page = unescape((await staff.get(f"/consola/casos/{code}")).text)
        assert "Plazo para recurrir la decisión" not in late_page
    late = await api(site, "staff", code, "file_reconsideration", grounds="Tarde.")
    assert late.status_code == 409, late.text
    body: dict[str, Any] = late.json()
    assert (
        body["detail"] == "el plazo para presentar la reconsideración terminó el 9 de marzo de 2026"
    )
    assert body["term_ended_at"].startswith("2026-03-09T23:59:59")
    page = await step(site, code, "file_appeal", clave=clave, grounds="Tarde también.")
    assert page.status_code == 409
    assert (
        "No se pudo presentar el recurso: el plazo para presentar la apelación terminó el "
        "9 de marzo de 2026" in unescape(page.text)
    )
    async with site.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        assert (case.state, case.recourse) == ("resolved", None)
    shown = await site.client.get(f"/seguimiento/{code}")
    assert "El plazo para recurrir la decisión terminó el" in unescape(shown.text)


async def test_the_superior_decides_an_appeal_in_the_console(site: Site) -> None:
    code, _clave = await resolved_case(site)
    site.clock.advance(timedelta(days=1))
    filed = await api(site, "staff", code, "file_appeal", grounds="Presentado en ventanilla.")
    assert filed.status_code == 200, filed.text

    desk = httpx.ASGITransport(app=site.app, client=("192.0.2.20", 4000))
    async with httpx.AsyncClient(transport=desk, base_url="http://testserver") as superior:
        signed = await superior.post("/consola/entrar", data={"token": TOKENS["superior"]})
        assert signed.status_code == 303
        inbox = await superior.get("/consola")
        assert inbox.status_code == 200 and code in inbox.text  # the apelaciones pending
        assert "Registrar caso presencial" not in inbox.text
        page = await superior.get(f"/consola/casos/{code}")
        assert "Decidir la apelación" in page.text
        assert "Confirmar la decisión" in unescape(page.text)
        assert "Plazo para decidir el recurso" in page.text
        assert "Presentar reconsideración" not in page.text  # the registry's takers decide
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        done = await superior.post(
            f"/consola/casos/{code}/decide_appeal",
            data={
                "csrf": csrf.group(1),
                "outcome": "confirm",
                "reasoning": "La resolución está bien fundada.",
            },
        )
        assert done.status_code == 303, done.text
        shown = await superior.get(done.headers["location"])
        assert "Apelación decidida por el superior" in unescape(shown.text)
        assert "decisión del recurso: confirmada" in unescape(shown.text)
    async with site.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).state == "resolved"
