"""What a refused request gets: a browser on a page gets a Spanish page in the public look with
the status kept; an API client (``/api``, ``/open311``, or ``Accept: application/json``) the
JSON ``{"detail": …}`` the API documents.

The HTTP guard (:mod:`services.intake.observability`: rate limits, body size) and the error
handlers answer through :func:`refused`; the web installs the page (:func:`install`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request
from starlette.types import Scope

from shared.evidence import AttachmentLimits

if TYPE_CHECKING:
    from services.intake.web.pages import Pages

#: Paths that are never pages: their clients read JSON (or Open311's XML).
MACHINE_PATHS = (
    "/api/",
    "/open311/",
    "/metrics",
    "/healthz",
    "/readyz",
    "/docs",
    "/redoc",
    "/openapi.json",
)
PageMaker = Callable[[Scope, int, dict[str, str]], Response | None]


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return str(value.decode("latin-1")).lower()
    return ""


def wants_page(scope: Scope) -> bool:
    """Whether the client is a browser on a page (not an API client)."""
    if str(scope.get("path", "")).startswith(MACHINE_PATHS):
        return False
    accept = _header(scope, b"accept")
    return not ("application/json" in accept and "text/html" not in accept)


def refused(
    scope: Scope, status: int, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    """The refusal as a page for a browser (when the web has a page for it), else as JSON."""
    app = scope.get("app")
    make: PageMaker | None = getattr(getattr(app, "state", None), "refusal_page", None)
    if make is not None and wants_page(scope):
        page = make(scope, status, dict(headers or {}))
        if page is not None:
            return page
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def wait_text(seconds: int) -> str:
    """``45 segundos``, ``1 minuto``, ``3 minutos`` (rounded up to whole minutes)."""
    if seconds < 60:
        return f"{seconds} segundo" if seconds == 1 else f"{seconds} segundos"
    minutes = math.ceil(seconds / 60)
    return "1 minuto" if minutes == 1 else f"{minutes} minutos"


def _way_back(path: str) -> tuple[str, str, str]:
    """Where the reader goes back to (href, link text) and the page's section."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["seguimiento"]:
        href = f"/seguimiento/{parts[1]}" if len(parts) > 1 else "/seguimiento"
        return href, "Volver al seguimiento del caso", "seguimiento"
    if parts[:1] == ["consola"]:
        href = (
            f"/consola/casos/{parts[2]}"
            if parts[1:2] == ["casos"] and len(parts) > 2
            else "/consola"
        )
        return href, "Volver a la consola", "consola"
    return "/presentar", "Volver al formulario", "presentar"


def install(app: FastAPI, pages: Pages) -> None:
    """Give browsers a page for a flood (429) and for a body over the limit (413)."""
    app.state.refusal_page = partial(refusal_page, pages, app.state.attachment_limits)


def refusal_page(
    pages: Pages, limits: AttachmentLimits, scope: Scope, status: int, headers: dict[str, str]
) -> Response | None:
    """The page for a flood (429) or a body over the limit (413); ``None`` for any other."""
    href, back_text, section = _way_back(str(scope.get("path", "")))
    sent = scope.get("method") == "POST"
    if status == 429:
        seconds = int(headers.get("Retry-After", "60") or 60)
        title = "Demasiadas solicitudes"
        message = (
            "Recibimos demasiadas solicitudes desde su conexión en poco tiempo y, para "
            "proteger el servicio, no atendimos esta."
        )
        advice = f"Espere {wait_text(seconds)} y vuelva a intentarlo."
        if sent:
            advice += (
                " Lo que envió no se registró todavía: con el botón «Atrás» de su navegador "
                "vuelve al formulario con lo que escribió."
            )
    elif status == 413 and _header(scope, b"content-type").startswith("multipart/"):
        count = limits.attachments_max_files
        megabytes = f"{limits.attachments_max_megabytes:g}".replace(".", ",")
        files = "1 archivo" if count == 1 else f"{count} archivos"
        title = "Archivos demasiado grandes"
        message = (
            f"Lo que envió supera el tamaño máximo que aceptamos: hasta {files} de "
            f"{megabytes} MB{'' if count == 1 else ' cada uno'} (fotos JPEG, PNG o WebP, o "
            "documentos PDF)."
        )
        advice = (
            "No se registró nada. Vuelva al formulario, elija menos archivos o archivos más "
            "pequeños (por ejemplo, fotos con menos resolución) y envíelo de nuevo."
        )
    elif status == 413:
        title = "Formulario demasiado grande"
        message = "Lo que envió supera el tamaño máximo que acepta este formulario."
        advice = "No se registró nada. Vuelva al formulario, acorte el texto y envíelo de nuevo."
    else:
        return None
    response = pages.render(
        Request(scope),
        "rechazo.html",
        status_code=status,
        private=True,
        title=title,
        section=section,
        message=message,
        advice=advice,
        back_href=href,
        back_text=back_text,
    )
    for name, value in headers.items():
        response.headers[name] = value
    return response
