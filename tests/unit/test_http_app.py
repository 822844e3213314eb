"""The HTTP app a process serves (shared/http.py): intake's with other services' routers on it,
or a small one of the notifier's own when it runs alone."""

from __future__ import annotations

from typing import cast

import httpx

from services.notifier.app import service as notifier_service
from shared.http import http_app
from shared.runtime import Deps, ServiceDefinition


def test_a_process_without_http_routes_serves_no_app() -> None:
    assert http_app(cast(Deps, object()), [ServiceDefinition("router")]) is None


async def test_the_notifier_alone_serves_its_routes_health_and_spanish_errors() -> None:
    app = http_app(cast(Deps, object()), [notifier_service()])
    assert app is not None
    assert {"/api/v1/notifications", "/api/v1/tasks"} <= set(app.openapi()["paths"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        unauthorised = await client.get("/api/v1/tasks")
        missing = await client.get("/no-existe")
    assert unauthorised.status_code == 401
    assert unauthorised.json()["detail"].startswith("se requiere un token válido")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no existe"})
