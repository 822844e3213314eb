"""Start and stop the clocks from the case events (idempotent by ``event_id``).

- ``CaseReceived`` starts the legal clock (due = the event's ``due_at``);
- ``CaseRemitted`` starts a department clock (due = the event's ``due_at``); a re-remittance
  starts a new one;
- ``DepartmentResponded`` / ``CaseReturned`` stop that department's clocks;
- ``CaseReopened`` (the citizen said "no está resuelto") starts a new legal clock;
- ``CaseResolved`` / ``CaseClosed`` stop the legal clock and every department clock of the case;
- ``SubmissionRejected`` for a department's answer (the router refused it: the case is not that
  department's, the state does not allow it, a field breaks a rule) undoes that answer's stop:
  the clock runs again from the alert it had reached. Heard before the answer itself, it claims
  the answer's ``event_id`` so that the answer, when it comes, is ignored as already handled.
- ``DueDateChanged`` (a closure by decree moved a term) moves that clock and its next alert;
- An answer whose routing key names another department than its body is dead-lettered (as the
  router does): a department cannot stop another's clock.

A stop applies to the clocks started at or before it, and is stored even when no such clock is
known yet: a start that arrives late (a redelivery goes to the back of the queue) is then opened
already stopped, and a stop that arrives late does not stop a later re-remittance.
"""

from __future__ import annotations

import logging
from datetime import datetime

from faststream.rabbit.message import RabbitMessage
from pydantic import ValidationError
from sqlalchemy import func, or_, select, text, update

from services.deadlines.due_changes import move_clock
from services.deadlines.models import DEPARTMENT, LEGAL, ClockRow, StopRow
from services.deadlines.schedule import AlertPolicy
from shared.consumer import Handler, Poison, Work
from shared.contract import (
    CaseClosed,
    CaseEvent,
    CaseReceived,
    CaseRemitted,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    DepartmentResponded,
    DueDateChanged,
    Event,
    SubmissionRejected,
    parse_event,
)
from shared.runtime import Deps
from shared.uow import UnitOfWork

CONSUMER = "deadlines"
log = logging.getLogger("defensa311.deadlines")


def policy_for(deps: Deps) -> AlertPolicy:
    policy = deps.extras.get("deadline_policy")
    if policy is None:
        policy = AlertPolicy.from_config(deps.config, deps.cases.terms)
        deps.extras["deadline_policy"] = policy
    assert isinstance(policy, AlertPolicy)
    return policy


def parse(body: bytes) -> Event:
    try:
        return parse_event(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Poison("el cuerpo no es JSON válido") from exc
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "·" for e in exc.errors())
        raise Poison(f"no cumple el esquema del evento: {fields}") from exc


def case_event(deps: Deps) -> Handler:
    """The handler of the ``defensa311.deadlines`` queue."""
    policy = policy_for(deps)

    def decode(body: bytes, msg: RabbitMessage) -> Work:
        event = parse(body)
        if isinstance(event, SubmissionRejected):
            if not (event.refused_event_id and event.case_id and event.department):
                raise Poison("SubmissionRejected sin respuesta de departamento rechazada")
        elif not isinstance(event, CaseEvent):
            raise Poison(f"event_type inesperado: {event.event_type!r}")
        elif isinstance(event, DepartmentResponded | CaseReturned):
            key = msg.raw_message.routing_key or ""
            if key.rsplit(".", 1)[-1] != event.department:
                raise Poison("el departamento del mensaje no coincide con su clave de enrutamiento")

        async def work(uow: UnitOfWork) -> None:
            if not await uow.claim(CONSUMER, str(event.event_id), deps.clock.now()):
                return
            outcome = await apply(uow, policy, event)
            if outcome:
                facts = {
                    "case_id": str(event.case_id),
                    "tracking_code": event.tracking_code,
                    "event_type": event.event_type,
                }
                uow.after_commit(lambda: log.info(outcome, extra=facts))

        claim = (CONSUMER, str(event.event_id))
        return Work(work, claim=claim, prepare=prepare_batch, subject=event)

    return decode


LOCKED = "deadlines.locked"
NO_STOPS = "deadlines.no_stops"


async def prepare_batch(uow: UnitOfWork, works: list[Work]) -> None:
    """For a batch: take every case's lock at once (in one order, so two instances cannot
    deadlock on them), and learn which cases have no stop recorded (most: their starts then
    need no look-up)."""
    case_ids = sorted({str(work.subject.case_id) for work in works})
    if uow.is_postgres:
        await uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:keys AS text[])) k"),
            {"keys": [f"deadlines:{case_id}" for case_id in case_ids]},
        )
        uow.batch[LOCKED] = set(case_ids)
    stopped = set(
        await uow.session.scalars(
            select(StopRow.case_id).where(StopRow.case_id.in_(case_ids)).distinct()
        )
    )
    uow.batch[NO_STOPS] = set(case_ids) - stopped


