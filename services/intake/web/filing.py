"""The public filing page ``/presentar``: a citizen files a denuncia, queja or sugerencia.

Server-rendered and complete without JavaScript (a small script only offers the browser's
position). The form becomes the same :class:`~shared.contract.Submission` as the API's body and
goes through the same :func:`~shared.contract.validate_submission` (field formats and the law's
rules); each error is shown next to its field and in a summary linked to the fields.

Anti-abuse without third parties: the public filing rate limit
(:mod:`services.intake.observability`), a honeypot field a person never sees, and a minimum
time to fill, read from a signed timestamp the page puts in the form.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.intake.dependencies import AppDeps, AppSettings
from services.intake.open311.catalog import KIND_GROUPS, build_catalog
from services.intake.web.attachments import Store
from services.intake.web.pages import AppPages, Pages
from shared.cases import CaseNotFound, file_case, get_case
from shared.cases.form import submission_data
from shared.contract import SubmissionInvalid, validate_submission
from shared.domain.citizen_key import hash_key, new_key
from shared.evidence import (
    FIELD,
    AttachmentLimits,
    AttachmentRefused,
    Prepared,
    discard,
    prepare,
    store_blobs,
)
from shared.runtime import Deps
from shared.search import fold
from shared.tracking import normalize_tracking_code

log = logging.getLogger("defensa311.intake.filing")

DIVISIONS = Path(__file__).resolve().parent / "data" / "panama_divisiones.json"
HONEYPOT = "sitio_web"
UPLOADS = "adjuntos"
STAMP = "emitido"
KEY_COOKIE = "clave_recibo"
# The page's own script (the browser's position) is the only one any page loads.
SCRIPT_CSP = (
    "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class FilingFormSettings(BaseSettings):
    """``DEFENSA311_FORM_*``: the filing page's anti-abuse checks."""

    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    # Signs the form's timestamp; its own secret (random per process when unset, which is
    # right for one process: set it when several serve the page).
    form_secret: str = ""
    # Nobody reads the page and fills it in faster than this.
    form_min_seconds: float = Field(default=4.0, ge=0)
    # A page older than this is sent again with a fresh timestamp.
    form_max_hours: float = Field(default=12.0, gt=0)


KIND_CHOICES = (
    (
        "denuncia",
        "Denuncia",
        "Informa de algo irregular o indebido que alguien de la institución hizo o dejó de hacer.",
        "Ejemplos: un funcionario pide dinero por un trámite; una obra pagada que nunca se hizo.",
    ),
    (
        "queja",
        "Queja",
        "Expresa su inconformidad con un servicio que recibió o que no funciona.",
        "Ejemplos: la basura no se recoge desde hace semanas; lo atendieron mal en una ventanilla.",
    ),
    (
        "sugerencia",
        "Sugerencia",
        "Propone una mejora. Puede presentarla sin dar su nombre.",
        "Ejemplos: más bancas y sombra en un parque; un horario de atención más amplio.",
    ),
)
FIELD_LABELS = {
    "kind": "Tipo de caso",
    "category": "Tema",
    "description": "Qué ocurrió",
    "anonymous": "Sugerencia anónima",
    "citizen": "Sus datos",
    "citizen.full_name": "Nombre completo o razón social",
    "citizen.id_type": "Tipo de documento",
    "citizen.id_number": "Número del documento",
    "citizen.ruc_dv": "DV del RUC",
    "citizen.representative": "Representante legal",
    "citizen.representative.full_name": "Nombre del representante legal",
    "citizen.representative.id_type": "Tipo de documento del representante legal",
    "citizen.representative.id_number": "Número del documento del representante legal",
    "notify": "Dónde recibir notificaciones",
    "notify.email": "Correo electrónico",
    "notify.phone": "Teléfono",
    "notify.address": "Dirección postal o física",
    "location": "Lugar de los hechos",
    "location.province": "Provincia o comarca",
    "location.district": "Distrito",
    "location.corregimiento": "Corregimiento",
    "location.address": "Dirección o punto de referencia",
    "location.lat": "Posición",
    "location.lon": "Posición",
    "attachments": "Fotos o documentos",
    "form": "Formulario",
}
# Where a group's error sends the reader (a fieldset, not one of its inputs).
GROUP_ANCHORS = {
    "kind": "grupo-kind",
    "notify": "grupo-notify",
    "location": "grupo-location",
    "location.lat": "grupo-location",
    "location.lon": "grupo-location",
    "citizen": "grupo-citizen",
    "citizen.representative": "grupo-juridica",
    "attachments": "campo-adjuntos",
    "form": "enviar",
}


