"""The clocks: the department term capped by the legal one, and one "overdue" in Python and SQL."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

from shared.calendar import TZ, BusinessCalendar, CalendarKind, TermPolicy
from shared.db.types import UTCDateTime
from shared.domain.clocks import (
    Clock,
    Terms,
    clock_statuses,
    is_overdue,
    legal_status,
    overdue_clause,
)
from shared.lifecycle import State

TERMS = Terms(
    legal=TermPolicy(30),
    department=TermPolicy(30),
    calendar=BusinessCalendar(CalendarKind.BUSINESS),
    department_margin_days=2,
)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ)


@dataclass
class FakeCase:
    state: str
    due_at: datetime
    department_due_at: datetime | None = None
    recourse_due_at: datetime | None = None


def test_a_department_term_never_ends_after_the_legal_one_less_the_margin() -> None:
    # Filed 2 March 2026, remitted 5 March: 30 working days from the remittance would be 17
    # April, but the legal term ends 14 April; less 2 working days of margin, 10 April (Good
    # Friday, 3 April, is a holiday and does not count).
    legal = TERMS.legal_due(at(date(2026, 3, 2)))
    assert legal.date() == date(2026, 4, 14)
    term = TERMS.department_term(at(date(2026, 3, 5)), legal)
    assert term.due_at == datetime(2026, 4, 10, 23, 59, 59, tzinfo=TZ)
    assert term.capped and not term.no_time_left


def test_an_early_remittance_keeps_the_departments_own_term() -> None:
    legal = TERMS.legal_due(at(date(2026, 3, 2)))
    short = Terms(TermPolicy(30), TermPolicy(10), TERMS.calendar, department_margin_days=2)
    term = short.department_term(at(date(2026, 3, 2)), legal)
    assert term.due_at.date() == date(2026, 3, 16)
    assert not term.capped


def test_a_remittance_with_no_time_left_says_so() -> None:
    legal = TERMS.legal_due(at(date(2026, 3, 2)))
    term = TERMS.department_term(at(date(2026, 4, 13)), legal)
    assert term.no_time_left and term.due_at < at(date(2026, 4, 13))


def test_overdue_counts_the_legal_term_and_the_department_term_while_remitted() -> None:
    now = at(date(2026, 5, 4))
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    assert is_overdue(FakeCase(State.INSPECTION, past), now)
    assert not is_overdue(FakeCase(State.RESOLVED, past), now)
    assert is_overdue(FakeCase(State.REMITTED, future, past), now)
    assert not is_overdue(FakeCase(State.CLASSIFIED, future, past), now)
    assert not is_overdue(FakeCase(State.REMITTED, now, now), now)  # the due instant is on time


def test_a_pending_recurso_runs_its_own_term_and_not_the_legal_one() -> None:
    now = at(date(2026, 5, 4))
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    # The legal term of the handling passed long ago: it does not run under a recurso.
    for state in (State.RECONSIDERATION, State.APPEAL):
        assert not is_overdue(FakeCase(state, past, None, future), now)
        assert is_overdue(FakeCase(state, future, None, past), now)
        statuses = clock_statuses(FakeCase(state, past, None, future), now, TERMS)
        assert [(s.clock, s.overdue) for s in statuses] == [(Clock.RECOURSE, False)]
        # The page's legal term is the handling's, stopped.
        assert legal_status(FakeCase(state, past, None, future), now, TERMS).clock is Clock.LEGAL
    # Decided again: no term runs.
    assert not is_overdue(FakeCase(State.RESOLVED, past, None, past), now)


def test_the_running_clocks_are_listed_legal_first() -> None:
    now = at(date(2026, 3, 10))
    case = FakeCase(State.REMITTED, at(date(2026, 4, 14)), at(date(2026, 3, 9)))
    statuses = clock_statuses(case, now, TERMS)
    assert [s.clock for s in statuses] == [Clock.LEGAL, Clock.DEPARTMENT]
    assert [s.overdue for s in statuses] == [False, True]
    assert clock_statuses(FakeCase(State.CLOSED, now), now, TERMS) == []


def test_the_sql_rule_agrees_with_the_python_rule_on_a_random_set() -> None:
    rng = random.Random(311)
    now = at(date(2026, 6, 1))
    cases = []
    for _ in range(600):
        state = rng.choice(list(State)).value
        due = now + timedelta(hours=rng.randint(-400, 400))
        dept = rng.choice([None, now + timedelta(hours=rng.randint(-400, 400)), now])
        recourse = rng.choice([None, now + timedelta(hours=rng.randint(-400, 400)), now])
        cases.append(FakeCase(state, rng.choice([due, now]), dept, recourse))
    table = Table(
        "cases",
        MetaData(),
        Column("id", String, primary_key=True),
        Column("state", String),
        Column("due_at", UTCDateTime()),
        Column("department_due_at", UTCDateTime(), nullable=True),
        Column("recourse_due_at", UTCDateTime(), nullable=True),
    )
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    "id": str(i),
                    "state": c.state,
                    "due_at": c.due_at,
                    "department_due_at": c.department_due_at,
                    "recourse_due_at": c.recourse_due_at,
                }
                for i, c in enumerate(cases)
            ],
        )
        for wanted in (True, False):
            clause = overdue_clause(
                table.c.state,
                table.c.due_at,
                table.c.department_due_at,
                now,
                recourse_due=table.c.recourse_due_at,
                overdue=wanted,
            )
            found = {int(i) for i in conn.scalars(select(table.c.id).where(clause))}
            expected = {i for i, c in enumerate(cases) if is_overdue(c, now) == wanted}
            assert found == expected


def test_the_legal_status_of_a_decided_case_is_stopped_and_never_overdue() -> None:
    filed = at(date(2026, 3, 2))
    due = TERMS.legal_due(filed)
    late = due + timedelta(days=10)
    open_case = FakeCase(State.RECEIVED.value, due)
    closed = FakeCase(State.CLOSED.value, due)
    assert legal_status(open_case, late, TERMS) == clock_statuses(open_case, late, TERMS)[0]
    assert legal_status(open_case, late, TERMS).overdue
    stopped = legal_status(closed, late, TERMS)
    assert (stopped.clock, stopped.due_at, stopped.overdue) == (Clock.LEGAL, due, False)
    assert stopped.days_left < 0
