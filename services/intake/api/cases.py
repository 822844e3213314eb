"""The case API (``/api/v1``): filing, tracking, listing and every lifecycle action.

Every accepted action runs :func:`shared.cases.perform` in one unit of work on a locked
row: the new state, the audit row and the outgoing events commit together or not at all.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from services.intake.api.schemas import (
    Filed,
    FilingRequest,
    ListFilters,
    actions_openapi,
    filing_errors,
)
from services.intake.api.views import platform311_view, public_view, staff_view, summary
from services.intake.dependencies import AppDeps, Limits
from services.intake.refusals import refused
from services.intake.uploads import COUNT_FIELD, UPLOADS, prepared_uploads, takes_files
from shared.agenda import agenda_page
from shared.auth import Principal, bearer_token
from shared.calendar import TZ, rfc3339
from shared.cases import (
    CaseNotFound,
    InvalidActionInput,
    NotYourCase,
    file_case,
    get_case,
    history,
    perform,
)
from shared.contract import FieldError, with_law_errors
from shared.db.models import CaseHistoryRow, CaseRow
from shared.domain.actions import REGISTRY, may_take, offered_to, refusal
from shared.domain.case import TermEnded
from shared.domain.clocks import overdue_clause
from shared.evidence import (
    AttachmentLimits,
    AttachmentRefused,
    AttachmentRow,
    Prepared,
    discard,
    store_blobs,
)
from shared.http import deps_of
from shared.lifecycle import IllegalTransition
from shared.messaging import ANSWERS_INBOX
from shared.paging import (
    MAX_PAGE_SIZE,
    Cursor,
    InvalidCursor,
    after,
    capped_count,
    next_cursor,
)
from shared.runtime import Deps
from shared.search import InvalidSearch, search_clause, search_words
from shared.storage import BlobStore
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code
from shared.validation import spanish_errors

log = logging.getLogger("defensa311.intake.api")

# Public lookups that miss, per client, before 429: with 40 random bits per code this keeps
# a blind enumeration at a few thousand guesses a day per address.
PUBLIC_MISSES_PER_WINDOW = 30
PUBLIC_MISS_WINDOW = timedelta(minutes=1)
# A search's total is counted up to this many matches, a plain list's up to COUNT_CAP
# ("total_capped": true beyond: there are more than "total").
SEARCH_TOTAL_CAP = 200


class ApiError(Exception):
    """An answer other than 2xx, raised from inside a unit of work so it rolls back."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def invalid(errors: list[FieldError] | list[dict[str, str]]) -> ApiError:
    detail = [e.model_dump() if isinstance(e, FieldError) else e for e in errors]
    return ApiError(422, {"detail": detail})


def not_found() -> ApiError:
    return ApiError(404, {"detail": "caso no encontrado"})


def unauthorized(
    message: str = "se requiere un token válido (Authorization: Bearer <token>)",
) -> ApiError:
    return ApiError(401, {"detail": message}, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, {"detail": message})


class MissLimiter:
    """Counts a client's public lookups of unknown codes in a sliding window."""

    def __init__(self, limit: int, window: timedelta) -> None:
        self.limit = limit
        self.window = window
        self._misses: dict[str, deque[datetime]] = {}

    def blocked(self, client: str, now: datetime) -> bool:
        misses = self._misses.get(client)
        if not misses:
            return False
        while misses and now - misses[0] > self.window:
            misses.popleft()
        return len(misses) >= self.limit

    def miss(self, client: str, now: datetime) -> None:
        self._misses.setdefault(client, deque()).append(now)
        if len(self._misses) > 10_000:  # bound memory: forget the oldest client
            self._misses.pop(next(iter(self._misses)))


# The OpenAPI security scheme; the header is read (and a malformed one refused) below.
_BEARER = HTTPBearer(auto_error=False, description="token de la institución: Bearer <token>")


