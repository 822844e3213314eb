"""Closures by decree at run time: stored, reloaded by every service, and applied to open terms.

``defensa311 calendar close DATE --reason "…"`` stores a closure in ``calendar_closures`` and, in
the same transaction, moves every open term that spans the day (:func:`close_day`): the case's
due dates, a history row, and one ``DueDateChanged`` per moved term through the outbox (the
deadlines service moves the clock and its alerts, the notifier tells the citizen and the
department). Each service re-reads the closures every ``[calendar] reload_seconds``
(:func:`keep_calendar_current`), so new cases count the day without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import date, datetime, time

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.calendar import TZ
from shared.cases.joined import follow_main
from shared.config import InstitutionConfig
from shared.contract import DueDateChanged
from shared.db.models import CaseHistoryRow, CaseRow, ClosureRow
from shared.domain.actions import new_lifecycle
from shared.domain.case import Case
from shared.domain.clocks import Clock, Terms
from shared.domain.closures import Closure, ClosureSource, OpenTerms, closed_days, moved_terms
from shared.lifecycle import OPEN_STATES, RECOURSE_STATES
from shared.uow import UnitOfWork

__all__ = [
    "ClosureExists",
    "all_closures",
    "close_day",
    "keep_calendar_current",
    "move_terms_spanning",
    "reload_calendar",
]

log = logging.getLogger("defensa311.calendar")


class ClosureExists(ValueError):
    def __init__(self, day: date) -> None:
        super().__init__(f"ya hay un cierre registrado el {day.isoformat()}")
        self.day = day


def configured(config: InstitutionConfig) -> list[Closure]:
    return [
        Closure(c.date, c.reason, c.suspends_terms, ClosureSource.CONFIG)
        for c in config.calendar.closures
    ]


async def stored(session: AsyncSession) -> list[Closure]:
    rows = await session.scalars(select(ClosureRow).order_by(ClosureRow.day))
    return [Closure(r.day, r.reason, r.suspends_terms, ClosureSource.DATABASE) for r in rows]


async def all_closures(session: AsyncSession, config: InstitutionConfig) -> list[Closure]:
    """The configured closures and the stored ones (a stored day overrides a configured one)."""
    by_day = {c.day: c for c in configured(config)}
    by_day.update({c.day: c for c in await stored(session)})
    return [by_day[d] for d in sorted(by_day)]


async def reload_calendar(
    sessionmaker: async_sessionmaker[AsyncSession], config: InstitutionConfig, terms: Terms
) -> bool:
    """Give ``terms``' calendar the current closures; say whether they changed."""
    async with sessionmaker() as session:
        closures = await all_closures(session, config)
    return terms.calendar.set_closures(closed_days(closures))


async def keep_calendar_current(
    sessionmaker: async_sessionmaker[AsyncSession], config: InstitutionConfig, terms: Terms
) -> None:
    """Re-read the closures every ``[calendar] reload_seconds`` (a service's loop)."""
    while True:
        await asyncio.sleep(config.calendar.reload_seconds)
        try:
            if await reload_calendar(sessionmaker, config, terms):
                log.info("calendar closures reloaded")
        except Exception:  # a database hiccup: keep the last calendar, try again later
            log.exception("calendar closures could not be reloaded")


async def close_day(
    uow: UnitOfWork,
    config: InstitutionConfig,
    terms: Terms,
    closure: Closure,
    *,
    actor: str,
    now: datetime,
) -> list[DueDateChanged]:
    """Store a closure and, if it suspends terms, move the open terms that span it."""
    if await uow.session.get(ClosureRow, closure.day) is not None:
        raise ClosureExists(closure.day)
    uow.session.add(
        ClosureRow(
            day=closure.day,
            reason=closure.reason,
            suspends_terms=closure.suspends_terms,
            created_at=now,
            created_by=actor,
        )
    )
    if not closure.suspends_terms:
        return []
    terms.calendar.set_closures(terms.calendar.closures | {closure.day})
    return await move_terms_spanning(uow, terms, closure, actor=actor, now=now)


