"""Days closed by decree, and how a new one moves the terms that span it. Pure: no I/O.

Besides the national holidays of the law, the Executive closes public offices by decree and may
suspend administrative terms those days. A closure that suspends terms is not a working day;
one that does not (e.g. an afternoon closure whose decree leaves terms running) is shown on the
calendar but counted.

When such a day is added after cases were filed, every open term that spans it (started before
the day, due on or after it) is computed again on the new calendar: the legal term from the
filing, the department's from the remittance (capped again by the new legal due date), and a
pending recurso's term from its filing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from shared.calendar import TZ
from shared.domain.clocks import Clock, Terms
from shared.lifecycle import OPEN_STATES, RECOURSE_STATES, State

__all__ = ["Closure", "ClosureSource", "DueChange", "OpenTerms", "closed_days", "moved_terms"]


class ClosureSource(StrEnum):
    CONFIG = "configuración"
    DATABASE = "consola"


@dataclass(frozen=True)
class Closure:
    day: date
    reason: str
    suspends_terms: bool = True
    source: ClosureSource = ClosureSource.CONFIG


def closed_days(closures: Iterable[Closure]) -> frozenset[date]:
    """The days that are not working days: closures that suspend terms."""
    return frozenset(c.day for c in closures if c.suspends_terms)


@dataclass(frozen=True)
class OpenTerms:
    """The terms of one case as stored."""

    state: str
    received_at: datetime
    due_at: datetime
    department: str | None = None
    remitted_at: datetime | None = None
    department_due_at: datetime | None = None
    recourse_filed_at: datetime | None = None
    recourse_due_at: datetime | None = None


@dataclass(frozen=True)
class DueChange:
    clock: Clock
    department: str | None
    previous: datetime
    due_at: datetime


def _local(instant: datetime) -> date:
    return instant.astimezone(TZ).date()


def _spans(start: datetime, due: datetime, day: date) -> bool:
    return _local(start) < day <= _local(due)


def moved_terms(case: OpenTerms, day: date, terms: Terms) -> list[DueChange]:
    """The running terms of ``case`` that a closure on ``day`` moves, with their new due dates.

    ``terms`` must already count ``day`` as closed. A term that does not span the day, or a case
    no longer open, is not touched.
    """
    if case.state in RECOURSE_STATES:
        filed, due = case.recourse_filed_at, case.recourse_due_at
        if filed is None or due is None or not _spans(filed, due, day):
            return []
        moved = terms.appeal_decision_due(filed)
        return [DueChange(Clock.RECOURSE, None, due, moved)] if moved != due else []
    if case.state not in OPEN_STATES:
        return []
    changes: list[DueChange] = []
    legal = case.due_at
    if _spans(case.received_at, case.due_at, day):
        legal = terms.legal_due(case.received_at)
        if legal != case.due_at:
            changes.append(DueChange(Clock.LEGAL, None, case.due_at, legal))
    remitted_at, department_due_at = case.remitted_at, case.department_due_at
    if (
        case.state == State.REMITTED.value
        and remitted_at is not None
        and department_due_at is not None
        # The department's term moves when it spans the day, or when the legal one (its cap) moved.
        and (_spans(remitted_at, department_due_at, day) or legal != case.due_at)
    ):
        department_due = terms.department_due(remitted_at, legal)
        if department_due != department_due_at:
            changes.append(
                DueChange(Clock.DEPARTMENT, case.department, department_due_at, department_due)
            )
    return changes
