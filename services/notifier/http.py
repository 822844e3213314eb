"""The notification log over HTTP, for staff and supervisors (the notifier's own routes).

- ``GET /api/v1/notifications?case=<tracking code>&status=<status>``: what was (or will be)
  sent for a case, to whom (masked), when, and its status — including ``failed`` ones with
  the reason.
- ``GET /api/v1/tasks``: the notifications staff must deliver themselves (a citizen with only
  a postal address, or only a phone when no SMS gateway is configured), with the address or
  number and the message to deliver. ``?status=done`` lists the finished ones.
- ``POST /api/v1/tasks/{id}/done``: staff record that they notified the citizen; the case's
  history shows it.

Every route needs ``Authorization: Bearer <token>`` of a ``staff`` or ``supervisor`` role.
The router is mounted on whichever HTTP app the process serves (:func:`shared.http.http_app`):
intake's when they run together, the notifier's own small app when it runs alone.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from services.notifier.models import NotificationRow
from services.notifier.planning import DONE, IN_PERSON, TASK
from services.notifier.settings import NotifierSettings
from services.notifier.templates import TemplateRenderer
from shared.auth import Principal, bearer_token
from shared.calendar import rfc3339
from shared.cases import CaseNotFound, get_case, record_note
from shared.http import deps_of
from shared.runtime import Deps
from shared.throttle import client_of, throttle_of
from shared.tracking import normalize_tracking_code

STATUSES = ("pending", "sent", "failed", "task", "done")
MAX_ROWS = 500

router = APIRouter(tags=["notificaciones"])


def staff(
    request: Request,
    deps: Annotated[Deps, Depends(deps_of)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """A staff or supervisor token, counted against the app's one budget of failures."""
    token = bearer_token(authorization)
    client, throttle = client_of(request), throttle_of(request)
    if token:
        wait = throttle.retry_after(client)
        if wait:
            raise HTTPException(429, throttle.message(wait), {"Retry-After": str(wait)})
    principal = deps.tokens.authenticate(token) if token else None
    if principal is None:
        if token:
            throttle.failed(client)
        raise HTTPException(
            status_code=401,
            detail="se requiere un token válido (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.is_staff:
        raise HTTPException(status_code=403, detail="solo personal o supervisión")
    return principal


@cache
def _renderer(templates_dir: FilePath | None, timezone: str) -> TemplateRenderer:
    return TemplateRenderer(templates_dir, tz=timezone)


def renderer(deps: Annotated[Deps, Depends(deps_of)]) -> TemplateRenderer:
    return _renderer(_templates_dir(), deps.config.institution.timezone)


@cache
def _templates_dir() -> FilePath | None:
    return NotifierSettings().templates_dir


AppDeps = Annotated[Deps, Depends(deps_of)]
Staff = Annotated[Principal, Depends(staff)]
Renderer = Annotated[TemplateRenderer, Depends(renderer)]


def notification_view(row: NotificationRow) -> dict[str, Any]:
    """The public shape of a log row: the recipient is always masked."""
    return {
        "id": row.id,
        "case": row.tracking_code,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "template": row.template,
        "channel": row.channel,
        "recipient": row.recipient_masked,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": rfc3339(row.created_at),
        "next_attempt_at": rfc3339(row.next_attempt_at) if row.status == "pending" else None,
        "sent_at": rfc3339(row.sent_at),
        "last_error": row.last_error,
    }


def task_view(row: NotificationRow, renderer: TemplateRenderer) -> dict[str, Any]:
    view = notification_view(row)
    context = row.context
    if row.channel == IN_PERSON:
        view["deliver_to"] = {"address": context.get("address")}
    else:
        view["deliver_to"] = {"phone": row.recipient}
    try:
        message = renderer.render(row.template, context)
        view["message"] = {
            "subject": message.subject,
            "text": message.text,
            "sms": renderer.render_sms(row.template, context),
        }
    except Exception:  # a broken override must not hide the task itself
        view["message"] = None
    return view


@router.get("/api/v1/notifications")
async def list_notifications(
    _who: Staff,
    deps: AppDeps,
    case: Annotated[str | None, Query(description="código de seguimiento")] = None,
    status: Annotated[str | None, Query(description=" | ".join(STATUSES))] = None,
) -> Any:
    query = select(NotificationRow).order_by(NotificationRow.id).limit(MAX_ROWS)
    if case is not None:
        try:
            code = normalize_tracking_code(case)
        except ValueError:
            return _invalid("case", "tracking_code", "código de seguimiento no válido")
        query = query.where(NotificationRow.tracking_code == code)
    if status is not None:
        if status not in STATUSES:
            return _invalid("status", "one_of", f"estado no válido; use {', '.join(STATUSES)}")
        query = query.where(NotificationRow.status == status)
    async with deps.sessionmaker() as session:
        rows = await session.scalars(query)
        return {"items": [notification_view(row) for row in rows]}


@router.get("/api/v1/tasks")
async def list_tasks(
    _who: Staff,
    deps: AppDeps,
    renderer: Renderer,
    status: Annotated[str, Query(description="task (abiertas) | done")] = TASK,
) -> Any:
    if status not in (TASK, DONE):
        return _invalid("status", "one_of", "estado no válido; use task o done")
    query = (
        select(NotificationRow)
        .where(NotificationRow.status == status)
        .where(NotificationRow.channel.in_((IN_PERSON, "sms")))
        .order_by(NotificationRow.created_at, NotificationRow.id)
        .limit(MAX_ROWS)
    )
    async with deps.sessionmaker() as session:
        rows = await session.scalars(query)
        return {"items": [task_view(row, renderer) for row in rows]}


@router.post("/api/v1/tasks/{task_id}/done")
async def task_done(
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="id de la tarea")],
    principal: Staff,
    deps: AppDeps,
) -> Any:
    now = deps.clock.now()
    async with deps.uow() as uow:
        query = select(NotificationRow).where(NotificationRow.id == task_id)
        if uow.is_postgres:
            query = query.with_for_update()
        row = await uow.session.scalar(query)
        if row is None or row.status not in (TASK, DONE):
            return JSONResponse({"detail": "tarea no encontrada"}, status_code=404)
        if row.status == TASK:
            row.status = DONE
            row.sent_at = now
            row.attempts += 1
            if row.case_id is not None:
                try:
                    case_row = await get_case(uow, case_id=row.case_id)
                except CaseNotFound:
                    case_row = None
                if case_row is not None:
                    details: dict[str, Any] = {
                        "notification_id": row.id,
                        "event_type": row.event_type,
                        "template": row.template,
                        "channel": row.channel,
                        "recipient": row.recipient_masked,
                    }
                    record_note(
                        uow,
                        case_row,
                        actor=principal.actor,
                        action="notification_delivered",
                        now=now,
                        details=details,
                    )
        view = notification_view(row)
    return view


def _invalid(field: str, rule: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"field": field, "rule": rule, "message": message}]}, status_code=422
    )
