"""Public pages: the citizen's tracking page and the transparency figures (no personal data)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from services.intake.web.attachments import attachment_store
from services.intake.web.pages import Pages
from services.intake.web.satisfaction import load_survey
from services.intake.web.transparency import (
    SMALL_SAMPLE,
    Figures,
    FiguresCache,
    Snapshot,
    bar_chart_svg,
    load_figures,
    to_csv,
)
from shared.cases import CaseNotFound, InvalidActionInput, get_case, history, perform
from shared.db.models import CaseHistoryRow, CaseRow
from shared.domain.actions import CITIZEN, REGISTRY
from shared.domain.case import AlreadyAnswered, TermEnded
from shared.domain.citizen_key import key_matches
from shared.domain.clocks import legal_status
from shared.domain.labels import action_label
from shared.evidence import (
    FIELD,
    AttachmentLimits,
    AttachmentRefused,
    AttachmentRow,
    discard,
    of_case,
    prepare,
    store_blobs,
)
from shared.lifecycle import DomainError, IllegalTransition, State, is_open
from shared.runtime import Deps
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code
from shared.validation import spanish_errors

log = logging.getLogger("defensa311.intake.web")
#: The file field of the tracking page's "add information" form (as on /presentar).
UPLOADS = "adjuntos"

#: Steps the citizen takes on the tracking page, as the page confirms them.
CITIZEN_DONE = {
    "add_information": "Recibimos su información: el Departamento la verá en su caso.",
    "reopen": "Su caso fue reabierto: el Departamento lo atenderá de nuevo con un nuevo plazo.",
    "answer_survey": "Gracias por responder la encuesta.",
    "file_reconsideration": "Recibimos su recurso de reconsideración: el Departamento lo "
    "decidirá y le notificará su decisión.",
    "file_appeal": "Recibimos su recurso de apelación: el superior lo decidirá y le notificará "
    "su decisión.",
}
#: What a step whose term has passed could not do, as the page says it.
_TERM_ENDED = {
    "reopen": "No se pudo reabrir",
    "file_reconsideration": "No se pudo presentar el recurso",
    "file_appeal": "No se pudo presentar el recurso",
}
WRONG_KEY = "clave: no corresponde a este caso; revise la clave de su constancia"
#: Timeline rows the public sees besides state changes: the citizen's own steps, no text.
PUBLIC_NOTES = frozenset({"file", "add_information", "answer_survey"})


@dataclass(frozen=True)
class PublicStep:
    at: datetime
    text: str


def public_timeline(rows: list[CaseHistoryRow]) -> list[PublicStep]:
    """State changes only, in plain Spanish: no actor, no reasons, no free text."""
    return [
        PublicStep(row.at, action_label(row.action))
        for row in rows
        if row.from_state != row.to_state or row.action in PUBLIC_NOTES
    ]


def citizen_steps(case: CaseRow, now: datetime, deps: Deps) -> dict[str, Any]:
    """Which of the citizen's steps the tracking page offers now, and their terms."""
    aggregate = deps.cases.case(case)
    ends = aggregate.reopen_ends()
    decided = case.state in (State.RESOLVED, State.CLOSED)
    recourse_ends = aggregate.recourse_ends() if decided else None
    recourses = aggregate.recourses_open() if recourse_ends is not None else ()
    in_term = recourse_ends is not None and now <= recourse_ends
    return {
        "file_reconsideration": in_term and "reconsideration" in recourses,
        "file_appeal": in_term and "appeal" in recourses,
        "recourse_ends": recourse_ends if recourses else None,
        "recourse_pending": case.state in (State.RECONSIDERATION, State.APPEAL),
        "add_information": is_open(case.state),
        "reopen": case.state in (State.RESOLVED, State.CLOSED) and ends is not None and now <= ends,
        "reopen_ends": ends,
        "answer_survey": case.state == State.CLOSED and case.survey_score is None,
        "survey_answered": case.survey_score is not None,
    }


