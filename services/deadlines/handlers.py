"""Start and stop the clocks from the case events (idempotent by ``event_id``).

- ``CaseReceived`` starts the legal clock (due = the event's ``due_at``);
- ``CaseRemitted`` starts a department clock (due = the event's ``due_at``); a re-remittance
  starts a new one;
- ``CaseReturnAccepted`` (a department's return, accepted) stops that department's clocks;
- ``CaseReopened`` (the citizen said "no está resuelto") starts a new legal clock;
- ``RecourseFiled`` (a reconsideración or apelación) starts the recourse clock;
  ``RecourseDecided`` stops it and, when the decision is revoked, starts a new legal clock the
  way ``CaseReopened`` does;
- ``CaseResolved`` / ``CaseClosed`` stop the legal clock and every department clock of the case;
- ``DueDateChanged`` (a closure by decree moved a term) moves that clock and its next alert;
- ``CaseJoined`` (staff joined the case to a main case) stops its legal and department clocks:
  while it follows, the main case's clocks govern (its alerts are the main case's, and the
  joined case's state and dates mirror them); ``CaseSeparated`` starts a new legal clock from
  the separation with the event's ``due_at`` (``Terms.legal_due``: a fresh term, as a reopened
  case gets; see docs/deadlines.md for why not the days that were left).

Only the system's verdicts move a clock: a department's own ``DepartmentResponded`` /
``CaseReturned`` is judged by the router (which owns the case's state), and the clocks hear
its result (``CaseResolved``, ``CaseReturnAccepted``); a refused answer stops nothing.

A stop applies to the clocks started at or before it, and is stored even when no such clock is
known yet: a start that arrives late (a redelivery goes to the back of the queue) is then opened
already stopped, and a stop that arrives late does not stop a later re-remittance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import func, or_, select, text, update

from services.deadlines.due_changes import move_clock
from services.deadlines.models import DEPARTMENT, LEGAL, RECOURSE, ClockRow, StopRow
from services.deadlines.schedule import AlertPolicy
from shared.consumer import EventHandler, Handlers
from shared.contract import (
    CaseClosed,
    CaseEvent,
    CaseForwarded,
    CaseJoined,
    CaseReceived,
    CaseRemitted,
    CaseReopened,
    CaseResolved,
    CaseReturnAccepted,
    CaseSeparated,
    DueDateChanged,
    RecourseDecided,
    RecourseFiled,
)
from shared.runtime import Deps
from shared.uow import UnitOfWork

CONSUMER = "deadlines"
log = logging.getLogger("defensa311.deadlines")


def policy_for(deps: Deps) -> AlertPolicy:
    return AlertPolicy.from_config(deps.config, deps.cases.terms)


@dataclass(frozen=True)
class DeadlinesDeps:
    """What the deadlines' handler needs."""

    policy: AlertPolicy


async def case_event(event: CaseEvent, uow: UnitOfWork, deps: DeadlinesDeps) -> None:
    """Start, stop or move the case's clocks as the event says."""
    outcome = await apply(uow, deps.policy, event)
    if outcome:
        facts = {
            "case_id": str(event.case_id),
            "tracking_code": event.tracking_code,
            "event_type": event.event_type,
        }
        uow.after_commit(lambda: log.info(outcome, extra=facts))


CLOCK_EVENTS: tuple[type[CaseEvent], ...] = (
    CaseReceived,
    CaseReopened,
    CaseRemitted,
    CaseReturnAccepted,
    CaseResolved,
    CaseClosed,
    CaseForwarded,
    DueDateChanged,
    RecourseFiled,
    RecourseDecided,
    CaseJoined,
    CaseSeparated,
)
HANDLERS: dict[type[Any], EventHandler] = dict.fromkeys(CLOCK_EVENTS, case_event)


def handlers(deps: Deps) -> Handlers[DeadlinesDeps]:
    """The handlers of the ``defensa311.deadlines`` queue."""
    return Handlers(CONSUMER, DeadlinesDeps(policy_for(deps)), HANDLERS, prepare=prepare_batch)


@dataclass
class Lookahead:
    """What a batch's look-ahead found, for the works of that batch's transaction."""

    locked: set[str] = field(default_factory=set)  # cases whose advisory lock is held
    no_stops: set[str] = field(default_factory=set)  # cases with no stop recorded


_lookahead: WeakKeyDictionary[UnitOfWork, Lookahead] = WeakKeyDictionary()


def lookahead(uow: UnitOfWork) -> Lookahead:
    """The batch's findings (empty for a delivery run alone)."""
    return _lookahead.get(uow) or Lookahead()


async def prepare_batch(uow: UnitOfWork, events: list[CaseEvent], _deps: DeadlinesDeps) -> None:
    """For a batch: take every case's lock at once (in one order, so two instances cannot
    deadlock on them), and learn which cases have no stop recorded (most: their starts then
    need no look-up)."""
    case_ids = sorted({str(event.case_id) for event in events})
    found = _lookahead.setdefault(uow, Lookahead())
    if uow.is_postgres:
        await uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:keys AS text[])) k"),
            {"keys": [f"deadlines:{case_id}" for case_id in case_ids]},
        )
        found.locked = set(case_ids)
    stopped = set(
        await uow.session.scalars(
            select(StopRow.case_id).where(StopRow.case_id.in_(case_ids)).distinct()
        )
    )
    found.no_stops = set(case_ids) - stopped