async def optional_principal(
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Principal | None:
    """No Authorization header → anonymous; a wrong or malformed one → 401."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return None
    client, throttle = client_of(request), throttle_of(request)
    wait = throttle.retry_after(client)
    if wait:
        raise ApiError(429, {"detail": throttle.message(wait)}, {"Retry-After": str(wait)})
    principal = deps_of(request).tokens.authenticate(token) if token else None
    if principal is None:
        throttle.failed(client)
        raise unauthorized("token inválido o desconocido")
    return principal


async def required_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise unauthorized()
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
RequiredPrincipal = Annotated[Principal, Depends(required_principal)]


router = APIRouter(prefix="/api/v1")


def install(app: FastAPI, deps: Deps) -> None:
    """Add the case API's routes to the app."""
    app.state.lookup_misses = MissLimiter(PUBLIC_MISSES_PER_WINDOW, PUBLIC_MISS_WINDOW)
    error_handlers(app)
    app.include_router(router)


def misses_of(request: Request) -> MissLimiter:
    """The app's count of anonymous look-ups of codes that do not exist."""
    limiter: MissLimiter = request.app.state.lookup_misses
    return limiter


Misses = Annotated[MissLimiter, Depends(misses_of)]


def department_name(deps: Deps, code: str) -> str:
    department = deps.config.department(code)
    return department.name if department else code


def render(
    deps: Deps, case: CaseRow, rows: list[CaseHistoryRow], who: Principal | None
) -> dict[str, Any]:
    now = deps.clock.now()
    terms = deps.cases.terms
    if who is None:
        return public_view(case, rows, terms, now)
    if who.is_platform311:
        return platform311_view(case, rows, terms, now)
    mine = offered_to(deps.cases.lifecycle, who.role, case)
    return staff_view(case, rows, terms, now, mine, lambda code: department_name(deps, code))


# ------------------------------------------------------------------------ filing


@router.post(
    "/cases",
    status_code=201,
    response_model=Filed,
    tags=["casos"],
    summary="Presentar un caso",
    responses={200: {"description": "caso 311 ya recibido (mismo external_ref)"}},
)
async def file_a_case(
    body: FilingRequest, who: OptionalPrincipal, response: Response, deps: AppDeps
) -> Any:
    if body.channel == "presencial" and (who is None or not who.is_staff):
        if who is None:
            raise unauthorized("el canal presencial requiere un token del personal")
        raise forbidden("solo el personal puede presentar casos por el canal presencial")
    if body.channel == "311" and (who is None or not who.is_platform311):
        if who is None:
            raise unauthorized("el canal 311 requiere el token de la plataforma 311")
        raise forbidden("solo la plataforma 311 puede presentar casos por el canal 311")
    errors = filing_errors(body)
    if errors:
        raise invalid(errors)
    now = deps.clock.now()
    actor = who.actor if who else "ciudadano"
    try:
        async with deps.uow() as uow:
            case, created = await file_case(
                uow,
                deps.cases,
                body.submission(),
                channel=body.channel,
                actor=actor,
                now=now,
                external_ref=body.external_ref,
            )
    except IntegrityError:
        # The same 311 ticket filed at the same moment elsewhere: that case is the one.
        if body.external_ref is None:
            raise
        async with deps.uow() as uow:
            case = await _by_external_ref(uow.session, body.external_ref)
        created = False
    if not created:
        response.status_code = 200
    log.info(
        "case filed" if created else "duplicate 311 submission answered",
        extra={
            "case_id": case.id,
            "tracking_code": case.tracking_code,
            "channel": case.channel,
        },
    )
    return Filed(
        case_id=case.id,
        tracking_code=case.tracking_code,
        state=case.state,
        received_at=case.received_at.astimezone(TZ),
        due_at=case.due_at.astimezone(TZ),
    )


# ------------------------------------------------------------------------ reading


@router.get("/cases/{tracking_code}", tags=["casos"], summary="Consultar un caso")
async def read_case(
    tracking_code: str, request: Request, who: OptionalPrincipal, deps: AppDeps, limiter: Misses
) -> Any:
    now = deps.clock.now()
    client = request.client.host if request.client else "?"
    if who is None and limiter.blocked(client, now):
        raise ApiError(
            429,
            {"detail": "demasiadas consultas de códigos inexistentes; intente más tarde"},
            {"Retry-After": str(int(PUBLIC_MISS_WINDOW.total_seconds()))},
        )
    try:
        async with deps.uow() as uow:
            case = await _visible_case(uow, tracking_code, who)
            rows = await history(uow, case.id)
            return render(deps, case, rows, who)
    except ApiError as exc:
        if who is None and exc.status == 404:
            limiter.miss(client, now)
        raise


async def _visible_case(
    uow: Any, tracking_code: str, who: Principal | None, *, lock: bool = False
) -> CaseRow:
    try:
        code = normalize_tracking_code(tracking_code)
        case = await get_case(uow, tracking_code=code, lock=lock)
    except (ValueError, CaseNotFound):
        raise not_found() from None
    if who is not None and who.department and case.department != who.department:
        raise not_found()  # a department does not learn that other cases exist
    return case


@router.get("/cases", tags=["casos"], summary="Listar y buscar casos (personal)")
async def list_cases(
    who: RequiredPrincipal, filters: Annotated[ListFilters, Query()], deps: AppDeps
) -> Any:
    if not (who.is_staff or who.department):
        raise forbidden("solo el personal y los departamentos pueden listar casos")
    department = who.department or filters.department
    now = deps.clock.now()
    where: list[ColumnElement[bool]] = []
    if filters.state:
        where.append(CaseRow.state == filters.state)
    if filters.kind:
        where.append(CaseRow.kind == filters.kind)
    if filters.channel:
        where.append(CaseRow.channel == filters.channel)
    if department:
        where.append(CaseRow.department == department)
    if filters.overdue is not None:
        where.append(
            overdue_clause(
                CaseRow.state,
                CaseRow.due_at,
                CaseRow.department_due_at,
                now,
                recourse_due=CaseRow.recourse_due_at,
                overdue=filters.overdue,
            )
        )
    try:
        if filters.q is not None:
            where.append(search_clause(search_words(filters.q), deps.engine.dialect.name))
        cursor = Cursor.decode(filters.cursor) if filters.cursor else None
    except (InvalidSearch, InvalidCursor) as exc:
        raise invalid([exc.error]) from None
    if cursor is not None and filters.offset:
        raise invalid(
            [
                FieldError(
                    field="offset",
                    rule="cursor_or_offset",
                    message="use cursor u offset, no ambos",
                )
            ]
        )
    newest_first = (CaseRow.received_at.desc(), CaseRow.id)
    if cursor is not None:
        where.append(after(cursor, CaseRow.received_at, CaseRow.id, newest_first=True))
    page = select(CaseRow).where(*where).order_by(*newest_first).limit(filters.limit + 1)
    if filters.offset:
        # A deep page skips its offset over the ids alone (an index-only scan of the
        # list's index), then reads the rows of the page.
        ids = (
            select(CaseRow.id)
            .where(*where)
            .order_by(*newest_first)
            .limit(filters.limit + 1)
            .offset(filters.offset)
            .subquery()
        )
        page = select(CaseRow).join(ids, CaseRow.id == ids.c.id).order_by(*newest_first)
    # A search counts along the list's order (as its page reads); the overdue along the
    # open cases' due dates, where they come first.
    count_order: tuple[Any, ...] = ()
    if filters.q is not None:
        count_order = newest_first
    elif filters.overdue:
        count_order = (CaseRow.due_at, CaseRow.id)
    async with deps.uow() as uow:
        # The total is counted on the first page only (a cursor walks on without it), up
        # to a cap: exact for a narrow filter, "more than" for years of cases.
        total, capped = (
            (None, False)
            if cursor is not None
            else await capped_count(
                uow.session,
                CaseRow.__table__,
                where,
                SEARCH_TOTAL_CAP if filters.q is not None else None,
                count_order,
            )
        )
        rows = list(await uow.session.scalars(page))
        items = [summary(case, now) for case in rows[: filters.limit]]
    return {
        "items": items,
        "total": total,
        "total_capped": capped,
        "limit": filters.limit,
        "offset": filters.offset,
        "next_cursor": next_cursor(rows, filters.limit),
    }


@router.get("/agenda", tags=["casos"], summary="Sugerencias en agenda (personal)")
async def agenda(
    who: RequiredPrincipal,
    deps: AppDeps,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    if not who.is_staff:
        raise forbidden("solo el personal puede ver la agenda")
    try:
        after_item = Cursor.decode(cursor) if cursor else None
    except InvalidCursor as exc:
        raise invalid([exc.error]) from None
    now = deps.clock.now()
    async with deps.uow() as uow:
        page = await agenda_page(uow, deps.cases.terms, now, limit=limit, after=after_item)
    return {
        "items": [item.model_dump(mode="json") for item in page.items],
        "total": page.total,
        "limit": limit,
        "next_cursor": page.next_cursor,
    }


@router.get("/departments", tags=["catálogo"], summary="Departamentos configurados")
async def departments(deps: AppDeps) -> Any:
    return [{"code": d.code, "name": d.name} for d in deps.config.departments]


# ------------------------------------------------------------------------ actions


@router.post(
    "/cases/{tracking_code}/actions/{action}",
    tags=["casos"],
    summary="Aplicar una acción del ciclo de vida",
    openapi_extra=actions_openapi(),
    responses={
        404: {"description": "caso o acción desconocidos"},
        409: {
            "description": "la acción no está permitida en el estado actual, o su plazo "
            "terminó (un recurso fuera de plazo: term_ended_at)"
        },
    },
)
async def act(
    tracking_code: str,
    action: str,
    request: Request,
    who: RequiredPrincipal,
    deps: AppDeps,
    limits: Limits,
) -> Any:
    spec = REGISTRY.get(action)
    if spec is None:
        raise ApiError(404, {"detail": f"acción desconocida: {action}", "actions": list(REGISTRY)})
    if not may_take(who.role, action):
        raise forbidden(refusal(who.role, action))
    data, files = await _action_input(request, spec.body, limits)
    try:
        body = spec.body.model_validate(data)
    except ValidationError as exc:
        raise invalid(spanish_errors(exc)) from None
    now = deps.clock.now()
    offered: list[str] = []
    stored: list[AttachmentRow] = []
    if files:
        store: BlobStore = request.app.state.attachment_store
        source = "department" if who.department else "staff"
        stored = await store_blobs(store, files, source, now)
        body = body.model_copy(update={COUNT_FIELD: len(stored)})
    try:
        try:
            async with deps.uow() as uow:
                case = await _visible_case(uow, tracking_code, who, lock=True)
                offered = offered_to(deps.cases.lifecycle, who.role, case)
                await perform(
                    uow,
                    deps.cases,
                    case,
                    action,
                    body,
                    actor=who.actor,
                    now=now,
                    department=who.department,
                    answers_heard_by=ANSWERS_INBOX,
                )
                for attachment in stored:
                    attachment.case_id = case.id
                    uow.session.add(attachment)
                rows = await history(uow, case.id)
                view = render(deps, case, rows, who)
        except BaseException:
            if stored:  # nothing half-stored: no files without the answer
                await discard(request.app.state.attachment_store, stored)
            raise
    except IllegalTransition as exc:
        mine = exc.only(offered)  # name only what this caller may do on this case
        log.info(
            "illegal transition refused",
            extra={"tracking_code": tracking_code[:20], "action": action, "state": exc.state},
        )
        raise ApiError(
            409, {"detail": str(mine), "state": mine.state, "allowed": mine.allowed}
        ) from None
    except NotYourCase:
        raise not_found() from None
    except TermEnded as exc:
        # A well-formed step whose term has passed: refused like any state rule, naming
        # the day the term ended.
        raise ApiError(
            409, {"detail": exc.message, "term_ended_at": rfc3339(exc.ended_at)}
        ) from None
    except InvalidActionInput as exc:
        raise invalid([FieldError(field=exc.field, rule=exc.rule, message=exc.message)]) from None
    log.info(
        "action applied",
        extra={
            "case_id": case.id,
            "tracking_code": case.tracking_code,
            "action": action,
            "state": case.state,
        },
    )
    return view


async def _action_input(
    request: Request, body: type[BaseModel], limits: AttachmentLimits
) -> tuple[Any, list[Prepared]]:
    """An action's input: a JSON body, or for an action that takes files (a department's
    answer) ``multipart/form-data`` with the body's fields and the files in ``adjuntos``.
    The file count is the server's to set, never the caller's."""
    content_type = request.headers.get("content-type", "").lower()
    if takes_files(body) and content_type.startswith("multipart/form-data"):
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str) and k != UPLOADS}
        try:
            files = await prepared_uploads(form, limits)
        except AttachmentRefused as exc:
            raise invalid(exc.errors) from None
    else:
        data, files = await _json_body(request), []
    if takes_files(body) and isinstance(data, dict) and COUNT_FIELD in data:
        raise invalid(
            [
                FieldError(
                    field=COUNT_FIELD,
                    rule="set_by_server",
                    message=(
                        "lo fija el servidor: envíe los archivos en multipart/form-data, "
                        f"en la parte «{UPLOADS}»"
                    ),
                )
            ]
        )
    return data, files


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise invalid(
            [{"field": "", "rule": "json_invalid", "message": "el contenido no es JSON válido"}]
        ) from None
    except RecursionError:
        raise invalid([TOO_DEEP]) from None


