"""Joined cases follow their main case, over the real app, PostgreSQL and RabbitMQ: a case
joined to a main one stops its own clock and its citizen is told; the main case is remitted
once (the department never receives the joined case) and the joined case mirrors it, its
citizen told the step; a joined case refuses actions of its own; separated, it starts over
with a fresh legal clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.deadlines import app as deadlines_app
from services.deadlines.models import LEGAL, ClockRow
from services.intake import app as intake_app
from services.intake.http import create_app
from services.intake.settings import IntakeSettings
from services.notifier import app as notifier_app
from services.notifier.models import NotificationRow
from shared.cases import get_case
from shared.clock import FixedClock
from tests.integration.test_citizen_follow_up import Site, file_on_the_web
from tests.integration.test_recursos import START, TOKENS
from tests.support import drain, eventually, running, settings_for

pytestmark = pytest.mark.connected


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
        app = create_app(runtime.deps, IntakeSettings())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Site(client, runtime.deps, clock, amqp_url, app)


async def staff(site: Site, code: str, action: str, **body: str) -> httpx.Response:
    return await site.client.post(
        f"/api/v1/cases/{code}/actions/{action}",
        json=body,
        headers={"Authorization": f"Bearer {TOKENS['staff']}"},
    )


async def legal_clocks(site: Site, case_id: str) -> list[ClockRow]:
    async with site.deps.uow() as uow:
        rows = await uow.session.scalars(
            select(ClockRow)
            .where(ClockRow.case_id == case_id, ClockRow.clock == LEGAL)
            .order_by(ClockRow.started_at)
        )
        return list(rows)


async def told(site: Site, case_id: str, template: str) -> list[str]:
    async with site.deps.uow() as uow:
        rows = await uow.session.scalars(
            select(NotificationRow).where(
                NotificationRow.case_id == case_id, NotificationRow.template == template
            )
        )
        return [r.recipient for r in rows]


async def test_a_joined_case_follows_its_main_case_until_it_is_separated(site: Site) -> None:
    main_code, _ = await file_on_the_web(site)
    code, _ = await file_on_the_web(site)
    async with site.deps.uow() as uow:
        joined = await get_case(uow, tracking_code=code)
        joined.notify = {"email": "luis@example.com"}  # another person reported it too
        joined_id = joined.id
    assert (await staff(site, main_code, "classify", kind="denuncia")).status_code == 200

    site.clock.advance(timedelta(hours=1))
    done = await staff(site, code, "join", main=main_code)
    assert done.status_code == 200, done.text
    assert done.json()["allowed_actions"] == ["separate"]

    async def own_clock_stopped() -> bool:
        clocks = await legal_clocks(site, joined_id)
        return bool(clocks) and all(c.stopped_at is not None for c in clocks)

    assert await eventually(own_clock_stopped)
    assert await eventually(lambda: told(site, joined_id, "case_joined")) == ["luis@example.com"]

    # The main case is remitted once: the department never receives the joined case.
    await drain(site.amqp_url, "defensa311.department.vias")
    assert (await staff(site, main_code, "remit", department="vias")).status_code == 200
    async with site.deps.uow() as uow:
        main = await get_case(uow, tracking_code=main_code)
        joined = await get_case(uow, tracking_code=code)
        assert (joined.state, joined.due_at, joined.department) == ("remitted", main.due_at, None)

    async def remitted_to_vias() -> list[str]:
        return [
            json.loads(m.body)["tracking_code"]
            for m in await drain(site.amqp_url, "defensa311.department.vias")
        ]

    assert await eventually(remitted_to_vias) == [main_code]
    assert await eventually(lambda: told(site, joined_id, "case_followed")) == ["luis@example.com"]
    assert await remitted_to_vias() == []  # nothing more came

    # A joined case takes no action of its own: it names the main case.
    refused = await staff(site, code, "decline", reason_code="duplicada", reason="Duplicado.")
    assert refused.status_code in (409, 422), refused.text
    assert main_code in refused.text and "separen" in refused.text

    joined_page = await site.client.get(f"/seguimiento/{code}")
    assert 'id="caso-unido"' in joined_page.text and main_code not in joined_page.text

    site.clock.advance(timedelta(days=3))
    separated = await staff(site, code, "separate")
    assert separated.status_code == 200, separated.text
    assert separated.json()["state"] == "received"
    fresh = site.deps.cases.terms.legal_due(site.clock.now())

    async def fresh_clock() -> bool:
        clocks = await legal_clocks(site, joined_id)
        return any(c.due_at == fresh and c.stopped_at is None for c in clocks)

    assert await eventually(fresh_clock)
    assert await eventually(lambda: told(site, joined_id, "case_separated")) == ["luis@example.com"]
    page = await site.client.get(f"/seguimiento/{code}")
    assert 'id="caso-unido"' not in page.text  # separated: its own case again
    assert "Unido a otro caso como duplicado" in page.text
    assert "Separado del caso principal" in page.text
