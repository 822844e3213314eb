"""The console page "Correo enviado (modo local)": the e-mails the notifier wrote to the local
mailbox folder because no SMTP server is configured (:mod:`shared.mailbox`). Staff only."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.intake.web import session as web_session
from shared import mailbox
from shared.runtime import Deps

if TYPE_CHECKING:
    from services.intake.web.pages import Pages

PATH = "/consola/correo"
SHOWN = 100


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    mail = mailbox.MailSettings()
    local = mailbox.uses_mailbox(deps.settings, mail)
    pages.env.globals["local_mailbox"] = PATH if local else None

    @app.get(PATH, include_in_schema=False)
    async def sent_mail(request: Request) -> Response:
        session = web_session.current(request)
        if session is None or not session.is_staff:
            return RedirectResponse("/consola", status_code=303)
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
