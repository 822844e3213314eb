"""Intake's HTTP app in-process over SQLite, without a broker: what the security tests attack.

The runtime is built but not started (no RabbitMQ): the database is migrated, the app is
served through httpx's ASGI transport, and events stay in the outbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.intake.app import service
from services.intake.http import create_app
from services.intake.observability import HttpLimits
from services.intake.settings import IntakeSettings
from services.notifier.http import router as notifier_routes
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.runtime import Deps, Runtime
from shared.settings import Settings

STAFF_TOKEN = "staff-security-token-0123456789"
OBRAS_TOKEN = "obras-security-token-0123456789"
PLATFORM_TOKEN = "platform311-security-token-0123456789"
TOKENS = f"staff={STAFF_TOKEN},department:obras={OBRAS_TOKEN},platform311={PLATFORM_TOKEN}"
# Monday 3 March 2025, 10:00 in Panama.
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
BASE_URL = "http://testserver"


@dataclass
class App:
    client: httpx.AsyncClient
    deps: Deps
    clock: FixedClock
    asgi: FastAPI


@contextlib.asynccontextmanager
async def intake_app(
    tmp_path: Path,
    *,
    intake: IntakeSettings | None = None,
    limits: HttpLimits | None = None,
    client_host: str = "127.0.0.1",
    **overrides: object,
) -> AsyncIterator[App]:
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/defensa311.db",
        "api_tokens": TOKENS,
        "log_json": True,
    }
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    clock = FixedClock(START)
    runtime = Runtime(settings, [service()], clock=clock)
    await upgrade(runtime.deps.engine)
    app = create_app(runtime.deps, intake or IntakeSettings(), limits)
    app.include_router(notifier_routes)  # as `run all` serves them: one app, one budget
    transport = httpx.ASGITransport(app=app, client=(client_host, 51000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield App(client, runtime.deps, clock, app)
    finally:
        await runtime.deps.engine.dispose()


def web_denuncia(**overrides: object) -> dict[str, object]:
    """A valid web filing (the law's fields present)."""
    body: dict[str, object] = {
        "channel": "web",
        "kind": "denuncia",
        "category": "Calles y huecos",
        "description": "Hay un hueco enorme frente a la escuela de la Calle 50 desde hace meses.",
        "citizen": {"full_name": "Maribel Quintero", "id_number": "8-123-4567"},
        "notify": {"email": "maribel.quintero@example.com"},
        "location": {"address": "Calle 50, Casa 12, Bella Vista", "lat": 8.98, "lon": -79.52},
    }
    body.update(overrides)
    return body


def open311_denuncia(**overrides: str) -> dict[str, str]:
    """A valid Open311 filing form for the platform's api_key."""
    form = {
        "api_key": PLATFORM_TOKEN,
        "service_code": "denuncia-calles-y-huecos",
        "lat": "8.9824",
        "long": "-79.5199",
        "address_string": "Calle 50 frente al banco, Bella Vista",
        "description": "Hay un hueco enorme en la calle que ya dañó varios carros",
        "first_name": "Ana",
        "last_name": "Pérez",
        "attribute[id_number]": "8-123-4567",
        "attribute[notify_email]": "ana.perez@correo.example",
    }
    form.update(overrides)
    return form
