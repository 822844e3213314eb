"""The clocks of a case: the one place that says when a term ends and what "overdue" means.

Two terms run on a case (DESIGN §3):

- the **legal** term, from filing: ``days`` working days (Ley 38 de 2000, art. 67 counts day
  terms in días hábiles); it runs while the case is open;
- the **department** term, from a remittance: ``department_days`` working days, but never past
  the legal due date less ``department_margin_days`` working days, so a department that answers
  "on time" leaves the office time to notify the citizen within the legal term. It runs while the
  case is remitted;
- the **recourse** term, from the filing of a reconsideración or an apelación against the
  decision: ``appeal_decision_days`` working days for the office or the superior to decide it.
  It runs while the recurso is pending (:data:`~shared.lifecycle.RECOURSE_STATES`); the legal
  term of the handling does not.

A case is **overdue** when a running term has passed. Every surface — the API's filter and
views, the console, the transparency figures, ``/metrics`` and the deadlines service — asks
:func:`is_overdue` (in Python) or :func:`overdue_clause` (the same rule in SQL, for queries over
many cases); ``tests/unit/test_clocks.py`` holds the two to the same answers.

Pure: the SQL twin builds an expression over the columns it is given and runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from shared.calendar import (
    END_OF_DAY,
    TZ,
    BusinessCalendar,
    CalendarKind,
    TermPolicy,
    days_left,
    due_at,
)
from shared.config import InstitutionConfig
from shared.lifecycle import OPEN_STATES, RECOURSE_STATES, State

__all__ = [
    "Clock",
    "ClockStatus",
    "DepartmentTerm",
    "HasClocks",
    "Terms",
    "clock_statuses",
    "is_overdue",
    "legal_status",
    "overdue_clause",
]

#: The legal term runs in :data:`~shared.lifecycle.OPEN_STATES`; the department's while remitted.
REMITTED = State.REMITTED.value
_OPEN = sorted(s.value for s in OPEN_STATES)
_RECOURSE = sorted(s.value for s in RECOURSE_STATES)


class Clock(StrEnum):
    LEGAL = "legal"
    DEPARTMENT = "department"
    RECOURSE = "recourse"


class HasClocks(Protocol):
    """What the clocks read of a case (a stored row or any view of one)."""

    @property
    def state(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def department_due_at(self) -> datetime | None: ...
    @property
    def recourse_due_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class DepartmentTerm:
    """A remittance's due date and whether the legal term capped it."""

    due_at: datetime
    capped: bool
    #: No working day is left for the department before the cap: the supervisor must know now.
    no_time_left: bool


@dataclass(frozen=True)
class Terms:
    """The institution's deadline policy, made ready to compute due dates."""

    legal: TermPolicy
    department: TermPolicy
    calendar: BusinessCalendar
    department_margin_days: int = 2
    #: The term after a resolution within which the citizen may say it is not resolved.
    reopen: TermPolicy | None = None
    #: The term to file a recurso after the decision's notification (default 5 days), and the
    #: term to decide it (default 30 days).
    appeal: TermPolicy | None = None
    appeal_decision: TermPolicy | None = None

    @classmethod
    def from_config(cls, config: InstitutionConfig) -> Terms:
        kind = CalendarKind(config.deadlines.calendar)
        return cls(
            legal=TermPolicy(days=config.deadlines.days, calendar=kind),
            department=TermPolicy(days=config.deadlines.department_days, calendar=kind),
            calendar=BusinessCalendar(
                kind, [c.date for c in config.calendar.closures if c.suspends_terms]
            ),
            department_margin_days=config.deadlines.department_margin_days,
            reopen=TermPolicy(days=config.deadlines.reopen_days, calendar=kind),
            appeal=TermPolicy(days=config.deadlines.appeal_days, calendar=kind),
            appeal_decision=TermPolicy(days=config.deadlines.appeal_decision_days, calendar=kind),
        )

    def legal_due(self, filed_at: datetime) -> datetime:
        return due_at(filed_at, self.legal, self.calendar)

    def reopen_ends(self, resolved_at: datetime) -> datetime:
        """The last instant the citizen may say "no está resuelto" (default 10 days)."""
        policy = self.reopen or TermPolicy(days=10, calendar=self.calendar.kind)
        return due_at(resolved_at, policy, self.calendar)

    def appeal_ends(self, notified_at: datetime) -> datetime:
        """The last instant to file a recurso against a decision notified at ``notified_at``."""
        policy = self.appeal or TermPolicy(days=5, calendar=self.calendar.kind)
        return due_at(notified_at, policy, self.calendar)

    def appeal_decision_due(self, filed_at: datetime) -> datetime:
        """When a recurso filed at ``filed_at`` must be decided (default 30 days)."""
        policy = self.appeal_decision or TermPolicy(days=30, calendar=self.calendar.kind)
        return due_at(filed_at, policy, self.calendar)

    def department_term(self, remitted_at: datetime, legal_due: datetime) -> DepartmentTerm:
        """The department's due date: its own term, capped by the legal one less the margin."""
        own = due_at(remitted_at, self.department, self.calendar)
        last_day = self.calendar.subtract_days(
            legal_due.astimezone(TZ).date(), self.department_margin_days
        )
        cap = datetime.combine(last_day, END_OF_DAY, tzinfo=TZ)
        if own <= cap:
            return DepartmentTerm(own, capped=False, no_time_left=False)
        return DepartmentTerm(cap, capped=True, no_time_left=cap <= remitted_at)

    def department_due(self, remitted_at: datetime, legal_due: datetime) -> datetime:
        return self.department_term(remitted_at, legal_due).due_at

    def department_due_capped(self, remitted_at: datetime, department_due: datetime) -> bool:
        """Whether a stored department due date is earlier than the department's own term
        (it was capped by the legal due date less the margin)."""
        return department_due < due_at(remitted_at, self.department, self.calendar)

    def cap_note(self) -> str:
        """How a capped department term is explained to staff and departments (Spanish)."""
        days = self.department_margin_days
        return (
            f"limitado por el plazo legal: vence {days} día{'s' if days != 1 else ''} "
            f"hábil{'es' if days != 1 else ''} antes, para notificar al ciudadano a tiempo"
        )


