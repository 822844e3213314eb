"""Intake's HTTP app (FastAPI): health, readiness and the parts of the front door."""

from __future__ import annotations

from urllib.parse import unquote_plus

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Receive, Scope, Send

from services.intake import api, notifications_api, observability, open311, web
from services.intake.settings import IntakeSettings
from services.intake.throttle import FailureThrottle
from shared.runtime import Deps
from shared.validation import control_character

DOCS_ASSETS = "/docs-estaticos"


def create_app(deps: Deps, settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    # /docs and /redoc serve Swagger UI and ReDoc from the installed package, never a CDN:
    # the docs work on a closed network and tell no third party who reads them.
    app = FastAPIOffline(
        title="Defensa311",
        description="API del Departamento Defensa del Usuario – 311",
        version="1.0",
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
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

    app.add_middleware(RefuseControlCharacters)
    # Each part of the front door installs its own routes (the case API, with the error
    # handlers that answer in Spanish, comes first); observability goes last so its
    # middleware wraps everything.
    for part in (api, notifications_api, open311, web, observability):
        part.install(app, deps)
    return app


class RefuseControlCharacters:
    """A path or query parameter holding a control character is refused (400) before any
    route reads it: the same rule as every text field (:func:`shared.validation.control_character`),
    for the parameters no model declares as text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_plus(bytes(scope.get("query_string", b"")).decode("latin-1"))
            bad = control_character(str(scope["path"]), multiline=False) or control_character(
                query, multiline=False
            )
            if bad is not None:
                message = f"la dirección contiene un carácter de control no permitido ({bad})"
                if str(scope["path"]).startswith("/open311/"):
                    from services.intake.open311_format import Open311Error, render_errors

                    fmt = "xml" if str(scope["path"]).endswith(".xml") else "json"
                    response = render_errors(fmt, Open311Error(400, message))
                else:
                    response = JSONResponse({"detail": message}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
