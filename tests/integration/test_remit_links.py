"""A remitted case carries its attachments as links that expire, never their bytes
(issue 19, point 2). On the embedded default: the event is read from the outbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.intake.app import service as intake_service
from services.intake.http import create_app
from shared.cases import file_case, perform
from shared.clock import FixedClock
from shared.contract import validate_submission
from shared.db.migrate import upgrade
from shared.db.models import OutboxRow
from shared.evidence import AttachmentLimits, prepare, store_blobs
from shared.runtime import Runtime
from tests.support import settings_for
from tests.unit.test_evidence import photo_with_exif

NOW = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)


async def test_a_remitted_case_carries_expiring_links_to_its_attachments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFENSA311_STORAGE_DIR", str(tmp_path / "adjuntos"))
    monkeypatch.setenv("DEFENSA311_STORAGE_LINK_DAYS", "2")
    clock = FixedClock(NOW)
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/", f"sqlite:///{tmp_path}/d.db")
    runtime = Runtime(settings, [intake_service()], clock=clock)
    deps = runtime.deps
    await upgrade(deps.engine)
    app = create_app(deps)  # serves the local store's links
    store = app.state.attachment_store
    photo = photo_with_exif()
    rows = await store_blobs(store, prepare([("hueco.jpg", photo)], AttachmentLimits()), "web", NOW)
    submission = validate_submission(
        {
            "kind": "denuncia",
            "description": "Un hueco enorme frente a la escuela desde hace meses.",
            "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
            "notify": {"email": "ana@example.com"},
        }
    )
    async with deps.uow() as uow:
        case, _ = await file_case(
            uow, deps.cases, submission, channel="web", actor="prueba", now=NOW
        )
        for row in rows:
            row.case_id = case.id
            uow.session.add(row)
        await perform(uow, deps.cases, case, "classify", {"kind": "denuncia"}, actor="p", now=NOW)
        await perform(uow, deps.cases, case, "remit", {"department": "obras"}, actor="p", now=NOW)
    async with deps.uow() as uow:
        body = await uow.session.scalar(
            select(OutboxRow.body).where(OutboxRow.event_type == "CaseRemitted")
        )
    assert body is not None
    event = json.loads(body)
    [link] = event["attachments"]
    assert (link["name"], link["media_type"]) == ("hueco.jpg", "image/jpeg")
    assert link["expires_at"].startswith("2025-03-05T14:00:00")
    assert len(body) < len(photo)  # a link, not the bytes

    path = "/" + link["url"].split("://", 1)[1].split("/", 1)[1]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        served = await client.get(path)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        clock.advance(timedelta(days=2, minutes=1))
        assert (await client.get(path)).status_code == 403
    await deps.engine.dispose()
