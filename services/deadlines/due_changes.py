"""A due date moved by a closure (``DueDateChanged``): move the clock and its next alert.

The clock keeps the most urgent alert it has sent (``last_alert``), so no alert is sent twice;
the next one is counted from the new due date. A stopped clock (the case was answered or
closed meanwhile) stays stopped, with its due date corrected for the record.
"""

from __future__ import annotations

from sqlalchemy import select

from services.deadlines.models import DEPARTMENT, ClockRow
from services.deadlines.schedule import AlertPolicy
from shared.contract import DueDateChanged
from shared.uow import UnitOfWork


async def move_clock(uow: UnitOfWork, policy: AlertPolicy, event: DueDateChanged) -> str:
    query = select(ClockRow).where(
        ClockRow.case_id == str(event.case_id),
        ClockRow.clock == event.clock,
        ClockRow.due_at == event.previous_due_at,
    )
    if event.clock == DEPARTMENT and event.department is not None:
        query = query.where(ClockRow.department == event.department)
    moved = 0
    for clock in await uow.session.scalars(query):
        clock.due_at = event.due_at
        if clock.stopped_at is None:
            alert = policy.after(clock.due_at, clock.started_at, clock.last_alert)
            clock.next_fire_at = alert.fire_at if alert else None
            clock.next_threshold = alert.threshold if alert else None
        moved += 1
    return f"{event.clock} clock moved to the new due date ({moved} row(s))"