TOO_DEEP = {
    "field": "",
    "rule": "json_too_deep",
    "message": "el contenido JSON está anidado a demasiada profundidad",
}


async def _by_external_ref(session: Any, external_ref: str) -> CaseRow:
    case = await session.scalar(select(CaseRow).where(CaseRow.external_ref == external_ref))
    if case is None:
        raise HTTPException(503, "reintente")  # the other filing rolled back: a retry files it
    assert isinstance(case, CaseRow)
    return case


def error_handlers(app: FastAPI) -> None:
    """Answers in the API's shapes: ApiError as given, validation in Spanish."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = spanish_errors(list(exc.errors()))
        if request.method == "POST" and request.url.path == "/api/v1/cases":
            # A filing's answer also names what the law requires (name, cédula, address).
            errors = with_law_errors([FieldError(**e) for e in detail], exc.body)
            detail = [e.model_dump() for e in errors]
        return JSONResponse({"detail": detail}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail: Any = exc.detail
        if detail in _ENGLISH_DEFAULTS:
            detail = SPANISH_HTTP.get(exc.status_code, "error en la solicitud")
        if exc.status_code in (413, 429):  # a browser on a page gets a page
            return refused(request.scope, exc.status_code, detail, exc.headers)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    async def unreadable(request: Request, exc: Exception) -> Response:
        # Input a parser could not take apart (nested past the interpreter's recursion limit,
        # a number or date past the range of its type, bytes that are not UTF-8) is the
        # client's fault. Known cases are refused where they are read; this is the net.
        log.info("unreadable input refused", extra={"error": type(exc).__name__})
        message = (
            TOO_DEEP["message"]
            if isinstance(exc, RecursionError)
            else "un valor de la solicitud está fuera del rango admitido o no se pudo leer"
        )
        if request.url.path.startswith("/open311/"):
            from services.intake.open311.format import Open311Error, render_errors

            fmt = "xml" if request.url.path.endswith(".xml") else "json"
            return render_errors(fmt, Open311Error(400, message))
        return JSONResponse({"detail": message}, status_code=400)

    app.add_exception_handler(ApiError, api_error)
    for unreadable_input in (RecursionError, OverflowError, UnicodeDecodeError):
        app.add_exception_handler(unreadable_input, unreadable)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


_ENGLISH_DEFAULTS = {s.phrase for s in HTTPStatus} | {"There was an error parsing the body"}

SPANISH_HTTP = {
    400: "el cuerpo de la solicitud no se pudo leer",
    404: "recurso no encontrado",
    405: "método no permitido",
    413: "el cuerpo de la solicitud es demasiado grande",
    415: "tipo de contenido no admitido",
}