async def apply(uow: UnitOfWork, policy: AlertPolicy, event: CaseEvent) -> str | None:
    """Apply one case event to the clocks, in the caller's transaction; say what was done."""
    case_id = str(event.case_id)
    if uow.is_postgres and case_id not in lookahead(uow).locked:
        # Two instances handling a start and a stop of one case at once must not miss each other.
        await uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"deadlines:{case_id}"}
        )
    if isinstance(event, CaseReceived):
        return await start(uow, policy, event, LEGAL, None, event.received_at)
    if isinstance(event, CaseReopened):
        return await start(uow, policy, event, LEGAL, None, event.reopened_at)
    if isinstance(event, CaseSeparated):
        return await start(uow, policy, event, LEGAL, None, event.separated_at)
    if isinstance(event, CaseJoined):
        await stop(uow, event, LEGAL, None, event.joined_at)
        await stop(uow, event, DEPARTMENT, None, event.joined_at)
        return "clocks stopped (joined: the main case's clocks govern)"
    if isinstance(event, CaseRemitted):
        return await start(uow, policy, event, DEPARTMENT, event.department, event.remitted_at)
    if isinstance(event, RecourseFiled):
        return await start(uow, policy, event, RECOURSE, None, event.filed_at)
    if isinstance(event, RecourseDecided):
        await stop(uow, event, RECOURSE, None, event.decided_at)
        if event.outcome == "revoked" and event.due_at is not None:
            await start(uow, policy, event, LEGAL, None, event.decided_at, due=event.due_at)
            return "recourse clock stopped; new legal clock started (decision revoked)"
        return "recourse clock stopped"
    if isinstance(event, CaseReturnAccepted):
        await stop(uow, event, DEPARTMENT, event.department, event.occurred_at)
        return "department clock stopped"
    if isinstance(event, CaseResolved | CaseClosed | CaseForwarded):
        at = event.resolved_at if isinstance(event, CaseResolved) else event.occurred_at
        await stop(uow, event, LEGAL, None, at)
        await stop(uow, event, DEPARTMENT, None, at)
        return "clocks stopped"
    if isinstance(event, DueDateChanged):
        return await move_clock(uow, policy, event)
    return None  # another case event on the queue: nothing to do


async def start(
    uow: UnitOfWork,
    policy: AlertPolicy,
    event: CaseReceived
    | CaseRemitted
    | CaseReopened
    | CaseSeparated
    | RecourseFiled
    | RecourseDecided,
    clock: str,
    department: str | None,
    started_at: datetime,
    *,
    due: datetime | None = None,
) -> str:
    due = due or event.due_at
    assert due is not None
    # A reopened case's new clock (and a revoked decision's, and a separated case's) is
    # stopped only by a later stop: the stop it restarts after may carry the very same instant.
    stopped = await _stopped_at(
        uow,
        str(event.case_id),
        clock,
        department,
        started_at,
        after_only=isinstance(event, CaseReopened | CaseSeparated | RecourseDecided),
    )
    first = None if stopped is not None else policy.first(due, started_at)
    uow.session.add(
        ClockRow(
            start_event_id=str(event.event_id),
            case_id=str(event.case_id),
            tracking_code=event.tracking_code,
            clock=clock,
            department=department,
            started_at=started_at,
            due_at=due,
            stopped_at=stopped,
            next_fire_at=first.fire_at if first else None,
            next_threshold=first.threshold if first else None,
            last_alert=None,
        )
    )
    if stopped is not None:
        return f"{clock} clock started already stopped (its stop arrived first)"
    return f"{clock} clock started"


async def _stopped_at(
    uow: UnitOfWork,
    case_id: str,
    clock: str,
    department: str | None,
    started_at: datetime,
    *,
    after_only: bool = False,
) -> datetime | None:
    """The earliest recorded stop that covers a clock started at ``started_at`` (with
    ``after_only``, a stop at that very instant does not count)."""
    if case_id in lookahead(uow).no_stops:
        return None
    since = StopRow.stopped_at > started_at if after_only else StopRow.stopped_at >= started_at
    query = select(func.min(StopRow.stopped_at)).where(
        StopRow.case_id == case_id, StopRow.clock == clock, since
    )
    if department is not None:
        query = query.where(or_(StopRow.department.is_(None), StopRow.department == department))
    stopped: datetime | None = await uow.session.scalar(query)
    return stopped


async def stop(
    uow: UnitOfWork, event: CaseEvent, clock: str, department: str | None, at: datetime
) -> None:
    case_id = str(event.case_id)
    lookahead(uow).no_stops.discard(case_id)
    uow.session.add(
        StopRow(
            event_id=str(event.event_id),
            case_id=case_id,
            clock=clock,
            department=department,
            stopped_at=at,
        )
    )
    query = (
        update(ClockRow)
        .where(
            ClockRow.case_id == case_id,
            ClockRow.clock == clock,
            ClockRow.stopped_at.is_(None),
            ClockRow.started_at <= at,
        )
        .values(stopped_at=at, next_fire_at=None, next_threshold=None)
        .execution_options(synchronize_session=False)
    )
    if department is not None:
        query = query.where(ClockRow.department == department)
    await uow.session.execute(query)
