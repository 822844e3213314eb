"""The sweep: send the alerts whose time has come, once per clock and threshold, ever.

One batch is one transaction: claim the due clocks (``next_fire_at <= now``, oldest first, a
bounded batch; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several instances share the work and
never claim the same clock), compute for each the most urgent alert reached, write it to the
outbox and move the clock on to its next alert not yet reached. The alert's ``event_id`` is
derived from the clock and the threshold, so even a second attempt could not store it twice (the
outbox's ``event_id`` is unique). The sweep reads only due rows, through the partial index on
``next_fire_at``: its cost grows with the alerts due, not with the open clocks.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import select

from services.deadlines.handlers import policy_for
from services.deadlines.models import DEPARTMENT, ClockRow
from services.deadlines.schedule import Alert, AlertPolicy
from shared.contract import DeadlineMissed, DeadlineNear, Event
from shared.runtime import Deps
from shared.uow import UnitOfWork

log = logging.getLogger("defensa311.deadlines")

#: Namespace of the alerts' event ids: uuid5(namespace, "<clock start event id>:<threshold>").
ALERT_NAMESPACE = UUID("6c1f3e0a-5d31-4a9e-9d11-3110de0a1e77")
DEFAULT_BATCH = 500


@dataclass
class SweepResult:
    claimed: int = 0
    near: int = 0
    missed: int = 0
    alerts: list[Event] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.near + self.missed


def alert_event_id(row: ClockRow, threshold: int) -> UUID:
    return uuid.uuid5(ALERT_NAMESPACE, f"{row.start_event_id}:{threshold}")


def alert_event(row: ClockRow, alert: Alert, now: datetime) -> DeadlineNear | DeadlineMissed:
    common = {
        "event_id": alert_event_id(row, alert.threshold),
        "occurred_at": now,
        "case_id": UUID(row.case_id),
        "tracking_code": row.tracking_code,
        "clock": row.clock,
        "department": row.department if row.clock == DEPARTMENT else None,
        "due_at": row.due_at,
    }
    if alert.missed:
        return DeadlineMissed.model_validate(common)
    return DeadlineNear.model_validate({**common, "days_before": alert.threshold})


async def sweep_batch(
    uow: UnitOfWork, policy: AlertPolicy, now: datetime, batch: int, result: SweepResult
) -> int:
    """Claim and advance one batch of due clocks in the caller's transaction; return the count."""
    query = (
        select(ClockRow)
        .where(ClockRow.next_fire_at <= now)
        .order_by(ClockRow.next_fire_at)
        .limit(batch)
    )
    if uow.is_postgres:
        query = query.with_for_update(skip_locked=True)
    rows = list(await uow.session.scalars(query))
    for row in rows:
        step = policy.step(row.due_at, row.started_at, now, row.last_alert)
        if step.send is not None:
            event = alert_event(row, step.send, now)
            uow.publish(event)
            result.alerts.append(event)
            if step.send.missed:
                result.missed += 1
            else:
                result.near += 1
            row.last_alert = step.send.threshold
        row.next_fire_at = step.next.fire_at if step.next else None
        row.next_threshold = step.next.threshold if step.next else None
    result.claimed += len(rows)
    return len(rows)


async def sweep(
    uow_factory: Callable[[], UnitOfWork],
    policy: AlertPolicy,
    now: datetime,
    *,
    batch: int = DEFAULT_BATCH,
) -> SweepResult:
    """Sweep as of ``now`` until no due clock is left unclaimed; one transaction per batch."""
    result = SweepResult()
    while True:
        async with uow_factory() as uow:
            count = await sweep_batch(uow, policy, now, batch, result)
        if count < batch:
            break
    for event in result.alerts:
        assert isinstance(event, DeadlineNear | DeadlineMissed)
        log.info(
            "deadline alert",
            extra={
                "case_id": str(event.case_id),
                "tracking_code": event.tracking_code,
                "clock": event.clock,
                "event_type": event.event_type,
                "days_before": getattr(event, "days_before", 0),
            },
        )
    return result


async def sweep_loop(deps: Deps) -> None:
    """The service's loop: sweep every ``[deadlines] sweep_interval_seconds``."""
    policy = policy_for(deps)
    interval = deps.config.deadlines.sweep_interval_seconds
    while True:
        try:
            await sweep(deps.uow, policy, deps.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("deadline sweep failed, retrying", extra={"error": type(exc).__name__})
        await asyncio.sleep(interval)
