"""Open311 GeoReport v2 under ``/open311/v2/``: discovery, services, service definitions,
filing and following service requests, each as ``.json`` or ``.xml``.

Filing goes through the same :func:`shared.contract.validate_submission` and
:func:`shared.cases.file_case` as every other door (channel ``311``, actor ``open311``).
Errors are GeoReport error lists: 404 for a missing resource, 403 for a missing or bad
``api_key`` (a ``platform311`` token), 400 otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import and_, false, or_, select
from sqlalchemy.exc import IntegrityError

from services.intake.open311.catalog import Service, build_catalog
from services.intake.open311.format import FORMATS, Open311Error, render, render_errors, w3c
from services.intake.open311.media import MediaSettings, fetch_media
from services.intake.open311.requests import (
    describe,
    parse_query,
    read_filing,
    request_element,
    service_notice,
)
from services.intake.web.attachments import attachment_store
from shared.cases import file_case
from shared.contract import SubmissionInvalid, validate_submission
from shared.db.models import CaseRow
from shared.evidence import (
    AttachmentLimits,
    AttachmentRefused,
    AttachmentRow,
    Prepared,
    discard,
    store_blobs,
)
from shared.lifecycle import OPEN_STATES
from shared.runtime import Deps
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code

PREFIX = "/open311/v2"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
log = logging.getLogger("defensa311.intake.open311")

Answer = tuple[str, Any, int]


router = APIRouter(prefix=PREFIX, tags=["open311"])


def install(app: FastAPI, deps: Deps) -> None:
    """Add the GeoReport v2 routes to intake's app."""
    app.state.open311 = Open311(deps, app.state.attachment_limits)
    app.include_router(router)


def open311_of(request: Request) -> Open311:
    """The app's one Open311 door (its catalogue is built once)."""
    door: Open311 = request.app.state.open311
    return door


Api = Annotated["Open311", Depends(open311_of)]


@router.get("/discovery.{fmt}")
async def discovery(fmt: str, api: Api) -> Response:
    return await api.answer(fmt, api.discovery)


@router.get("/services.{fmt}")
async def services(fmt: str, api: Api) -> Response:
    return await api.answer(fmt, api.services)


@router.get("/services/{service_code}.{fmt}")
async def service_definition(service_code: str, fmt: str, api: Api) -> Response:
    return await api.answer(fmt, lambda: api.definition(service_code))


@router.post("/requests.{fmt}")
async def post_request(fmt: str, request: Request, api: Api) -> Response:
    return await api.answer(fmt, lambda: api.file(request))


@router.get("/requests.{fmt}")
async def get_requests(fmt: str, request: Request, api: Api) -> Response:
    return await api.answer(fmt, lambda: api.requests(request))


@router.get("/requests/{service_request_id}.{fmt}")
async def get_request(service_request_id: str, fmt: str, api: Api) -> Response:
    return await api.answer(fmt, lambda: api.request(service_request_id))


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
async def not_found(rest: str) -> Response:
    fmt = rest.rsplit(".", 1)[-1] if "." in rest else "json"
    error = Open311Error(404, f"recurso Open311 inexistente: {PREFIX}/{rest}")
    return render_errors(fmt, error)


