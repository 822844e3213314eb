"""Intake's HTTP app (FastAPI): health, readiness and the case API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.intake import api, notifications_api, observability, open311, web
from services.intake.views import public_view
from shared.cases import CaseNotFound, get_case, history
from shared.runtime import Deps
from shared.tracking import normalize_tracking_code


def create_app(deps: Deps) -> FastAPI:
    app = FastAPI(
        title="Defensa311",
        description="API del Departamento Defensa del Usuario – 311",
        version="1.0",
    )
    app.state.deps = deps

    @app.get("/healthz", tags=["operación"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operación"])
    async def readyz() -> JSONResponse:
        checks = await deps.check_ready()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/api/v1/cases/{tracking_code}", tags=["casos"])
    async def get_case_view(tracking_code: str, request: Request) -> Any:
        try:
            code = normalize_tracking_code(tracking_code)
        except ValueError:
            return _not_found()
        async with deps.uow() as uow:
            try:
                case = await get_case(uow, tracking_code=code)
            except CaseNotFound:
                return _not_found()
            rows = await history(uow, case.id)
        return public_view(case, rows, deps.cases.terms, deps.clock.now())

    # Each part of the front door installs its own routes; observability goes last so
    # its middleware wraps everything.
    for part in (api, notifications_api, open311, web, observability):
        part.install(app, deps)
    return app


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": "caso no encontrado"}, status_code=404)

