"""``/clave/{tracking_code}?t=…``: the receipt e-mail's link to a new clave.

``GET`` explains what the clave is and offers one button; its ``POST`` carries the link's
token as the form's proof (a cross-site form cannot know it, as the tracking page's forms
carry the clave) and issues a new clave for the case the way the front desk does
(:func:`shared.cases.keys.issue_key`), shown once. The token is bound to the case's clave
hash (:mod:`shared.domain.key_link`), so the link works once: the clave it issued, or one
issued at the front desk, ends it.

A link that is not ours is a failed guess on the one failed-authentication throttle
(:mod:`shared.throttle`); an expired or used link is answered 410, never counted; every
refusal says how to get a clave at the front desk. Requests also draw on the tracking
lookups' rate limit (:mod:`services.intake.observability`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.intake.web.pages import Pages, pages_of
from shared.cases import CaseNotFound, get_case
from shared.cases.keys import issue_key
from shared.domain.key_link import TOKEN_PARAM, KeyLinks, LinkState, binding_of, expires_of
from shared.http import deps_of
from shared.runtime import Deps
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code

log = logging.getLogger("defensa311.intake.web")

router = APIRouter(include_in_schema=False)
PagesDep = Annotated[Pages, Depends(pages_of)]
DepsDep = Annotated[Deps, Depends(deps_of)]

TITLE = "Obtener su clave"
NOT_VALID = "Este enlace no es válido."
REFUSALS = {
    LinkState.FORGED: (400, NOT_VALID),
    LinkState.EXPIRED: (
        410,
        "Este enlace venció: los enlaces para obtener la clave duran un tiempo limitado.",
    ),
    LinkState.USED: (
        410,
        "Este enlace ya se usó: después de abrirlo se entregó una clave nueva para el caso "
        "(con este enlace o en el Departamento).",
    ),
}


def _page(
    pages: Pages,
    request: Request,
    *,
    status_code: int = 200,
    title: str = TITLE,
    **context: Any,
) -> Response:
    return pages.render(
        request,
        "clave.html",
        status_code=status_code,
        private=True,  # the link's token and the clave: never cached
        title=title,
        section="seguimiento",
        **context,
    )


def _refused(pages: Pages, request: Request, state: LinkState, code: str = "") -> Response:
    status, message = REFUSALS[state]
    title = "Enlace vencido" if state is LinkState.EXPIRED else "Enlace no válido"
    return _page(pages, request, status_code=status, title=title, message=message, code=code)


class _Link:
    """One request's link: the case's code and the token, once the throttle let it through."""

    def __init__(self, code: str, token: str, links: KeyLinks) -> None:
        self.code, self.token, self.links = code, token, links

    def judge(self, clave_hash: str | None, now: datetime) -> LinkState:
        return self.links.check(self.code, self.token, binding_of(clave_hash), now)


def _read(
    request: Request, deps: Deps, pages: Pages, tracking_code: str, token: str
) -> _Link | Response:
    """The link to judge, or the answer already due (throttled, malformed, links off)."""
    client, throttle = client_of(request), throttle_of(request)
    wait = throttle.retry_after(client)
    if wait:
        response = _page(
            pages,
            request,
            status_code=429,
            title="Demasiados intentos",
            message=f"Hubo {throttle.message(wait)}.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    links = deps.key_links
    try:
        code = normalize_tracking_code(tracking_code)
    except ValueError:
        code = ""
    if links is None or not code or not token:
        return _refused(pages, request, LinkState.FORGED)
    if not links.authentic(code, token):
        # The MAC decides before the database is read: a forged link learns nothing.
        throttle.failed(client)
        log.info("clave link refused", extra={"tracking_code": code, "reason": "forged"})
        return _refused(pages, request, LinkState.FORGED, code)
    return _Link(code, token, links)


@router.get("/clave/{tracking_code}")
async def clave_link(
    request: Request, tracking_code: str, deps: DepsDep, pages: PagesDep, t: str = ""
) -> Response:
    """What the clave is, and the button that issues one (nothing changes on a GET)."""
    link = _read(request, deps, pages, tracking_code, t)
    if isinstance(link, Response):
        return link
    async with deps.uow() as uow:
        try:
            case = await get_case(uow, tracking_code=link.code)
        except CaseNotFound:
            return _refused(pages, request, LinkState.FORGED, link.code)
    state = link.judge(case.clave_hash, deps.clock.now())
    if state is not LinkState.VALID:
        return _refused(pages, request, state, link.code)
    return _page(pages, request, code=link.code, token=link.token, expires=expires_of(link.token))


@router.post("/clave/{tracking_code}")
async def issue_clave_by_link(
    request: Request, tracking_code: str, deps: DepsDep, pages: PagesDep
) -> Response:
    """A new clave for the case, shown once; the link is spent in the same transaction."""
    form = await request.form()
    token = form.get(TOKEN_PARAM)
    link = _read(request, deps, pages, tracking_code, token if isinstance(token, str) else "")
    if isinstance(link, Response):
        return link
    now = deps.clock.now()
    async with deps.uow() as uow:
        try:
            case = await get_case(uow, tracking_code=link.code, lock=True)
        except CaseNotFound:
            return _refused(pages, request, LinkState.FORGED, link.code)
        # Judged under the lock: two clicks at once issue one clave, the other finds it used.
        state = link.judge(case.clave_hash, now)
        if state is not LinkState.VALID:
            return _refused(pages, request, state, link.code)
        clave = await issue_key(uow, case, actor="ciudadano", now=now)
    log.info("citizen key issued", extra={"case_id": case.id, "tracking_code": link.code})
    return _page(pages, request, title="Su nueva clave", code=link.code, clave=clave)
