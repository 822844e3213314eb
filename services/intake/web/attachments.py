"""Attachments on the web: staff and the department see them in the console, staff choose which
ones the public tracking page shows (none by default), and the local store's signed links are
served here (``/adjuntos/<key>``; S3 serves its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from services.intake.dependencies import AppDeps
from services.intake.web import session as web_session
from services.intake.web.pages import AppPages, Pages, secure_headers
from services.intake.web.session import Session
from shared.cases import CaseNotFound, get_case
from shared.db.models import CaseRow
from shared.evidence import AttachmentRow, RemitLinks, of_case
from shared.lifecycle import State
from shared.runtime import Deps
from shared.storage import (
    LINK_PATH,
    BlobStore,
    LocalFolderStore,
    ObjectMissing,
    StorageSettings,
    check_key,
    make_store,
)
from shared.tracking import normalize_tracking_code

#: Who sent an attachment (``AttachmentRow.source``), as the console says it.
SOURCE_LABELS = {
    "web": "Enviado por el ciudadano al presentar el caso",
    "open311": "Recibido con la solicitud Open311",
    "citizen": "Añadido por el ciudadano en el seguimiento",
    "department": "Adjunto a la respuesta de la dependencia",
    "staff": "Añadido por el personal",
}
MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "pdf": "application/pdf",
}


def attachment_store(app: FastAPI) -> BlobStore:
    store: BlobStore = app.state.attachment_store
    return store


def may_see(session: Session, case: CaseRow) -> bool:
    """Staff see every case; a department, the cases remitted to it (as on the case page)."""
    if session.is_staff:
        return True
    return case.state == State.REMITTED and case.department == session.department


def _media_type(key: str) -> str:
    return MEDIA_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


def _file(data: bytes, key: str, name: str | None = None) -> Response:
    response = Response(data, media_type=_media_type(key))
    secure_headers(response, private=True)
    if name is not None and not key.endswith("-miniatura.jpg"):
        ascii_name = name.encode("ascii", "replace").decode().replace('"', "")
        response.headers["Content-Disposition"] = f'inline; filename="{ascii_name}"'
    return response


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    links = deps.cases.complete_event
    # The process's one store (its local signing key is the one the remitted links carry).
    store: BlobStore = (
        links.store
        if isinstance(links, RemitLinks)
        else make_store(StorageSettings(), base_url=deps.config.institution.public_url)
    )
    app.state.attachment_store = store
    app.include_router(router)


def store_of(request: Request) -> BlobStore:
    return attachment_store(request.app)


router = APIRouter(include_in_schema=False)
Store = Annotated[BlobStore, Depends(store_of)]


async def load(deps: Deps, attachment_id: str) -> tuple[AttachmentRow, CaseRow] | None:
    async with deps.uow() as uow:
        row = await uow.session.scalar(
            select(AttachmentRow).where(AttachmentRow.id == attachment_id)
        )
        if row is None:
            return None
        case = await get_case(uow, case_id=row.case_id)
    return row, case


async def serve(store: BlobStore, row: AttachmentRow, thumbnail: bool) -> Response:
    key = row.thumbnail_key if thumbnail else row.key
    if key is None:
        return Response(status_code=404)
    try:
        return _file(await store.get(key), key, row.name)
    except ObjectMissing:
        return Response(status_code=404)


@router.get(LINK_PATH + "{key:path}")
async def signed_link(
    key: str, deps: AppDeps, store: Store, expira: str = "", firma: str = ""
) -> Response:
    """A local store's expiring link (what ``CaseRemitted`` and the console hand out)."""
    try:
        check_key(key)
    except ValueError:
        return Response(status_code=404)
    if not isinstance(store, LocalFolderStore) or not store.link_valid(
        key, expira, firma, deps.clock.now()
    ):
        return Response("enlace vencido o no válido", status_code=403)
    try:
        return _file(await store.get(key), key)
    except ObjectMissing:
        return Response(status_code=404)


@router.get("/consola/casos/{code}/adjuntos")
async def console_attachments(
    request: Request, code: str, deps: AppDeps, pages: AppPages
) -> Response:
    session = web_session.current(request)
    if session is None:
        return RedirectResponse("/consola", status_code=303)
    try:
        async with deps.uow() as uow:
            case = await get_case(uow, tracking_code=normalize_tracking_code(code))
            rows = await of_case(uow, case.id)
    except (ValueError, CaseNotFound):
        case = None
    if case is None or not may_see(session, case):
        return pages.case_not_found(request, session)
    return pages.render(
        request,
        "consola_adjuntos.html",
        session=session,
        private=True,
        title=f"Adjuntos del caso {case.tracking_code}",
        section="consola",
        case=case,
        attachments=rows,
        source_label=lambda source: SOURCE_LABELS.get(source, source),
    )


@router.get("/consola/adjuntos/{attachment_id}")
async def console_file(
    request: Request, attachment_id: str, deps: AppDeps, store: Store
) -> Response:
    return await console_serve(request, deps, store, attachment_id, thumbnail=False)


@router.get("/consola/adjuntos/{attachment_id}/miniatura")
async def console_thumbnail(
    request: Request, attachment_id: str, deps: AppDeps, store: Store
) -> Response:
    return await console_serve(request, deps, store, attachment_id, thumbnail=True)


async def console_serve(
    request: Request, deps: Deps, store: BlobStore, attachment_id: str, *, thumbnail: bool
) -> Response:
    session = web_session.current(request)
    found = await load(deps, attachment_id)
    if session is None or found is None or not may_see(session, found[1]):
        return Response(status_code=404)
    return await serve(store, found[0], thumbnail)


@router.post("/consola/adjuntos/{attachment_id}/publico")
async def publish(request: Request, attachment_id: str, deps: AppDeps) -> Response:
    session = web_session.current(request)
    form = await request.form()
    csrf = form.get("csrf")
    if (
        session is None
        or not session.is_staff
        or not web_session.csrf_ok(session, csrf if isinstance(csrf, str) else None)
    ):
        return Response(status_code=403)
    async with deps.uow() as uow:
        row = await uow.session.scalar(
            select(AttachmentRow).where(AttachmentRow.id == attachment_id)
        )
        if row is None:
            return Response(status_code=404)
        row.public = form.get("publico") == "si"
        case = await get_case(uow, case_id=row.case_id)
        code = case.tracking_code
    return RedirectResponse(f"/consola/casos/{code}/adjuntos", status_code=303)


@router.get("/seguimiento/{code}/adjuntos/{attachment_id}")
async def public_file(
    code: str, attachment_id: str, deps: AppDeps, store: Store, miniatura: bool = False
) -> Response:
    """Only an attachment staff made public, and only under its own case's code."""
    found = await load(deps, attachment_id)
    if found is None or not found[0].public or found[1].tracking_code != code:
        return Response(status_code=404)
    return await serve(store, found[0], miniatura)
