"""Joined cases follow their main case: each step of the main case is mirrored on them.

When a main case takes a step (a lifecycle action, or a term moved by a closure), every case
joined to it takes it too, in the same transaction: its state and dates mirror the main
case's (:meth:`shared.domain.case.Case.follow`), an audit row records the step on its timeline
and a ``CaseFollowedMain`` goes out through the outbox (the notifier tells its citizen).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select

from shared.cases.audit import audit
from shared.cases.duplicates import joined_to
from shared.contract import Event
from shared.db.models import CaseRow
from shared.domain.case import Case
from shared.uow import UnitOfWork

FOLLOW_ACTION = "follow_main"
ACTOR = "system"


async def count_followers(uow: UnitOfWork, case: CaseRow) -> int:
    found = await uow.session.scalar(
        select(func.count()).select_from(CaseRow).where(CaseRow.duplicate_of == case.id)
    )
    return int(found or 0)


async def main_of(uow: UnitOfWork, case: CaseRow) -> CaseRow | None:
    """The main case a joined case follows (None: the case is not joined)."""
    if case.duplicate_of is None:
        return None
    return await uow.session.get(CaseRow, case.duplicate_of)


async def follow_main(
    uow: UnitOfWork,
    main: CaseRow,
    step: str,
    events: list[Event],
    *,
    case_of: Callable[[CaseRow], Case],
    now: datetime,
) -> list[Event]:
    """Every case joined to ``main`` takes its ``step``; ``events`` are what the main case
    emitted for it (the last one is named as the step's event). Returns the events emitted."""
    followers = await joined_to(uow, main, lock=True)
    if not followers:
        return []
    step_event_id = uuid.UUID(str(events[-1].event_id)) if events else None
    emitted: list[Event] = []
    for joined in followers:
        from_state = joined.state
        followed = case_of(joined).follow(main, step, now, step_event_id=step_event_id)
        for event in followed:
            uow.publish(event)
        audit(
            uow,
            joined,
            actor=ACTOR,
            action=FOLLOW_ACTION,
            from_state=from_state,
            to_state=joined.state,
            now=now,
            details={
                "main": main.tracking_code,
                "step": step,
                "events": [str(e.event_id) for e in followed],
            },
        )
        emitted.extend(followed)
    return emitted
