"""The audit trail: who did what to a case, when, from which state to which, and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CaseNote:
    """What :func:`record_notes_on` writes on a case: an audit row that changes no state."""

    case_id: str
    action: str
    details: dict[str, Any]


async def record_notes_on(
    uow: UnitOfWork, notes: Sequence[CaseNote], *, actor: str, now: datetime
) -> int:
    """:func:`record_note` on cases the transaction has not read: the states of all their
    cases are read in one statement (only the states, not the cases). Each case's notes keep
    the order given; the cases go in id order, the order a batch locks cases in
    (:meth:`UnitOfWork.prefetch`), since each note's foreign key locks its case (``FOR KEY
    SHARE``) until the commit: two transactions cannot then wait on each other. A note on a
    case that does not exist is left out; returns how many were written."""
    if not notes:
        return 0
    case_ids = sorted({note.case_id for note in notes})
    found = await uow.session.execute(
        select(CaseRow.id, CaseRow.state).where(CaseRow.id.in_(case_ids))
    )
    states = {case_id: state for case_id, state in found}
    written = 0
    for note in sorted(notes, key=lambda note: note.case_id):  # stable: each case's order
        state = states.get(note.case_id)
        if state is None:
            continue
        audit(
            uow,
            note.case_id,
            actor=actor,
            action=note.action,
            from_state=state,
            to_state=state,
            now=now,
            details=note.details,
        )
        written += 1
    return written