async def move_terms_spanning(
    uow: UnitOfWork, terms: Terms, closure: Closure, *, actor: str, now: datetime
) -> list[DueDateChanged]:
    """Compute again the open terms that span ``closure.day`` (idempotent: a term already
    moved is left alone) and emit one ``DueDateChanged`` per moved term."""
    start_of_day = datetime.combine(closure.day, time(0, 0), tzinfo=TZ)
    query = (
        select(CaseRow)
        .where(
            # A joined case's terms are its main case's: it follows the main case's move.
            CaseRow.duplicate_of.is_(None),
            or_(
                and_(
                    CaseRow.state.in_([s.value for s in OPEN_STATES]),
                    CaseRow.received_at < start_of_day,
                    CaseRow.due_at >= start_of_day,
                ),
                and_(
                    CaseRow.state.in_([s.value for s in RECOURSE_STATES]),
                    CaseRow.recourse_filed_at < start_of_day,
                    CaseRow.recourse_due_at >= start_of_day,
                ),
            ),
        )
        .order_by(CaseRow.id)
    )
    if uow.is_postgres:
        query = query.with_for_update()
    events: list[DueDateChanged] = []
    moved_cases: dict[str, tuple[CaseRow, list[DueDateChanged]]] = {}
    reason = _reason(closure)
    for case in await uow.session.scalars(query):
        changes = moved_terms(
            OpenTerms(
                state=case.state,
                received_at=case.received_at,
                due_at=case.due_at,
                department=case.department,
                remitted_at=case.remitted_at,
                department_due_at=case.department_due_at,
                recourse_filed_at=case.recourse_filed_at,
                recourse_due_at=case.recourse_due_at,
            ),
            closure.day,
            terms,
        )
        if not changes:
            continue
        moved: list[DueDateChanged] = []
        for change in changes:
            if change.clock is Clock.LEGAL:
                case.due_at = change.due_at
            elif change.clock is Clock.RECOURSE:
                case.recourse_due_at = change.due_at
            else:
                case.department_due_at = change.due_at
            moved.append(
                DueDateChanged(
                    case_id=uuid.UUID(case.id),
                    tracking_code=case.tracking_code,
                    clock=change.clock.value,
                    department=change.department,
                    previous_due_at=change.previous,
                    due_at=change.due_at,
                    reason=reason,
                    closed_day=closure.day,
                    occurred_at=now,
                )
            )
        case.due_note = reason
        case.updated_at = now
        for event in moved:
            uow.publish(event)
        uow.session.add(
            CaseHistoryRow(
                case=case,
                at=now,
                actor=actor,
                action="due_date_changed",
                from_state=case.state,
                to_state=case.state,
                details={
                    "reason": reason,
                    "closed_day": closure.day.isoformat(),
                    "changes": [
                        {
                            "clock": e.clock,
                            "from": e.previous_due_at.isoformat(),
                            "to": e.due_at.isoformat(),
                        }
                        for e in moved
                    ],
                    "events": [str(e.event_id) for e in moved],
                },
            )
        )
        events.extend(moved)
        moved_cases[case.id] = (case, moved)
    await _followers_follow(uow, terms, moved_cases, now=now)
    return events


async def _followers_follow(
    uow: UnitOfWork,
    terms: Terms,
    moved: dict[str, tuple[CaseRow, list[DueDateChanged]]],
    *,
    now: datetime,
) -> None:
    """The cases joined to a main case whose term moved follow it (``due_date_changed``)."""
    ids = list(moved)
    mains: set[str] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        mains.update(
            await uow.session.scalars(
                select(CaseRow.duplicate_of).where(CaseRow.duplicate_of.in_(chunk)).distinct()
            )
        )
    if not mains:
        return
    lifecycle = new_lifecycle()

    def case_of(row: CaseRow) -> Case:
        return Case(row, lifecycle=lifecycle, terms=terms, departments=())

    for main_id in sorted(mains):
        main, changes = moved[main_id]
        await follow_main(uow, main, "due_date_changed", list(changes), case_of=case_of, now=now)


def _reason(closure: Closure) -> str:
    day = closure.day.strftime("%d/%m/%Y")
    return f"Cierre de oficinas del {day} con suspensión de términos ({closure.reason})"