@dataclass
class PublicPages:
    """What the public pages share: the renderer, the attachment limits and the figures' cache."""

    deps: Deps
    pages: Pages
    limits: AttachmentLimits
    ttl: timedelta
    stale: timedelta
    cache: FiguresCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = FiguresCache(self.ttl, self.compute, self.deps.clock.now, self.stale)

    def not_found(self, request: Request, message: str) -> Response:
        return self.pages.render(
            request,
            "no_encontrado.html",
            status_code=404,
            title="Caso no encontrado",
            section="seguimiento",
            message=message,
            back_href="/seguimiento",
            back_text="Consultar otro código",
        )

    async def tracking_view(
        self,
        request: Request,
        code: str,
        *,
        status_code: int = 200,
        notice: str | None = None,
        problem: str | None = None,
        failed: str | None = None,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        now = self.deps.clock.now()
        async with self.deps.uow() as uow:
            try:
                case = await get_case(uow, tracking_code=code)
            except CaseNotFound:
                return self.not_found(request, "No hay ningún caso con ese código.")
            rows = await history(uow, case.id)
            shown = await of_case(uow, case.id, public_only=True)
        return self.pages.render(
            request,
            "seguimiento.html",
            status_code=status_code,
            private=failed is not None,
            title=f"Caso {case.tracking_code}",
            section="seguimiento",
            case=case,
            open=is_open(case.state),
            legal_days_left=legal_status(case, now, self.deps.cases.terms).days_left,
            timeline=public_timeline(rows),
            attachments=shown,
            steps=citizen_steps(case, now, self.deps),
            notice=notice,
            problem=problem,
            failed=failed,
            limits=self.limits,
            errors=errors or {},
            values=values or {},
        )

    async def compute(self, now: datetime) -> Figures:
        async with self.deps.uow() as uow:
            figures = await load_figures(uow, now, self.deps.cases.terms.calendar, self.deps.config)
            figures.survey = await load_survey(uow, self.pages.department_name)
            return figures

    def validators(self, snapshot: Snapshot) -> dict[str, str]:
        return {
            "ETag": snapshot.etag,
            "Last-Modified": format_datetime(snapshot.computed_at.astimezone(UTC), usegmt=True),
            "Cache-Control": f"public, max-age={int(self.ttl.total_seconds())}",
        }


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    ttl = timedelta(seconds=deps.settings.transparency_cache_seconds)
    stale = timedelta(seconds=deps.settings.transparency_stale_seconds)
    app.state.public_pages = PublicPages(deps, pages, app.state.attachment_limits, ttl, stale)
    app.include_router(router)


def public_of(request: Request) -> PublicPages:
    door: PublicPages = request.app.state.public_pages
    return door


router = APIRouter(include_in_schema=False)
Door = Annotated[PublicPages, Depends(public_of)]


@router.get("/seguimiento")
async def tracking_form(request: Request, door: Door, codigo: str | None = None) -> Response:
    error = None
    if codigo is not None:
        try:
            code = normalize_tracking_code(codigo)
        except ValueError as exc:
            error = f"Código mal escrito: {exc}" if codigo.strip() else "Escriba el código."
        else:
            return RedirectResponse(f"/seguimiento/{code}", status_code=303)
    return door.pages.render(
        request,
        "seguimiento_form.html",
        status_code=422 if error else 200,
        title="Seguimiento de casos",
        section="seguimiento",
        code=codigo or "",
        error=error,
    )


@router.get("/seguimiento/{tracking_code}")
async def tracking_page(
    request: Request, tracking_code: str, door: Door, hecho: str = ""
) -> Response:
    try:
        code = normalize_tracking_code(tracking_code)
    except ValueError:
        return door.not_found(request, "El código está mal escrito. Revíselo e inténtelo de nuevo.")
    if code != tracking_code:
        return RedirectResponse(f"/seguimiento/{code}", status_code=308)
    return await door.tracking_view(request, code, notice=CITIZEN_DONE.get(hecho))


@router.post("/seguimiento/{tracking_code}/{action}")
async def citizen_step(request: Request, tracking_code: str, action: str, door: Door) -> Response:
    """One of the citizen's steps, proven with the clave; a wrong clave is a failed guess
    (the same throttle as every other secret)."""
    try:
        code = normalize_tracking_code(tracking_code)
    except ValueError:
        return door.not_found(request, "El código está mal escrito. Revíselo e inténtelo de nuevo.")
    spec = REGISTRY.get(action)
    if spec is None or not spec.may(CITIZEN):
        return door.not_found(request, "Esa acción no existe.")
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}

    async def again(status: int, problem: str, errors: dict[str, str]) -> Response:
        return await door.tracking_view(
            request,
            code,
            status_code=status,
            problem=problem,
            failed=action,
            errors=errors,
            values={k: v for k, v in form.items() if k != "clave"},
        )

    client, throttle = client_of(request), throttle_of(request)
    wait = throttle.retry_after(client)
    if wait:
        response = await again(429, throttle.message(wait), {})
        response.headers["Retry-After"] = str(wait)
        return response
    params = {name: form[name] for name in spec.field_names if form.get(name, "").strip()}
    try:
        body = spec.body.model_validate(params)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in spanish_errors(exc):
            errors.setdefault(error["field"], error["message"])
        labels = {f.name: f.label for f in spec.fields}
        summary = "; ".join(f"{labels.get(k, k)}: {m}" for k, m in errors.items())
        return await again(422, f"Revise el formulario: {summary}", errors)
    async with door.deps.uow() as uow:
        try:
            stored = (await get_case(uow, tracking_code=code)).clave_hash
        except CaseNotFound:
            return door.not_found(request, "No hay ningún caso con ese código.")
    if not await asyncio.to_thread(key_matches, form.get("clave", ""), stored):
        throttle.failed(client)
        log.info("citizen key refused", extra={"tracking_code": code, "action": action})
        return await again(403, WRONG_KEY, {"clave": WRONG_KEY.removeprefix("clave: ")})
    now = door.deps.clock.now()
    rows: list[AttachmentRow] = []
    store = attachment_store(request.app)
    if action == "add_information":
        files = []
        for upload in raw.getlist(UPLOADS):
            if isinstance(upload, str) or (not upload.filename and not upload.size):
                continue  # the empty part a browser sends when no file was chosen
            files.append((upload.filename or "", await upload.read(door.limits.max_bytes + 1)))
        try:
            prepared = await asyncio.to_thread(prepare, files, door.limits)
        except AttachmentRefused as exc:
            message = "; ".join(e.message for e in exc.errors)
            return await again(422, f"Revise el formulario: {message}", {FIELD: message})
        rows = await store_blobs(store, prepared, "citizen", now)
        body = body.model_copy(update={"attachments": len(rows)})
    try:
        async with door.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code, lock=True)
            await perform(uow, door.deps.cases, case, action, body, actor="ciudadano", now=now)
            for row in rows:
                row.case_id = case.id
                uow.session.add(row)
    except TermEnded as exc:
        await discard(store, rows)
        failed = _TERM_ENDED.get(action, "No se pudo completar el paso")
        return await again(409, f"{failed}: {exc.message}.", {})
    except AlreadyAnswered as exc:
        await discard(store, rows)
        return await again(409, f"{str(exc)[:1].upper()}{str(exc)[1:]}.", {})
    except IllegalTransition:
        await discard(store, rows)
        return await again(
            409, "El estado del caso ya no permite ese paso. Revise el estado actual.", {}
        )
    except InvalidActionInput as exc:
        await discard(store, rows)
        return await again(422, f"Revise el formulario: {exc.message}", {exc.field: exc.message})
    except DomainError as exc:
        await discard(store, rows)
        return await again(409, str(exc), {})
    except BaseException:
        await discard(store, rows)  # nothing half-stored: no bytes without their step
        raise
    log.info("citizen step taken", extra={"tracking_code": code, "action": action})
    return RedirectResponse(f"/seguimiento/{code}?hecho={action}", status_code=303)