def _running(case: HasClocks) -> list[tuple[Clock, datetime]]:
    if case.state in RECOURSE_STATES:
        return [(Clock.RECOURSE, case.recourse_due_at)] if case.recourse_due_at else []
    if case.state not in OPEN_STATES:
        return []
    clocks = [(Clock.LEGAL, case.due_at)]
    if case.state == REMITTED and case.department_due_at is not None:
        clocks.append((Clock.DEPARTMENT, case.department_due_at))
    return clocks


def is_overdue(case: HasClocks, now: datetime) -> bool:
    """Whether a running term of the case has passed (its due instant itself is on time)."""
    return any(now > due for _, due in _running(case))


def overdue_clause(
    state: InstrumentedAttribute[str] | ColumnElement[str],
    legal_due: InstrumentedAttribute[datetime] | ColumnElement[datetime],
    department_due: InstrumentedAttribute[datetime | None] | ColumnElement[datetime | None],
    now: datetime,
    *,
    recourse_due: InstrumentedAttribute[datetime | None] | ColumnElement[datetime | None],
    overdue: bool = True,
) -> ColumnElement[bool]:
    """:func:`is_overdue` in SQL over the given columns (``overdue=False``: its negation)."""
    handling_late = and_(
        state.in_(_OPEN),
        or_(
            legal_due < now,
            and_(state == REMITTED, department_due.is_not(None), department_due < now),
        ),
    )
    recourse_late = and_(state.in_(_RECOURSE), recourse_due.is_not(None), recourse_due < now)
    if overdue:
        return or_(handling_late, recourse_late)
    # NOT over a NULL due date would be NULL in SQL: spell the negation out.
    return and_(
        or_(
            state.not_in(_OPEN),
            and_(
                legal_due >= now,
                or_(state != REMITTED, department_due.is_(None), department_due >= now),
            ),
        ),
        or_(state.not_in(_RECOURSE), recourse_due.is_(None), recourse_due >= now),
    )


@dataclass(frozen=True)
class ClockStatus:
    """One running term as a page shows it."""

    clock: Clock
    due_at: datetime
    days_left: int
    overdue: bool


def clock_statuses(case: HasClocks, now: datetime, terms: Terms) -> list[ClockStatus]:
    """The running terms of a case with their days left (legal first)."""
    return [
        ClockStatus(clock, due, days_left(due, now, terms.calendar), now > due)
        for clock, due in _running(case)
    ]


def legal_status(case: HasClocks, now: datetime, terms: Terms) -> ClockStatus:
    """The legal term as a page shows it, running or not (a stopped term is never overdue)."""
    running = [s for s in clock_statuses(case, now, terms) if s.clock is Clock.LEGAL]
    if running:
        return running[0]
    return ClockStatus(Clock.LEGAL, case.due_at, days_left(case.due_at, now, terms.calendar), False)