class Open311:
    def __init__(self, deps: Deps, limits: AttachmentLimits) -> None:
        self.deps = deps
        self.config = deps.config
        self.tz = ZoneInfo(deps.config.institution.timezone)
        self.catalog = build_catalog(deps.config)
        self.changeset = self._changeset()
        self.media = MediaSettings()
        self.limits = limits
        self.tokens = deps.tokens

    def _changeset(self) -> str:
        # The catalogue changes when the institution's config file does.
        try:
            changed = datetime.fromtimestamp(self.deps.settings.config.stat().st_mtime, UTC)
        except OSError:
            changed = self.deps.clock.now()
        return w3c(changed, self.tz) or ""

    async def answer(self, fmt: str, produce: Callable[[], Awaitable[Answer]]) -> Response:
        if fmt not in FORMATS:
            return render_errors(
                "json", Open311Error(404, f"formato no disponible: .{fmt}; use .json o .xml")
            )
        try:
            root, document, status = await produce()
        except Open311Error as error:
            return render_errors(fmt, error)
        return render(fmt, root, document, status)

    # ------------------------------------------------------------------- catalogue

    async def discovery(self) -> Answer:
        institution = self.config.institution
        contact = f"{institution.office}, {institution.name}"
        if institution.supervisor_email:
            contact += f" <{institution.supervisor_email}>"
        document = {
            "changeset": self.changeset,
            "contact": contact,
            "key_service": (
                "Solicite una api_key (token de rol platform311) al "
                f"{institution.office} de la {institution.name}."
            ),
            "endpoints": [
                {
                    "specification": SPECIFICATION,
                    "url": institution.public_url.rstrip("/") + PREFIX,
                    "changeset": self.changeset,
                    "type": "production",
                    "formats": ["text/xml", "application/json"],
                }
            ],
        }
        return "discovery", document, 200

    async def services(self) -> Answer:
        document = [
            {
                "service_code": s.code,
                "service_name": s.name,
                "description": s.description,
                "metadata": True,
                "type": "realtime",
                "keywords": ", ".join(s.keywords),
                "group": s.group,
            }
            for s in self.catalog.values()
        ]
        return "services", document, 200

    def _service(self, code: str, status: int) -> Service:
        service = self.catalog.get(code.strip())
        if service is None:
            raise Open311Error(
                status,
                f"service_code: servicio desconocido «{code}»; consulte services.json "
                "(regla: unknown_service)",
            )
        return service

    async def definition(self, code: str) -> Answer:
        service = self._service(code, 404)
        attributes = []
        for a in service.attributes:
            attribute: dict[str, Any] = {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description or None,
                "order": a.order,
                "description": a.description,
            }
            if a.values:
                attribute["values"] = [{"key": k, "name": n} for k, n in a.values]
            attributes.append(attribute)
        return "service_definition", {"service_code": service.code, "attributes": attributes}, 200

    # ------------------------------------------------------------------- filing

    def _check_key(self, request: Request, key: Any) -> None:
        client, throttle = client_of(request), throttle_of(request)
        wait = throttle.retry_after(client)
        if wait:
            raise Open311Error(429, f"api_key: {throttle.message(wait)} (regla: rate_limit)")
        if not isinstance(key, str) or not key or not self._is_platform311(key):
            if isinstance(key, str) and key:
                throttle.failed(client)  # a wrong key is a guess; a missing one is not
            raise Open311Error(
                403,
                "api_key: falta o no es válida; use la clave de la plataforma 311 "
                "(regla: platform311_token)",
            )

    def _is_platform311(self, key: str) -> bool:
        principal = self.tokens.authenticate(key)
        return principal is not None and principal.is_platform311

    async def file(self, request: Request) -> Answer:
        form = await request.form()
        self._check_key(request, form.get("api_key") or request.query_params.get("api_key"))
        code = form.get("service_code")
        if not isinstance(code, str) or not code.strip():
            raise Open311Error(400, "service_code: campo obligatorio (regla: required)")
        service = self._service(code, 400)
        filing = read_filing(form, service)
        if filing.external_ref is not None and len(filing.external_ref) > 200:
            raise Open311Error(
                400, "attribute[external_ref]: como máximo 200 caracteres (regla: text_length)"
            )
        try:
            submission = validate_submission(filing.data)
        except SubmissionInvalid as exc:
            raise Open311Error(400, *(describe(e) for e in exc.errors)) from None
        now = self.deps.clock.now()
        media = await self._media(form.get("media_url"))
        blobs = attachment_store(request.app)

        async def store() -> tuple[CaseRow, bool]:
            rows = await store_blobs(blobs, media, "open311", now)
            try:
                async with self.deps.uow() as uow:
                    case, created = await file_case(
                        uow,
                        self.deps.cases,
                        submission,
                        channel="311",
                        actor="open311",
                        now=now,
                        external_ref=filing.external_ref,
                    )
                    for row in rows if created else []:
                        row.case_id = case.id
                        uow.session.add(row)
            except BaseException:
                await discard(blobs, rows)
                raise
            if not created:
                await discard(blobs, rows)  # the same 311 request again: its files are stored
            return case, created

        try:
            case, created = await store()
        except IntegrityError:
            # The same 311 reference filed concurrently: the other filing won; answer with it.
            case, created = await store()
        log.info(
            "case filed" if created else "duplicate open311 request answered",
            extra={"case_id": case.id, "tracking_code": case.tracking_code, "door": "open311"},
        )
        document = [
            {
                "service_request_id": case.tracking_code,
                "service_notice": service_notice(service, case, self.tz),
                "account_id": None,
            }
        ]
        return "service_requests", document, 201 if created else 200

    async def _media(self, url: Any) -> list[Prepared]:
        if not isinstance(url, str) or not url.strip():
            return []
        try:
            return await fetch_media(url.strip(), self.media, self.limits)
        except AttachmentRefused as exc:
            raise Open311Error(
                400, *(f"media_url: {e.message} (regla: {e.rule})" for e in exc.errors)
            ) from None

    async def _public_media(self, cases: list[CaseRow]) -> dict[str, str]:
        """The first attachment staff made public, per case: GeoReport's ``media_url``."""
        if not cases:
            return {}
        async with self.deps.uow() as uow:
            rows = await uow.session.scalars(
                select(AttachmentRow)
                .where(
                    AttachmentRow.case_id.in_([c.id for c in cases]),
                    AttachmentRow.public.is_(True),
                )
                .order_by(AttachmentRow.created_at)
            )
            first: dict[str, str] = {}
            for row in rows:
                first.setdefault(row.case_id, row.id)
        base = self.config.institution.public_url.rstrip("/")
        codes = {c.id: c.tracking_code for c in cases}
        return {
            case_id: f"{base}/seguimiento/{codes[case_id]}/adjuntos/{attachment_id}"
            for case_id, attachment_id in first.items()
        }

    # ------------------------------------------------------------------- following

    def _anonymous_listing(self, request: Request, params: dict[str, str]) -> bool:
        """Without an ``api_key`` a listing is small; the lookup budget of
        :func:`services.intake.observability.public_rules` limits how often (a listing shows
        tracking codes, so it must not become a way to walk them all)."""
        key = params.get("api_key")
        if key:
            self._check_key(request, key)
            return False
        return True

    async def requests(self, request: Request) -> Answer:
        params = dict(request.query_params)
        anonymous = self._anonymous_listing(request, params)
        query = parse_query(params, self.deps.clock.now(), self.tz, anonymous=anonymous)
        statement = select(CaseRow)
        if query.ids is not None:
            statement = statement.where(CaseRow.tracking_code.in_(query.ids))
        else:
            statement = statement.where(
                CaseRow.received_at >= query.start, CaseRow.received_at <= query.end
            )
            if query.statuses is not None and len(query.statuses) == 1:
                open_states = [s.value for s in OPEN_STATES]
                if "open" in query.statuses:
                    statement = statement.where(CaseRow.state.in_(open_states))
                else:
                    statement = statement.where(CaseRow.state.not_in(open_states))
            if query.service_codes is not None:
                services = [self._service(code, 400) for code in query.service_codes]
                statement = statement.where(
                    or_(
                        false(),
                        *(
                            and_(CaseRow.kind == s.kind, CaseRow.category == s.category)
                            for s in services
                        ),
                    )
                )
        statement = (
            statement.order_by(CaseRow.received_at.desc(), CaseRow.id)
            .offset((query.page - 1) * query.page_size)
            .limit(query.page_size)
        )
        async with self.deps.uow() as uow:
            cases = list(await uow.session.scalars(statement))
        media = await self._public_media(cases)
        document = [
            request_element(c, self.catalog, self.config, self.tz, media_url=media.get(c.id))
            for c in cases
        ]
        return "service_requests", document, 200

    async def request(self, raw_id: str) -> Answer:
        missing = Open311Error(404, f"service_request_id: no existe la solicitud «{raw_id}»")
        try:
            code = normalize_tracking_code(raw_id)
        except ValueError:
            raise missing from None
        async with self.deps.uow() as uow:
            case = await uow.session.scalar(select(CaseRow).where(CaseRow.tracking_code == code))
        if case is None:
            raise missing
        media = await self._public_media([case])
        document = [
            request_element(case, self.catalog, self.config, self.tz, media_url=media.get(case.id))
        ]
        return "service_requests", document, 200
