"""The web pages: the staff console, the citizen's tracking page, transparency.

Server-rendered HTML (Jinja2), in Spanish, with every asset served by the app. ``install``
mounts the stylesheet and adds the public pages (:mod:`services.intake.web.public`) and the
console (:mod:`services.intake.web.console`); the shared rendering helpers live here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.intake.web.session import Session
from shared.calendar import TZ, CalendarKind
from shared.domain.labels import (
    CHANNEL_LABELS,
    DECISION_LABELS,
    DETAIL_LABELS,
    KIND_LABELS,
    STATE_LABELS,
    action_label,
    actor_label,
)
from shared.runtime import Deps
from shared.spanish import long_date

__all__ = [
    "DECISION_LABELS",
    "DETAIL_LABELS",
    "KIND_LABELS",
    "STATE_EXPLANATIONS",
    "STATE_LABELS",
    "Pages",
    "install",
]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = "/estaticos"

STATE_EXPLANATIONS = {
    "received": "Su caso fue registrado y está pendiente de clasificación.",
    "classified": "El Departamento revisó su caso y decide cómo tramitarlo.",
    "inspection": "El Departamento está inspeccionando lo que usted reportó.",
    "remitted": "Su caso fue enviado a la dependencia responsable, que debe responder.",
    "on_agenda": "Su sugerencia está en la agenda de una reunión, donde será presentada.",
    "resolved": "Su caso fue resuelto. La respuesta se le envía al lugar de notificación "
    "que indicó.",
    "closed": "Su caso está cerrado.",
    "reconsideration": "Usted presentó un recurso de reconsideración: el Departamento revisa "
    "su decisión y le notificará lo que decida.",
    "appeal": "Usted presentó un recurso de apelación: el superior revisa la decisión y le "
    "notificará lo que decida.",
}


def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


class Pages:
    """The template environment and the helpers every page uses."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        versions = {p.name: _asset_version(p.name) for p in STATIC.iterdir() if p.is_file()}
        business = deps.cases.terms.calendar.kind is CalendarKind.BUSINESS
        self.env.globals.update(
            static=lambda name: f"{STATIC_URL}/{name}?v={versions.get(name, '0')}",
            state_label=lambda s: STATE_LABELS.get(s, s),
            state_explanation=lambda s: STATE_EXPLANATIONS.get(s, ""),
            action_label=action_label,
            actor_label=lambda actor: actor_label(actor, self.department_name),
            kind_label=lambda k: KIND_LABELS.get(k or "", "Sin clasificar"),
            channel_label=lambda c: CHANNEL_LABELS.get(c, c),
            decision_label=lambda d: DECISION_LABELS.get(d, d),
            department_name=self.department_name,
            role_label=self.role_label,
            date=format_date,
            datetime=format_datetime,
            percent=lambda x: f"{x * 100:.0f} %",
            clock_badge=lambda days, running=True: clock_badge(days, running, business),
            institution=deps.config.institution.name,
            office=deps.config.institution.office,
            legal_days=deps.config.deadlines.days,
        )

    def department_name(self, code: str | None) -> str:
        department = self.deps.config.department(code or "")
        return department.name if department else (code or "—")

    def role_label(self, role: str) -> str:
        if role.startswith("department:"):
            return self.department_name(role.removeprefix("department:"))
        return {
            "staff": "Personal del Departamento",
            "supervisor": "Supervisión",
            "superior": "Superior jerárquico",
        }.get(role, role)

    def render(
        self,
        request: Request,
        template: str,
        *,
        status_code: int = 200,
        session: Session | None = None,
        private: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        context.setdefault("title", "")
        context.setdefault("section", "")
        html = self.env.get_template(template).render(session=session, **context)
        response = HTMLResponse(html, status_code=status_code)
        secure_headers(response, private=private)
        return response

    def case_not_found(self, request: Request, session: Session | None) -> HTMLResponse:
        """The console's one answer for a case that does not exist or is not the reader's."""
        return self.render(
            request,
            "no_encontrado.html",
            status_code=404,
            session=session,
            private=True,
            title="Caso no encontrado",
            section="consola",
            message="No hay ningún caso con ese código a su alcance.",
            back_href="/consola",
            back_text="Volver a la bandeja",
        )


def secure_headers(response: Any, *, private: bool) -> None:
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'none'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Tracking codes travel in URLs: never leak them to another site. ("same-origin", not
    # "no-referrer": under that a browser sends ``Origin: null`` with the page's own forms,
    # and the console's sign-in refuses an unknown origin as cross-site.)
    response.headers["Referrer-Policy"] = "same-origin"
    if private:
        response.headers["Cache-Control"] = "no-store"


def clock_badge(days: int, running: bool, business: bool) -> tuple[str, str]:
    """CSS class and Spanish text of a clock's days left (≤ 3 is near, < 0 overdue)."""

    def unit(n: int) -> str:
        if business:
            return f"{n} día hábil" if n == 1 else f"{n} días hábiles"
        return f"{n} día" if n == 1 else f"{n} días"

    if not running:
        return "neutra", "Detenido"
    if days < 0:
        return "vencido", f"Vencido hace {unit(-days)}"
    if days == 0:
        return "proximo", "Vence hoy"
    if days <= 3:
        return "proximo", f"Quedan {unit(days)}"
    return "a-tiempo", f"Quedan {unit(days)}"


def format_date(value: datetime | None) -> str:
    if value is None:
        return "—"
    return long_date(value.astimezone(TZ))


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return "—"
    local = value.astimezone(TZ)
    return f"{format_date(value)}, {local:%H:%M}"


def install(app: FastAPI, deps: Deps) -> None:
    """Mount the assets and add the public pages (the clave link's among them) and the console."""
    from services.intake import refusals
    from services.intake.web import attachments as web_attachments
    from services.intake.web import clave as web_clave
    from services.intake.web import console as web_console
    from services.intake.web import filing as web_filing
    from services.intake.web import mailbox as web_mailbox
    from services.intake.web import public as web_public
    from services.intake.web import session as web_session

    pages = Pages(deps)
    app.state.pages = pages
    refusals.install(app, pages)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="web-static")
    web_public.install(app, deps, pages)
    web_session.install(app, deps, app.state.intake_settings)
    web_console.install(app)
    web_mailbox.install(app, deps, pages)
    web_attachments.install(app, deps, pages)
    web_filing.install(app, deps, pages)
    app.include_router(web_clave.router)


def pages_of(request: Request) -> Pages:
    """The app's page renderer, for a route: ``Annotated[Pages, Depends(pages_of)]``."""
    pages: Pages = request.app.state.pages
    return pages


AppPages = Annotated[Pages, Depends(pages_of)]
