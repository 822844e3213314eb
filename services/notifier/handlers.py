"""The notifier's consumer: events become rows of the notification log, never sends.

One transaction stores, for an event, every notification (status ``pending``, or ``task`` for
staff), an audit row per notification on the case, and the inbox mark. Sending is the
delivery loop's job (:mod:`services.notifier.delivery`), so a slow SMTP server never holds
the queue. The log's unique (event, recipient) key and the inbox make redelivery harmless.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select

from services.notifier.models import NotificationRow
from services.notifier.planning import CaseFacts, Plan, Planner
from services.notifier.settings import NotifierSettings
from shared.cases import CaseNotFound, get_case, record_note
from shared.clock import Clock
from shared.consumer import EventHandler, Handlers, Poison, Prefetch
from shared.contract import CaseEvent, CaseFollowedMain
from shared.db.models import CaseRow
from shared.domain.key_link import binding_of
from shared.runtime import Deps
from shared.uow import UnitOfWork

CONSUMER = "notifier"
ACTOR = "notifier"
log = logging.getLogger("defensa311.notifier")


def case_facts(case: CaseRow) -> CaseFacts:
    citizen = case.citizen or {}
    return CaseFacts(
        tracking_code=case.tracking_code,
        kind=case.kind,
        category=case.category,
        received_at=case.received_at,
        due_at=case.due_at,
        anonymous=case.anonymous,
        citizen_name=citizen.get("full_name"),
        notify={k: v for k, v in (case.notify or {}).items() if isinstance(v, str) and v},
        department=case.department,
        description=case.description,
        clave_binding=binding_of(case.clave_hash),
    )


@dataclass(frozen=True)
class NotifierDeps:
    """What the notifier's handler needs; ``queued`` is set after a commit that queued
    notifications: the delivery loop goes."""

    clock: Clock
    planner: Planner
    queued: asyncio.Event


async def case_event(event: CaseEvent, uow: UnitOfWork, deps: NotifierDeps) -> None:
    """Store the notifications an event causes (none are sent here)."""
    now = deps.clock.now()
    try:
        case = await get_case(uow, case_id=str(event.case_id))
    except CaseNotFound as exc:
        raise Poison("caso desconocido") from exc
    if case.tracking_code != event.tracking_code:
        raise Poison("tracking_code no corresponde al case_id")
    plan = deps.planner.plan(event, case_facts(case))
    if isinstance(event, CaseFollowedMain) and event.step_event_id is not None:
        # Whoever filed the main case too was told of the step under that case's code.
        told = await told_of(uow, str(event.step_event_id))
        plan.notifications = [p for p in plan.notifications if p.recipient not in told]
    await store(uow, event, case, plan, now=now)
    facts = {
        "case_id": case.id,
        "tracking_code": case.tracking_code,
        "event_type": event.event_type,
        "queued": len(plan.notifications),
        "gaps": plan.gaps,
    }

    def committed() -> None:
        if plan.notifications:
            deps.queued.set()
        log.info("notifications queued", extra=facts)

    uow.after_commit(committed)


# Every case event is heard (the planner decides who is told); any other event tells
# nobody (e.g. SubmissionRejected: 311 reads the event).
HANDLERS: dict[type[Any], EventHandler] = {CaseEvent: case_event}


def handlers(
    deps: Deps, settings: NotifierSettings, queued: asyncio.Event
) -> Handlers[NotifierDeps]:
    links = deps.key_links
    planner = Planner(
        deps.config,
        sms_gateway=bool(settings.sms_webhook_url),
        terms=deps.cases.terms,
        clave_link_lifetime=None if links is None else links.lifetime,
    )
    return Handlers(
        CONSUMER, NotifierDeps(deps.clock, planner, queued), HANDLERS, prefetch=Prefetch.CASE
    )


async def told_of(uow: UnitOfWork, event_id: str) -> set[str]:
    """The recipients already notified of an event."""
    found = await uow.session.scalars(
        select(NotificationRow.recipient).where(NotificationRow.event_id == event_id)
    )
    return set(found)


async def store(
    uow: UnitOfWork, event: CaseEvent, case: CaseRow, plan: Plan, *, now: datetime
) -> None:
    rows = [
        NotificationRow(
            event_id=str(event.event_id),
            event_type=event.event_type,
            case_id=case.id,
            tracking_code=case.tracking_code,
            template=p.template,
            channel=p.channel,
            recipient=p.recipient,
            recipient_masked=p.recipient_masked,
            status=p.status,
            attempts=0,
            next_attempt_at=now,
            last_error=p.note,
            context=p.context,
            created_at=now,
        )
        for p in plan.notifications
    ]
    uow.session.add_all(rows)
    if rows:
        uow.before_commit(partial(note_plan, uow, case, rows, event, plan.gaps, now))
    else:
        note_gaps(uow, case, event, plan.gaps, now)


async def note_plan(
    uow: UnitOfWork,
    case: CaseRow,
    rows: list[NotificationRow],
    event: CaseEvent,
    gaps: list[str],
    now: datetime,
) -> None:
    """An audit row per queued notification, naming its id, then one per address the plan
    could not use: the ids come from the database, so this runs before the commit, when one
    flush gives them to every row of the batch."""
    if any(row.id is None for row in rows):
        await uow.session.flush()
    for row in rows:
        record_note(
            uow,
            case,
            actor=ACTOR,
            action="notification_queued",
            now=now,
            details={
                "notification_id": row.id,
                "event_type": row.event_type,
                "template": row.template,
                "channel": row.channel,
                "recipient": row.recipient_masked,
                "status": row.status,
            },
        )
    note_gaps(uow, case, event, gaps, now)


def note_gaps(
    uow: UnitOfWork, case: CaseRow, event: CaseEvent, gaps: list[str], now: datetime
) -> None:
    for gap in gaps:
        record_note(
            uow,
            case,
            actor=ACTOR,
            action="notification_skipped",
            now=now,
            details={"event_type": event.event_type, "reason": gap},
        )
