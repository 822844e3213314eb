"""The console page "Correo enviado (modo local)": the e-mails the notifier wrote to the local
mailbox folder because no SMTP server is configured (:mod:`shared.mailbox`). Staff only."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.intake.dependencies import AppDeps
from services.intake.web.pages import AppPages, Pages
from services.intake.web.session import CurrentSession
from shared import mailbox
from shared.runtime import Deps

PATH = "/consola/correo"
SHOWN = 100

router = APIRouter(include_in_schema=False)


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    local = mailbox.uses_mailbox(deps.settings, mailbox.MailSettings())
    pages.env.globals["local_mailbox"] = PATH if local else None
    app.include_router(router)


@router.get(PATH)
async def sent_mail(
    request: Request,
    deps: AppDeps,
    pages: AppPages,
    session: CurrentSession,
) -> Response:
    if session is None or not session.is_staff:
        return RedirectResponse("/consola", status_code=303)
    mail = mailbox.MailSettings()
    local = mailbox.uses_mailbox(deps.settings, mail)
    messages = await asyncio.to_thread(mailbox.newest, mail.mailbox_dir, SHOWN)
    return pages.render(
        request,
        "consola_correo.html",
        session=session,
        private=True,
        title="Correo enviado (modo local)",
        section="consola",
        local=local,
        folder=str(mail.mailbox_dir),
        messages=messages,
    )
