"""Intake's HTTP app (FastAPI): health, readiness and the parts of the front door."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse

from services.intake import api, notifications_api, observability, open311, web
from services.intake.settings import IntakeSettings
from services.intake.throttle import FailureThrottle
from shared.runtime import Deps


def create_app(deps: Deps, settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    app = FastAPI(
        title="Defensa311",
        description="API del Departamento Defensa del Usuario – 311",
        version="1.0",
    )
    app.state.deps = deps
    app.state.intake_settings = settings
    # One budget of failed authentications per client, whichever door is tried.
    app.state.auth_throttle = FailureThrottle(
        settings.auth_failures_burst, settings.auth_failures_per_minute
    )

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        # The public front page is the tracking form; staff go on to /consola from there.
        return RedirectResponse("/seguimiento", status_code=307)

    @app.get("/healthz", tags=["operación"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operación"])
    async def readyz() -> JSONResponse:
        checks = await deps.check_ready()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    # Each part of the front door installs its own routes (the case API, with the error
    # handlers that answer in Spanish, comes first); observability goes last so its
    # middleware wraps everything.
    for part in (api, notifications_api, open311, web, observability):
        part.install(app, deps)
    return app