@dataclass(frozen=True)
class District:
    name: str
    corregimientos: tuple[str, ...]


@dataclass(frozen=True)
class Province:
    name: str
    districts: tuple[District, ...]


@cache
def divisions() -> tuple[Province, ...]:
    """Panama's provinces, comarcas, districts and corregimientos as shipped with the project."""
    raw = json.loads(DIVISIONS.read_text(encoding="utf-8"))
    return tuple(
        Province(
            p["name"],
            tuple(District(d["name"], tuple(d["corregimientos"])) for d in p["districts"]),
        )
        for p in raw["provinces"]
    )


@cache
def corregimiento_names() -> tuple[str, ...]:
    """Each corregimiento's name once, alphabetically: the suggestions of the filing page.

    One list for the whole country keeps the page usable without JavaScript; many names recur
    in several districts (San José, Santa Rosa…), and one suggestion serves them all.
    """
    names = {c for p in divisions() for d in p.districts for c in d.corregimientos}
    return tuple(sorted(names, key=lambda name: (fold(name), name)))


def anchor(field: str) -> str:
    return GROUP_ANCHORS.get(field, "campo-" + field.replace(".", "-"))


class FormStamp:
    """The signed time a form was served at: ``<unix seconds>.<HMAC-SHA256>``."""

    def __init__(self, secret: str) -> None:
        self._key = (secret or secrets.token_hex(32)).encode()

    def _mac(self, seconds: int) -> str:
        message = f"presentar|{seconds}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, now: datetime) -> str:
        seconds = int(now.timestamp())
        return f"{seconds}.{self._mac(seconds)}"

    def age(self, stamp: str, now: datetime) -> float | None:
        """Seconds since ``stamp`` was issued, or ``None`` if it is not one of ours."""
        raw, _, mac = stamp.partition(".")
        if not raw.isdigit() or len(raw) > 12:
            return None
        if not hmac.compare_digest(self._mac(int(raw)), mac):
            return None
        return now.timestamp() - int(raw)


@dataclass
class FilingPage:
    """What the filing page's routes share: the renderer, the anti-abuse settings and stamps,
    the attachment limits and the configured categories, built once per app."""

    deps: Deps
    pages: Pages
    settings: FilingFormSettings
    limits: AttachmentLimits
    stamps: FormStamp
    category_groups: list[tuple[str, list[str]]]

    @classmethod
    def build(cls, deps: Deps, pages: Pages, limits: AttachmentLimits) -> FilingPage:
        settings = FilingFormSettings()
        catalog = build_catalog(deps.config)
        categories: dict[str, list[str]] = {}
        for service in catalog.values():
            names = categories.setdefault(service.kind, [])
            if service.category not in names:
                names.append(service.category)
        category_groups = [(KIND_GROUPS.get(k, k), names) for k, names in categories.items()]
        return cls(deps, pages, settings, limits, FormStamp(settings.form_secret), category_groups)

    def form_page(
        self,
        request: Request,
        values: dict[str, str],
        errors: dict[str, str],
        *,
        status_code: int = 200,
    ) -> Response:
        response = self.pages.render(
            request,
            "presentar.html",
            status_code=status_code,
            private=True,
            title="Presentar un caso",
            section="presentar",
            values=values,
            errors=errors,
            field_labels=FIELD_LABELS,
            anchor=anchor,
            kinds=KIND_CHOICES,
            category_groups=self.category_groups,
            provinces=divisions(),
            corregimientos=corregimiento_names(),
            stamp=self.stamps.issue(self.deps.clock.now()),
            honeypot=HONEYPOT,
            stamp_name=STAMP,
            uploads=UPLOADS,
            limits=self.limits,
        )
        response.headers["Content-Security-Policy"] = SCRIPT_CSP
        return response


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    app.state.filing_page = FilingPage.build(deps, pages, app.state.attachment_limits)
    app.include_router(router)


def filing_of(request: Request) -> FilingPage:
    page: FilingPage = request.app.state.filing_page
    return page