@router.get("/transparencia")
async def transparency(request: Request, door: Door) -> Response:
    snapshot = await door.cache.get()
    data = snapshot.figures
    survey = data.survey
    charts = []
    for chart_id, title, header, rows in (
        ("tipo", "Casos por tipo", "Tipo", data.by_kind),
        ("canal", "Casos por canal", "Canal", data.by_channel),
        ("mes", "Casos recibidos por mes", "Mes", data.by_month),
    ):
        bars = [(label, float(n)) for _, label, n in rows]
        charts.append(
            {
                "id": chart_id,
                "title": title,
                "group_header": header,
                "rows": [(label, n) for _, label, n in rows],
                "svg": bar_chart_svg(title, bars, chart_id=chart_id),
            }
        )
    medians_svg = bar_chart_svg(
        "Mediana de días hábiles hasta la resolución",
        [(m.label, m.median_days) for m in data.medians],
        unit=" d",
        notes=[f"(n={m.count})" for m in data.medians],
        chart_id="medianas",
    )
    page = door.pages.render(
        request,
        "transparencia.html",
        title="Transparencia",
        section="transparencia",
        data=data,
        charts=charts,
        medians_svg=medians_svg,
        small_sample=SMALL_SAMPLE,
        survey=survey,
    )
    # The page also shows who is signed in: no ETag, only the figures' age.
    page.headers["Last-Modified"] = door.validators(snapshot)["Last-Modified"]
    return page


@router.get("/transparencia.csv")
async def transparency_csv(request: Request, door: Door) -> Response:
    snapshot = await door.cache.get()
    headers = door.validators(snapshot)
    if snapshot.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = 'attachment; filename="transparencia.csv"'
    return Response(to_csv(snapshot.figures), media_type="text/csv; charset=utf-8", headers=headers)
