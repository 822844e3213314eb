"""The staff console (``/consola``): sign-in, inbox, case page with its actions, filing a
presencial case; and the department view (its remitted cases, the answer and return forms).

Every action goes through :func:`shared.cases.perform` in one unit of work on the locked
case row. POST forms carry the session's CSRF token; the session cookie is ``SameSite=Strict``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import ColumnElement, select

from services.intake.dependencies import AppDeps, Limits, limits_of
from services.intake.uploads import COUNT_FIELD, UPLOADS, prepared_uploads, takes_files
from services.intake.web import session as web_session
from services.intake.web.attachments import attachment_store
from services.intake.web.pages import AppPages, pages_of
from services.intake.web.session import AppSessions, Session
from shared.calendar import days_left
from shared.cases import (
    CaseNotFound,
    InvalidActionInput,
    NotYourCase,
    file_case,
    get_case,
    history,
    issue_key,
    perform,
)
from shared.cases.duplicates import duplicates_for, flagged_as_duplicates, joined_to
from shared.cases.form import submission_data
from shared.contract import SubmissionInvalid, validate_submission
from shared.db.models import CaseRow
from shared.domain.actions import REGISTRY, STAFF_ROLES, offered_to
from shared.domain.clocks import (
    Clock,
    clock_statuses,
    is_overdue,
    legal_status,
    overdue_clause,
)
from shared.domain.labels import (
    DECISION_LABELS,
    KIND_LABELS,
    RECOURSE_OUTCOME_LABELS,
    actor_label,
    timeline_text,
)
from shared.evidence import (
    FIELD,
    AttachmentRefused,
    AttachmentRow,
    discard,
    store_blobs,
)
from shared.http import deps_of
from shared.lifecycle import (
    OPEN_STATES,
    RECOURSE_STATES,
    DomainError,
    IllegalTransition,
    State,
    is_open,
)
from shared.messaging import ANSWERS_INBOX
from shared.paging import (
    Cursor,
    InvalidCursor,
    after,
    capped_count,
    capped_counts,
    next_cursor,
)
from shared.runtime import Deps
from shared.search import InvalidSearch, search_clause, search_words
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code
from shared.validation import spanish_errors

log = logging.getLogger("defensa311.intake.console")

NEAR_DAYS = 3
# A department's list of remitted cases.
LIST_LIMIT = 300
# The inbox: the most urgent open cases of each alert, and a page of the list by state
# (keyset: "Página siguiente" carries the last row's instant and id).
URGENT_LIMIT = 50
PAGE_SIZE = 50
# A search shows the newest matches; more words narrow it.
SEARCH_LIMIT = 100

FIELD_LABELS = {
    "kind": "Tipo",
    "category": "Categoría",
    "description": "Descripción",
    "anonymous": "Anónimo",
    "citizen.full_name": "Nombre completo",
    "citizen.id_type": "Tipo de documento",
    "citizen.id_number": "Documento de identidad",
    "citizen.ruc_dv": "DV del RUC",
    "citizen.representative": "Representante legal",
    "citizen.representative.full_name": "Nombre del representante legal",
    "citizen.representative.id_type": "Tipo de documento del representante legal",
    "citizen.representative.id_number": "Documento del representante legal",
    "citizen.phone": "Teléfono",
    "citizen.email": "Correo electrónico",
    "notify": "Notificaciones",
    "notify.email": "Correo para notificaciones",
    "notify.phone": "Teléfono para notificaciones",
    "notify.address": "Dirección para notificaciones",
    "location": "Lugar de los hechos",
    "location.district": "Distrito",
    "location.corregimiento": "Corregimiento",
    "location.address": "Dirección o referencia",
}
ANCHORS = {
    "citizen.representative": "grupo-juridica",
    "notify": "grupo-notify",
    "location": "grupo-location",
}
FILED = "Caso registrado. Entregue al ciudadano su código de seguimiento: {code}."


@dataclass(frozen=True)
class Row:
    case: CaseRow
    days_left: int
    running: bool
    urgency: str
    #: The department's term was capped by the legal one (shown on the department's list).
    capped_note: str = ""


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str
    kind_label: str
    text: str
    who: str | None


def row_for(case: CaseRow, now: datetime, deps: Deps, *, department_clock: bool = False) -> Row:
    """A list row: the days left of the clock that ends first (on its view, the department's)."""
    statuses = clock_statuses(case, now, deps.cases.terms)
    if department_clock:
        statuses = [s for s in statuses if s.clock is Clock.DEPARTMENT] or statuses
    if not statuses:
        return Row(case, legal_status(case, now, deps.cases.terms).days_left, False, "")
    nearest = min(statuses, key=lambda s: s.due_at)
    late = nearest.overdue if department_clock else is_overdue(case, now)
    urgency = ""
    if late:
        urgency = "fila-vencida"
    elif nearest.days_left <= NEAR_DAYS:
        urgency = "fila-proxima"
    return Row(
        case, nearest.days_left, True, urgency, capped_note(case, deps) if department_clock else ""
    )


def count_label(count: int, capped: bool) -> str:
    """A count as the console shows it: exact, or "más de 10 000" beyond the cap."""
    grouped = f"{count:,}".replace(",", "\u00a0")  # digits grouped by a space (RAE)
    return f"más de {grouped}" if capped else grouped


def capped_note(case: CaseRow, deps: Deps) -> str:
    """The note that the department's due date was capped by the legal term, if it was."""
    terms = deps.cases.terms
    if case.remitted_at is None or case.department_due_at is None:
        return ""
    if not terms.department_due_capped(case.remitted_at, case.department_due_at):
        return ""
    return terms.cap_note()


def clocks_for(
    case: CaseRow, now: datetime, deps: Deps, department_name: Callable[[str], str]
) -> list[dict[str, Any]]:
    """The case page's clocks: those running, or the legal term stopped; on a decision, until
    when a recurso may still be filed against it."""
    running = clock_statuses(case, now, deps.cases.terms)
    statuses = running or [legal_status(case, now, deps.cases.terms)]
    shown = [
        {
            "label": "Plazo legal"
            if status.clock is Clock.LEGAL
            else "Plazo para decidir el recurso"
            if status.clock is Clock.RECOURSE
            else f"Plazo de la dependencia ({department_name(case.department or '')})",
            "due_at": status.due_at,
            "days_left": status.days_left,
            "running": bool(running),
            "alert": (capped_note(case, deps) or None)
            if status.clock is Clock.DEPARTMENT
            else None,
        }
        for status in statuses
    ]
    aggregate = deps.cases.case(case)
    ends = aggregate.recourse_ends() if case.state in (State.RESOLVED, State.CLOSED) else None
    if ends is not None and now <= ends and aggregate.recourses_open():
        shown.append(
            {
                "label": "Plazo para recurrir la decisión",
                "due_at": ends,
                "days_left": days_left(ends, now, deps.cases.terms.calendar),
                "running": True,
                "alert": None,
            }
        )
    return shown


ID_TYPE_LABELS = {"cedula": "Cédula", "pasaporte": "Pasaporte", "ruc": "RUC"}


def _document(citizen: dict[str, Any]) -> str | None:
    number = citizen.get("id_number")
    if not number:
        return None
    label = ID_TYPE_LABELS.get(citizen.get("id_type") or "cedula", "Documento")
    dv = f" DV {citizen['ruc_dv']}" if citizen.get("ruc_dv") else ""
    return f"{label} {number}{dv}"


def _representative(citizen: dict[str, Any]) -> str | None:
    rep = citizen.get("representative")
    if not isinstance(rep, dict):
        return None
    return f"{rep.get('full_name', '')} ({_document(rep) or '—'})"


def person_data(case: CaseRow) -> list[tuple[str, str]]:
    citizen, notify, location = case.citizen or {}, case.notify or {}, case.location or {}
    items = [
        ("Nombre", citizen.get("full_name")),
        ("Documento", _document(citizen)),
        ("Representante legal", _representative(citizen)),
        ("Teléfono", citizen.get("phone")),
        ("Correo", citizen.get("email")),
        ("Notificar por correo", notify.get("email")),
        ("Notificar por teléfono", notify.get("phone")),
        ("Notificar en la dirección", notify.get("address")),
        ("Provincia", location.get("province")),
        ("Distrito", location.get("district")),
        ("Corregimiento", location.get("corregimiento")),
        ("Lugar de los hechos", location.get("address")),
    ]
    if location.get("lat") is not None:
        items.append(("Coordenadas", f"{location.get('lat')}, {location.get('lon')}"))
    return [(label, str(value)) for label, value in items if value]


async def timeline_for(
    deps: Deps, case: CaseRow, department_name: Callable[[str], str]
) -> list[TimelineItem]:
    """The case's audit rows, as sentences in Spanish (the notifier writes its own there:
    a notification queued, skipped or delivered by staff)."""
    items: list[TimelineItem] = []
    async with deps.uow() as uow:
        rows = await history(uow, case.id)
    for row in rows:
        changed = row.from_state != row.to_state or row.action == "file"
        items.append(
            TimelineItem(
                row.at,
                "estado" if changed else "nota",
                "Cambio de estado" if changed else "Nota",
                timeline_text(row.action, row.details, department_name),
                actor_label(row.actor, department_name),
            )
        )
    return sorted(items, key=lambda item: item.at)


def install(app: FastAPI) -> None:
    app.include_router(router)


router = APIRouter(include_in_schema=False)


def session_of(request: Request) -> Session | None:
    return web_session.current(request)


def to_login() -> Response:
    return RedirectResponse("/consola", status_code=303)


def forbidden(request: Request, session: Session | None) -> Response:
    return pages_of(request).render(
        request,
        "no_encontrado.html",
        status_code=403,
        session=session,
        private=True,
        title="Solicitud rechazada",
        section="consola",
        message="El formulario caducó o no es válido. Vuelva a la página e inténtelo de nuevo.",
        back_href="/consola",
        back_text="Volver a la consola",
    )


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/consola")
async def console(
    request: Request,
    deps: AppDeps,
    pages: AppPages,
    estado: str | None = None,
    hecho: str | None = None,
    codigo: str | None = None,
    despues: str | None = None,
) -> Response:
    session = session_of(request)
    if session is None:
        return pages.render(
            request,
            "consola_entrar.html",
            title="Consola del personal",
            section="consola",
            private=True,
        )
    spec = REGISTRY.get(hecho or "")
    done = spec.done if spec else None
    notice = done.format(code=codigo or "") if done else None
    now = deps.clock.now()
    if session.department is not None:
        async with deps.uow() as uow:
            cases = await uow.session.scalars(
                select(CaseRow)
                .where(
                    CaseRow.state == State.REMITTED,
                    CaseRow.department == session.department,
                )
                .order_by(CaseRow.department_due_at)
                .limit(LIST_LIMIT)
            )
            rows = [row_for(c, now, deps, department_clock=True) for c in cases]
        return pages.render(
            request,
            "consola_departamento.html",
            session=session,
            private=True,
            title="Casos remitidos",
            section="consola",
            notice=notice,
            rows=rows,
            department_name=pages.department_name(session.department),
        )
    if not (session.is_staff or session.is_superior):
        return forbidden(request, session)
    state_filter = estado if estado in {s.value for s in State} else "open"
    try:
        after_item = Cursor.decode(despues) if despues else None
    except InvalidCursor:
        after_item = None  # a stale or edited link: the first page
    # The superior's work is the apelaciones pending: every table of the inbox keeps to them.
    scope: list[ColumnElement[bool]] = []
    if session.is_superior:
        state_filter = State.APPEAL.value
        scope = [CaseRow.state == State.APPEAL.value]
    open_states = CaseRow.state.in_([s.value for s in OPEN_STATES])
    recourse_states = CaseRow.state.in_([s.value for s in RECOURSE_STATES])
    overdue_now = overdue_clause(
        CaseRow.state,
        CaseRow.due_at,
        CaseRow.department_due_at,
        now,
        recourse_due=CaseRow.recourse_due_at,
    )
    not_overdue_now = overdue_clause(
        CaseRow.state,
        CaseRow.due_at,
        CaseRow.department_due_at,
        now,
        recourse_due=CaseRow.recourse_due_at,
        overdue=False,
    )
    most_urgent: tuple[Any, ...] = (CaseRow.due_at, CaseRow.id)
    async with deps.uow() as uow:

        async def first(*where: ColumnElement[bool]) -> list[CaseRow]:
            query = select(CaseRow).where(*where).order_by(*most_urgent).limit(URGENT_LIMIT)
            return list(await uow.session.scalars(query))

        # Every figure is exact up to COUNT_CAP and reads "más de …" beyond: counting
        # years of closed cases on every visit would cost more than the whole page.
        counts = await capped_counts(
            uow.session, CaseRow.__table__, {s.value: [CaseRow.state == s] for s in State}
        )
        # Counted along the open cases' due dates, the overdue ones come first.
        overdue_count = await capped_count(
            uow.session, CaseRow.__table__, [overdue_now, *scope], order_by=most_urgent
        )
        overdue_cases = await first(overdue_now, *scope)
        # (due_at >= now holds for every open case not overdue: it bounds the index scan.)
        upcoming = await first(open_states, CaseRow.due_at >= now, not_overdue_now, *scope)
        # A pending recurso runs on its own term, the one that ends first first.
        upcoming += list(
            await uow.session.scalars(
                select(CaseRow)
                .where(recourse_states, not_overdue_now, *scope)
                .order_by(CaseRow.recourse_due_at, CaseRow.id)
                .limit(URGENT_LIMIT)
            )
        )
        triage_cases = [] if scope else await first(CaseRow.state == State.CLASSIFIED)
        if state_filter == "open":
            order: tuple[Any, ...] = most_urgent
            where: list[ColumnElement[bool]] = [open_states]
            if after_item is not None:
                where.append(after(after_item, CaseRow.due_at, CaseRow.id, newest_first=False))
        else:
            order = (CaseRow.updated_at.desc(), CaseRow.id)
            where = [CaseRow.state == state_filter]
            if after_item is not None:
                where.append(after(after_item, CaseRow.updated_at, CaseRow.id, newest_first=True))
        listed_cases = list(
            await uow.session.scalars(
                select(CaseRow).where(*where).order_by(*order).limit(PAGE_SIZE + 1)
            )
        )
        suspected = await flagged_as_duplicates(
            uow, [*overdue_cases, *upcoming, *triage_cases, *listed_cases]
        )
    from services.intake.web.pages import STATE_LABELS

    open_count = (
        sum(counts[s.value][0] for s in OPEN_STATES),
        any(counts[s.value][1] for s in OPEN_STATES),
    )
    state_counts = [("open", "Abiertos", count_label(*open_count))]
    state_counts += [(s.value, STATE_LABELS[s.value], count_label(*counts[s.value])) for s in State]
    listed_label = dict((c, label) for c, label, _ in state_counts)[state_filter]
    near = [r for r in (row_for(c, now, deps) for c in upcoming) if r.urgency == "fila-proxima"]
    following = next_cursor(
        listed_cases, PAGE_SIZE, at="due_at" if state_filter == "open" else "updated_at"
    )
    return pages.render(
        request,
        "consola_bandeja.html",
        session=session,
        private=True,
        title="Bandeja de casos",
        section="consola",
        notice=notice,
        search="",
        overdue=[row_for(c, now, deps) for c in overdue_cases],
        overdue_count=count_label(*overdue_count),
        near=near,
        near_count=f"{len(near)} o más" if len(near) == URGENT_LIMIT else str(len(near)),
        triage=[row_for(c, now, deps) for c in triage_cases],
        triage_count=count_label(*counts[State.CLASSIFIED.value]),
        urgent_limit=URGENT_LIMIT,
        state_counts=state_counts,
        state_filter=state_filter,
        listed=[row_for(c, now, deps) for c in listed_cases[:PAGE_SIZE]],
        listed_caption=f"Casos: {listed_label}",
        next_page=f"/consola?estado={state_filter}&despues={following}" if following else None,
        first_page=f"/consola?estado={state_filter}" if after_item is not None else None,
        suspected=suspected,
    )


@router.post("/consola/entrar")
async def sign_in(request: Request, pages: AppPages, sessions: AppSessions) -> Response:
    if sessions.cross_site(request):
        return forbidden(request, None)  # login CSRF: a form posted from another site
    who, throttle = client_of(request), throttle_of(request)
    form = await form_of(request)
    wait = throttle.retry_after(who)
    if wait:
        signed_in = None
        error = "Demasiados intentos fallidos. Espere unos minutos."
        status = 429
    else:
        signed_in = await sessions.sign_in(form.get("token", ""))
        error, status = "Token no válido.", 401
    session, cookie = signed_in or (None, "")
    if session is None or not (session.is_staff or session.department or session.is_superior):
        if session is None and status == 401:
            throttle.failed(who)
        elif session is not None:
            await sessions.sign_out(session)
        page = pages.render(
            request,
            "consola_entrar.html",
            status_code=status,
            private=True,
            title="Consola del personal",
            section="consola",
            error=error if session is None else "Este token no da acceso a la consola.",
        )
        if wait:
            page.headers["Retry-After"] = str(wait)
        return page
    response = RedirectResponse("/consola", status_code=303)
    sessions.set_cookie(response, request, cookie)
    return response


@router.post("/consola/salir")
async def sign_out(request: Request, sessions: AppSessions) -> Response:
    session = session_of(request)
    form = await form_of(request)
    if session is not None and not web_session.csrf_ok(session, form.get("csrf")):
        return forbidden(request, session)
    if session is not None:
        await sessions.sign_out(session)
    response = RedirectResponse("/consola", status_code=303)
    sessions.clear_cookie(response)
    return response


@router.get("/consola/buscar")
async def search(
    request: Request, deps: AppDeps, pages: AppPages, codigo: str = "", q: str = ""
) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
    if codigo and not q:
        try:
            code = normalize_tracking_code(codigo)
        except ValueError:
            return pages.case_not_found(request, session)
        return RedirectResponse(f"/consola/casos/{code}", status_code=303)
    if not (session.is_staff or session.department):
        return forbidden(request, session)
    with contextlib.suppress(ValueError):  # a whole tracking code: straight to the case
        code = normalize_tracking_code(q)
        return RedirectResponse(f"/consola/casos/{code}", status_code=303)
    now = deps.clock.now()
    error = None
    rows: list[Row] = []
    more = False
    try:
        words = search_words(q)
    except InvalidSearch as exc:
        error = exc.error.message
    else:
        where = [search_clause(words, deps.engine.dialect.name)]
        if session.department is not None:  # a department sees only its cases
            where.append(CaseRow.department == session.department)
        async with deps.uow() as uow:
            found = list(
                await uow.session.scalars(
                    select(CaseRow)
                    .where(*where)
                    .order_by(CaseRow.received_at.desc(), CaseRow.id)
                    .limit(SEARCH_LIMIT + 1)
                )
            )
        more = len(found) > SEARCH_LIMIT
        rows = [row_for(c, now, deps) for c in found[:SEARCH_LIMIT]]
    return pages.render(
        request,
        "consola_buscar.html",
        status_code=422 if error else 200,
        session=session,
        private=True,
        title="Buscar casos",
        section="consola",
        search=q,
        error=error,
        rows=rows,
        more=more,
        limit=SEARCH_LIMIT,
    )


def new_case_page(
    request: Request,
    session: Session,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return pages_of(request).render(
        request,
        "consola_nuevo.html",
        status_code=status_code,
        session=session,
        private=True,
        title="Registrar caso presencial",
        section="consola",
        values=values,
        errors=errors,
        kinds=list(KIND_LABELS.items()),
        field_labels=FIELD_LABELS,
        anchors=ANCHORS,
    )


@router.get("/consola/nuevo")
async def new_case_form(request: Request) -> Response:
    session = session_of(request)
    if session is None or not session.is_staff:
        return to_login()
    return new_case_page(request, session, {}, {})


@router.post("/consola/nuevo")
async def new_case(request: Request, deps: AppDeps) -> Response:
    session = session_of(request)
    if session is None or not session.is_staff:
        return to_login()
    form = await form_of(request)
    if not web_session.csrf_ok(session, form.get("csrf")):
        return forbidden(request, session)
    try:
        submission = validate_submission(submission_data(form))
    except SubmissionInvalid as exc:
        errors: dict[str, str] = {}
        for error in exc.errors:
            errors.setdefault(error.field or "_", error.message)
        return new_case_page(request, session, form, errors, status_code=422)
    async with deps.uow() as uow:
        case, _ = await file_case(
            uow,
            deps.cases,
            submission,
            channel="presencial",
            actor=session.actor,
            now=deps.clock.now(),
        )
        code = case.tracking_code
    return RedirectResponse(f"/consola/casos/{code}?hecho=file", status_code=303)


async def case_page(
    request: Request,
    session: Session,
    code: str,
    *,
    status_code: int = 200,
    problem: str | None = None,
    notice: str | None = None,
    failed_action: str | None = None,
    form_values: dict[str, str] | None = None,
    form_errors: dict[str, str] | None = None,
) -> Response:
    deps, pages, limits = deps_of(request), pages_of(request), limits_of(request)
    async with deps.uow() as uow:
        try:
            case = await get_case(uow, tracking_code=code)
        except CaseNotFound:
            return pages.case_not_found(request, session)
        if session.department is not None and not (
            case.state == State.REMITTED and case.department == session.department
        ):
            return pages.case_not_found(request, session)
        duplicates, joined, main = [], [], None
        if session.department is None:
            joined = await joined_to(uow, case)
            if case.duplicate_of is not None:
                main = await uow.session.get(CaseRow, case.duplicate_of)
            elif is_open(case.state):
                duplicates = await duplicates_for(uow, case, deps.config.duplicates)
    actions = offered_to(deps.cases.lifecycle, session.role, case)
    now = deps.clock.now()
    return pages.render(
        request,
        "consola_caso.html",
        status_code=status_code,
        session=session,
        private=True,
        title=f"Caso {case.tracking_code}",
        section="consola",
        case=case,
        clocks=clocks_for(case, now, deps, pages.department_name),
        person=person_data(case),
        timeline=await timeline_for(deps, case, pages.department_name),
        actions=[REGISTRY[a] for a in actions],
        duplicates=duplicates,
        joined=joined,
        main=main,
        choices={
            "kinds": list(KIND_LABELS.items()),
            "decisions": list(DECISION_LABELS.items()),
            "departments": [(d.code, d.name) for d in deps.config.departments],
            "decline_reasons": list(deps.config.decline_labels.items()),
            "entities": [(e.code, e.name) for e in deps.config.entities],
            "recourse_outcomes": list(RECOURSE_OUTCOME_LABELS.items()),
        },
        problem=problem,
        notice=notice,
        failed_action=failed_action,
        form_values=form_values or {},
        form_errors=form_errors or {},
        today=now.date().isoformat(),
        takes_files=lambda spec: takes_files(spec.body),
        uploads=UPLOADS,
        limits=limits,
    )


@router.get("/consola/casos/{code}")
async def show_case(
    request: Request, code: str, pages: AppPages, hecho: str | None = None
) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
    try:
        canonical = normalize_tracking_code(code)
    except ValueError:
        return pages.case_not_found(request, session)
    notice = None
    if hecho == "file":
        notice = FILED.format(code=canonical)
    elif (spec := REGISTRY.get(hecho or "")) is not None:
        notice = f"Hecho: {spec.label}."
    return await case_page(request, session, canonical, notice=notice)


@router.post("/consola/casos/{code}/nueva-clave")
async def new_citizen_key(request: Request, code: str, deps: AppDeps, pages: AppPages) -> Response:
    """Staff issue the citizen a new clave after checking their identity; shown once."""
    session = session_of(request)
    if session is None:
        return to_login()
    form = await form_of(request)
    if not web_session.csrf_ok(session, form.get("csrf")) or session.role not in STAFF_ROLES:
        return forbidden(request, session)
    try:
        code = normalize_tracking_code(code)
        async with deps.uow() as uow:
            case = await get_case(uow, tracking_code=code, lock=True)
            key = await issue_key(uow, case, actor=session.actor, now=deps.clock.now())
    except (ValueError, CaseNotFound):
        return pages.case_not_found(request, session)
    log.info("citizen key issued", extra={"case_id": case.id, "tracking_code": code})
    return await case_page(
        request,
        session,
        code,
        notice=f"Nueva clave del caso: {key}. Entréguela al ciudadano: no se volverá a "
        "mostrar, y la anterior ya no sirve.",
    )


@router.post("/consola/casos/{code}/{action}")
async def act(
    request: Request, code: str, action: str, deps: AppDeps, pages: AppPages, limits: Limits
) -> Response:
    session = session_of(request)
    if session is None:
        return to_login()
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if not web_session.csrf_ok(session, form.get("csrf")):
        return forbidden(request, session)
    try:
        code = normalize_tracking_code(code)
    except ValueError:
        return pages.case_not_found(request, session)
    spec = REGISTRY.get(action)
    if spec is None or not spec.may(session.role):
        return forbidden(request, session)
    params = {name: form[name] for name in spec.field_names if form.get(name)}
    try:
        body = spec.body.model_validate(params)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in spanish_errors(exc):
            field = error["field"] if error["field"] in spec.field_names else "_"
            errors.setdefault(field, error["message"])
        return await case_page(
            request,
            session,
            code,
            status_code=422,
            problem="Revise el formulario: " + "; ".join(errors.values()),
            failed_action=action,
            form_values=form,
            form_errors=errors,
        )
    now = deps.clock.now()
    stored: list[AttachmentRow] = []
    if takes_files(spec.body):
        try:
            files = await prepared_uploads(raw, limits)
        except AttachmentRefused as exc:
            message = "; ".join(e.message for e in exc.errors)
            return await case_page(
                request,
                session,
                code,
                status_code=422,
                problem="Revise el formulario: " + message,
                failed_action=action,
                form_values=form,
                form_errors={FIELD: message},
            )
        source = "department" if session.department is not None else "staff"
        stored = await store_blobs(attachment_store(request.app), files, source, now)
        body = body.model_copy(update={COUNT_FIELD: len(stored)})
    try:
        try:
            async with deps.uow() as uow:
                case = await get_case(uow, tracking_code=code, lock=True)
                if session.department is not None and not (
                    case.state == State.REMITTED and case.department == session.department
                ):
                    raise CaseNotFound(code)
                if form.get("estado") and form["estado"] != case.state:
                    raise IllegalTransition(
                        case.state,
                        action,
                        offered_to(deps.cases.lifecycle, session.role, case),
                        case.kind,
                    )
                await perform(
                    uow,
                    deps.cases,
                    case,
                    action,
                    body,
                    actor=session.actor,
                    now=now,
                    department=session.department,
                    answers_heard_by=ANSWERS_INBOX,
                )
                for row in stored:
                    row.case_id = case.id
                    uow.session.add(row)
        except BaseException:
            await discard(attachment_store(request.app), stored)  # nothing half-stored
            raise
    except CaseNotFound:
        return pages.case_not_found(request, session)
    except InvalidActionInput as exc:
        return await case_page(
            request,
            session,
            code,
            status_code=422,
            problem="Revise el formulario: " + exc.message,
            failed_action=action,
            form_values=form,
            form_errors={exc.field if exc.field in spec.field_names else "_": exc.message},
        )
    except IllegalTransition:
        return await case_page(
            request,
            session,
            code,
            status_code=409,
            problem="El caso cambió de estado mientras tanto: esa acción ya no está "
            "permitida. Revise las acciones disponibles ahora.",
        )
    except (NotYourCase, DomainError) as exc:
        return await case_page(request, session, code, status_code=409, problem=str(exc))
    if session.department is not None:
        return RedirectResponse(f"/consola?hecho={action}&codigo={code}", status_code=303)
    return RedirectResponse(f"/consola/casos/{code}?hecho={action}", status_code=303)
