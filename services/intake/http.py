"""Intake's HTTP app (FastAPI): health, readiness and the parts of the front door."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Receive, Scope, Send

from services.intake import observability
from services.intake.api import cases as api
from services.intake.observability import HttpLimits
from services.intake.open311 import routes as open311
from services.intake.settings import IntakeSettings
from services.intake.web import pages as web
from shared.evidence import AttachmentLimits
from shared.http import health
from shared.runtime import Deps
from shared.throttle import FailureThrottle
from shared.validation import control_character

DOCS_ASSETS = "/docs-estaticos"


def create_app(
    deps: Deps, settings: IntakeSettings | None = None, limits: HttpLimits | None = None
) -> FastAPI:
    """Intake's app; ``limits`` of the public surface from the environment unless given."""
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
    app.state.attachment_limits = AttachmentLimits()
    # One budget of failed authentications per client, whichever door is tried.
    app.state.auth_throttle = FailureThrottle(
        settings.auth_failures_burst, settings.auth_failures_per_minute
    )

    app.include_router(router)
    app.include_router(health)
    app.add_middleware(RefuseControlCharacters)
    # Each part of the front door installs its own routes (the case API, with the error
    # handlers that answer in Spanish, comes first); observability goes last so its
    # middleware wraps everything.
    for part in (api, open311, web):
        part.install(app, deps)
    observability.install(app, deps, limits)
    document_errors(app)
    return app


router = APIRouter()


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    # The public front page is the tracking form; staff go on to /consola from there.
    return RedirectResponse("/seguimiento", status_code=307)


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
                    from services.intake.open311.format import Open311Error, render_errors

                    fmt = "xml" if str(scope["path"]).endswith(".xml") else "json"
                    response = render_errors(fmt, Open311Error(400, message))
                else:
                    response = JSONResponse({"detail": message}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ the documented errors

FIELD_ERROR: dict[str, Any] = {
    "title": "FieldError",
    "type": "object",
    "required": ["field", "rule", "message"],
    "properties": {
        "field": {"type": "string", "description": "el campo, con puntos (citizen.id_number)"},
        "rule": {"type": "string", "description": "la regla incumplida (text_length, cedula…)"},
        "message": {"type": "string", "description": "explicación en español"},
    },
}
ERROR: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            ]
        }
    },
}
VALIDATION_ERROR: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}
    },
}
OPEN311_ERRORS: dict[str, Any] = {
    "title": "Open311Errors",
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
    },
}
API_ERRORS = {
    "400": "la dirección o el cuerpo no se pudieron leer (carácter de control, JSON ilegible)",
    "401": "falta el token o no es válido",
    "403": "el token no permite esta operación",
    "404": "no existe (o no está al alcance del token)",
    "405": "método no permitido en esta ruta",
    "409": "la acción no está permitida en el estado actual del caso",
    "413": "el cuerpo supera el tamaño máximo",
    "422": "datos inválidos: cada error nombra el campo y la regla",
    "429": "demasiadas solicitudes o intentos fallidos desde la conexión (ver Retry-After)",
}
OPEN311_ANSWERS = {
    "200": "documento GeoReport v2 (.json o .xml)",
    "201": "solicitud creada",
    "400": "parámetro inválido",
    "403": "falta la api_key o no es válida",
    "404": "recurso o formato inexistente",
    "429": "demasiadas consultas o intentos fallidos desde la conexión",
}


def document_errors(app: FastAPI) -> None:
    """Every answer the API gives is in its OpenAPI document, with the body it really has:
    the Spanish field errors (not FastAPI's ``loc``/``msg``/``type``), the errors the
    middleware and handlers add, and Open311's answers in JSON and XML."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("ValidationError", None)
        schemas.update(FieldError=FIELD_ERROR, Error=ERROR, HTTPValidationError=VALIDATION_ERROR)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if path.startswith("/open311/"):
                    _document_open311(responses)
                elif path.startswith("/api/"):
                    for code, description in API_ERRORS.items():
                        answer = responses.setdefault(code, {"description": description})
                        if code != "422":
                            answer["content"] = error
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _document_open311(responses: dict[str, Any]) -> None:
    responses.pop("422", None)  # Open311 answers a bad parameter with 400 and its error list
    success = {"application/json": {"schema": {}}, "text/xml": {"schema": {"type": "string"}}}
    errors = {
        "application/json": {"schema": OPEN311_ERRORS},
        "text/xml": {"schema": {"type": "string"}},
    }
    for code, description in OPEN311_ANSWERS.items():
        answer = responses.setdefault(code, {"description": description})
        answer["content"] = success if code in ("200", "201") else errors