router = APIRouter(include_in_schema=False)
Filing = Annotated[FilingPage, Depends(filing_of)]


@router.get("/presentar")
async def filing_form(request: Request, filing: Filing) -> Response:
    return filing.form_page(request, {}, {})


@router.post("/presentar")
async def file_on_the_web(
    request: Request, filing: Filing, deps: AppDeps, store: Store, settings: AppSettings
) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    now = deps.clock.now()
    if form.get(HONEYPOT, "").strip():
        log.info("web filing refused", extra={"reason": "honeypot"})
        return filing.form_page(
            request,
            form,
            {"form": "No se pudo registrar el caso. Revise los datos y envíelo de nuevo."},
            status_code=422,
        )
    age = filing.stamps.age(form.get(STAMP, ""), now)
    if age is None or age > filing.settings.form_max_hours * 3600:
        return filing.form_page(
            request,
            form,
            {"form": "El formulario caducó. Revise sus datos y envíelo de nuevo."},
            status_code=422,
        )
    if age < filing.settings.form_min_seconds:
        log.info("web filing refused", extra={"reason": "too_fast"})
        return filing.form_page(
            request,
            form,
            {"form": "El formulario se envió demasiado rápido. Revise y envíelo de nuevo."},
            status_code=422,
        )
    errors: dict[str, str] = {}
    submission = None
    try:
        submission = validate_submission(submission_data(form))
    except SubmissionInvalid as exc:
        for error in exc.errors:
            errors.setdefault(error.field or "form", error.message)
    files = []
    for upload in raw.getlist(UPLOADS):
        if isinstance(upload, str) or (not upload.filename and not upload.size):
            continue  # the empty part a browser sends when no file was chosen
        files.append((upload.filename or "", await upload.read(filing.limits.max_bytes + 1)))
    prepared: list[Prepared] = []
    try:
        prepared = await asyncio.to_thread(prepare, files, filing.limits)
    except AttachmentRefused as exc:
        errors[FIELD] = "; ".join(e.message for e in exc.errors)
    if errors or submission is None:
        return filing.form_page(request, form, errors, status_code=422)
    clave = new_key()
    clave_hash = await asyncio.to_thread(hash_key, clave)
    rows = await store_blobs(store, prepared, "web", now)
    try:
        async with deps.uow() as uow:
            case, _ = await file_case(
                uow,
                deps.cases,
                submission,
                channel="web",
                actor="ciudadano",
                now=now,
                clave_hash=clave_hash,
            )
            for row in rows:
                row.case_id = case.id
                uow.session.add(row)
            code = case.tracking_code
    except BaseException:
        await discard(store, rows)  # nothing half-stored: no bytes without their case
        raise
    log.info(
        "case filed",
        extra={
            "case_id": case.id,
            "tracking_code": code,
            "channel": "web",
            "attachments": len(rows),
        },
    )
    response = RedirectResponse(f"/presentar/recibo/{code}", status_code=303)
    # The clave is shown once, on the receipt: it rides in a short-lived cookie scoped to
    # that page (never in a URL, which logs and browser history keep), dropped when shown.
    response.set_cookie(
        KEY_COOKIE,
        clave,
        max_age=600,
        path=f"/presentar/recibo/{code}",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or settings.cookie_secure,
    )
    return response


@router.get("/presentar/recibo/{tracking_code}")
async def receipt(request: Request, tracking_code: str, deps: AppDeps, pages: AppPages) -> Response:
    try:
        code = normalize_tracking_code(tracking_code)
        async with deps.uow() as uow:
            case = await get_case(uow, tracking_code=code)
    except (ValueError, CaseNotFound):
        return pages.render(
            request,
            "no_encontrado.html",
            status_code=404,
            title="Caso no encontrado",
            section="presentar",
            message="No hay ningún caso con ese código.",
            back_href="/presentar",
            back_text="Presentar un caso",
        )
    clave = request.cookies.get(KEY_COOKIE)
    response = pages.render(
        request,
        "presentar_recibo.html",
        private=True,
        title=f"Constancia del caso {case.tracking_code}",
        section="presentar",
        case=case,
        clave=clave,
        mailed_link=deps.key_links is not None and bool((case.notify or {}).get("email")),
    )
    if clave is not None:
        response.delete_cookie(KEY_COOKIE, path=f"/presentar/recibo/{code}")
    return response