async def apply(
    uow: UnitOfWork, policy: AlertPolicy, event: CaseEvent | SubmissionRejected
) -> str | None:
    """Apply one case event to the clocks, in the caller's transaction; say what was done."""
    case_id = str(event.case_id)
    if uow.is_postgres and case_id not in uow.batch.get(LOCKED, ()):
        # Two instances handling a start and a stop of one case at once must not miss each other.
        await uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"deadlines:{case_id}"}
        )
    if isinstance(event, CaseReceived):
        return await start(uow, policy, event, LEGAL, None, event.received_at)
    if isinstance(event, CaseReopened):
        return await start(uow, policy, event, LEGAL, None, event.reopened_at)
    if isinstance(event, CaseRemitted):
        return await start(uow, policy, event, DEPARTMENT, event.department, event.remitted_at)
    if isinstance(event, DepartmentResponded | CaseReturned):
        await stop(uow, event, DEPARTMENT, event.department, event.occurred_at)
        return "department clock stopped"
    if isinstance(event, CaseResolved | CaseClosed):
        at = event.resolved_at if isinstance(event, CaseResolved) else event.occurred_at
        await stop(uow, event, LEGAL, None, at)
        await stop(uow, event, DEPARTMENT, None, at)
        return "clocks stopped"
    if isinstance(event, SubmissionRejected):
        return await undo_stop(uow, policy, event)
    if isinstance(event, DueDateChanged):
        return await move_clock(uow, policy, event)
    return None  # another case event on the queue: nothing to do


async def undo_stop(uow: UnitOfWork, policy: AlertPolicy, event: SubmissionRejected) -> str:
    """The router refused a department's answer: the clock that answer stopped runs again."""
    refused, case_id = str(event.refused_event_id), str(event.case_id)
    if await uow.claim(CONSUMER, refused, event.occurred_at):
        return "refused answer claimed before it came: it will be ignored"
    stops = list(
        await uow.session.scalars(
            select(StopRow).where(StopRow.event_id == refused, StopRow.case_id == case_id)
        )
    )
    for row in stops:
        await uow.session.delete(row)
    await uow.session.flush()
    reopened = 0
    for row in stops:
        # populate_existing: a clock started in this batch is in the session as it was
        # before ``stop`` (a bulk UPDATE) stopped it; read what the database holds.
        query = (
            select(ClockRow)
            .where(
                ClockRow.case_id == case_id,
                ClockRow.clock == row.clock,
                ClockRow.stopped_at == row.stopped_at,
            )
            .execution_options(populate_existing=True)
        )
        if row.department is not None:
            query = query.where(ClockRow.department == row.department)
        for clock in await uow.session.scalars(query):
            # another stop may still cover it (a later return, a resolution)
            clock.stopped_at = await _stopped_at(
                uow, case_id, clock.clock, clock.department, clock.started_at
            )
            if clock.stopped_at is None:
                alert = policy.after(clock.due_at, clock.started_at, clock.last_alert)
                clock.next_fire_at = alert.fire_at if alert else None
                clock.next_threshold = alert.threshold if alert else None
                reopened += 1
    return f"refused answer's stop undone: {reopened} clock(s) running again"


async def start(
    uow: UnitOfWork,
    policy: AlertPolicy,
    event: CaseReceived | CaseRemitted | CaseReopened,
    clock: str,
    department: str | None,
    started_at: datetime,
) -> str:
    stopped = await _stopped_at(uow, str(event.case_id), clock, department, started_at)
    first = None if stopped is not None else policy.first(event.due_at, started_at)
    uow.session.add(
        ClockRow(
            start_event_id=str(event.event_id),
            case_id=str(event.case_id),
            tracking_code=event.tracking_code,
            clock=clock,
            department=department,
            started_at=started_at,
            due_at=event.due_at,
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
    uow: UnitOfWork, case_id: str, clock: str, department: str | None, started_at: datetime
) -> datetime | None:
    """The earliest recorded stop that covers a clock started at ``started_at``."""
    if case_id in uow.batch.get(NO_STOPS, ()):
        return None
    query = select(func.min(StopRow.stopped_at)).where(
        StopRow.case_id == case_id,
        StopRow.clock == clock,
        StopRow.stopped_at >= started_at,
    )
    if department is not None:
        query = query.where(or_(StopRow.department.is_(None), StopRow.department == department))
    stopped: datetime | None = await uow.session.scalar(query)
    return stopped


async def stop(
    uow: UnitOfWork, event: CaseEvent, clock: str, department: str | None, at: datetime
) -> None:
    case_id = str(event.case_id)
    uow.batch.get(NO_STOPS, set()).discard(case_id)
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
