"""The audit trail: who did what to a case, when, from which state to which, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.db.models import CaseHistoryRow, CaseRow
from shared.uow import UnitOfWork


def audit(
    uow: UnitOfWork,
    case: CaseRow | str,
    *,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """An audit row on ``case``: the row itself, or the id of a case this transaction has not
    read."""
    target = {"case_id": case} if isinstance(case, str) else {"case": case}
    uow.session.add(
        CaseHistoryRow(
            **target,
            at=now,
            actor=actor,
            action=action,
            from_state=from_state,
            to_state=str(to_state) if to_state else None,
            details=details,
        )
    )


def record_note(
    uow: UnitOfWork,
    case: CaseRow,
    *,
    actor: str,
    action: str,
    now: datetime,
    details: dict[str, Any],
) -> None:
    """An audit row that changes no state (a refused answer, a notification, an alert)."""
    audit(
        uow,
        case,
        actor=actor,
        action=action,
        from_state=case.state,
        to_state=case.state,
        now=now,
        details=details,
    )


async def record_note_on(
    uow: UnitOfWork,
    case_id: str,
    *,
    actor: str,
    action: str,
    now: datetime,
    details: dict[str, Any],
) -> bool:
    """:func:`record_note` on a case the transaction has not read: only its state is read,
    not the whole case. False (and no note) when there is no such case."""
    state = await uow.session.scalar(select(CaseRow.state).where(CaseRow.id == case_id))
    if state is None:
        return False
    audit(
        uow,
        case_id,
        actor=actor,
        action=action,
        from_state=state,
        to_state=state,
        now=now,
        details=details,
    )
    return True
