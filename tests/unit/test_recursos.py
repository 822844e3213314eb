"""Recursos against a decision (Ley 38 de 2000): their term after the notification, counted on
the shipped calendar (holidays and the 2026 closures by decree), and their outcomes."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import get_args

import pytest

from services.intake.api.schemas import ListFilters
from shared.calendar import TZ, BusinessCalendar, CalendarKind, TermPolicy
from shared.cases.services import CaseServices
from shared.config import load_config
from shared.contract import RecourseDecided, RecourseFiled
from shared.db.models import CaseRow
from shared.domain.case import Case, InvalidActionInput, TermEnded
from shared.domain.clocks import Clock, Terms
from shared.domain.closures import OpenTerms, moved_terms
from shared.lifecycle import IllegalTransition, State
from shared.settings import DEFAULT_CONFIG
from tests.factories import aggregate, case_in, services


@functools.cache
def shipped() -> CaseServices:
    """The case services over the shipped calendar: its closures by decree included."""
    return services(calendar=load_config(DEFAULT_CONFIG).calendar.model_dump())


def at(day: date, hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=TZ)


def resolved_on(day: date, state: str = State.RESOLVED, **overrides: object) -> CaseRow:
    row = case_in(State(state).value, resolved_at=at(day), department="vias", **overrides)
    if state == State.CLOSED:
        row.closed_at = at(day, 11)
    return row


def case(row: CaseRow) -> Case:
    return aggregate(row, shipped())


# ---------------------------------------------------------------------- the term to file


def test_across_the_year_end_the_closures_and_holidays_do_not_count() -> None:
    # Resolved Monday 22 December 2025: 23 Dec (1), 24 Dec closed by decree, 25 Dec holiday,
    # 26 Dec (2), 29 (3), 30 (4), 31 Dec closed by decree, 1 Jan holiday, 2 Jan 2026 (5).
    row = resolved_on(date(2025, 12, 22))
    assert case(row).recourse_ends() == datetime(2026, 1, 2, 23, 59, 59, tzinfo=TZ)


def test_the_last_day_of_the_term_is_in_term() -> None:
    row = resolved_on(date(2025, 12, 22))
    last_minute = at(date(2026, 1, 2), 23, 59, 59)
    (event,) = case(row).file_reconsideration(last_minute)
    assert isinstance(event, RecourseFiled)
    assert row.state == State.RECONSIDERATION and row.recourse == "reconsideration"
    # Decided within 30 working days of the filing: 5–8 Jan (4), 9 Jan is the Día de los
    # Mártires, 12 Jan–13 Feb (29 in all); Monday 16 February, closed by Decreto Ejecutivo 3 de
    # 2026 with terms left running (as shipped), is the 30th working day.
    assert event.due_at == row.recourse_due_at == datetime(2026, 2, 16, 23, 59, 59, tzinfo=TZ)


def test_the_day_after_the_term_is_refused_naming_the_day_it_ended() -> None:
    row = resolved_on(date(2025, 12, 22))
    before = (row.state, row.recourse, row.recourse_due_at)
    with pytest.raises(TermEnded) as refused:
        case(row).file_appeal(at(date(2026, 1, 5), 8))
    assert refused.value.message == (
        "el plazo para presentar la apelación terminó el 2 de enero de 2026"
    )
    assert refused.value.ended_at == datetime(2026, 1, 2, 23, 59, 59, tzinfo=TZ)
    assert (row.state, row.recourse, row.recourse_due_at) == before  # nothing changed


def test_the_2026_carnival_closures_leave_the_term_running() -> None:
    # Resolved Thursday 12 February 2026: 13 Feb (1); 16 Feb (2) and 18 Feb (3) closed by
    # decree with terms left running (as shipped), 17 Feb Carnival; 19 (4), 20 Feb (5).
    row = resolved_on(date(2026, 2, 12))
    assert case(row).recourse_ends() == datetime(2026, 2, 20, 23, 59, 59, tzinfo=TZ)
    with pytest.raises(TermEnded, match="terminó el 20 de febrero de 2026"):
        case(row).file_reconsideration(at(date(2026, 2, 23), 9))
    assert case(row).file_reconsideration(at(date(2026, 2, 20), 16))


def test_a_case_closed_without_a_resolution_runs_the_term_from_its_closure() -> None:
    row = case_in("closed", resolved_at=None, closed_at=at(date(2026, 3, 2)))  # declined
    assert case(row).recourse_ends() == datetime(2026, 3, 9, 23, 59, 59, tzinfo=TZ)


# ---------------------------------------------------------------------------- outcomes


def test_a_confirmed_reconsideration_leaves_the_decision_and_opens_the_apelacion() -> None:
    row = resolved_on(date(2026, 3, 2))
    case(row).file_reconsideration(at(date(2026, 3, 4)))
    (event,) = case(row).decide_reconsideration("confirm", "Se verificó.", at(date(2026, 3, 20)))
    assert isinstance(event, RecourseDecided)
    assert (event.outcome, event.due_at) == ("confirmed", None)
    assert row.state == State.RESOLVED and row.resolved_at == at(date(2026, 3, 2))
    # The apelación's term runs from the reconsideración's decision, 20 March: 27 March.
    assert case(row).recourse_ends() == datetime(2026, 3, 27, 23, 59, 59, tzinfo=TZ)
    assert case(row).recourses_open() == ("appeal",)
    with pytest.raises(InvalidActionInput) as again:
        case(row).file_reconsideration(at(date(2026, 3, 23)))
    assert (again.value.field, again.value.rule) == ("recourse", "already_decided")
    case(row).file_appeal(at(date(2026, 3, 27), 12))
    assert row.state == State.APPEAL


def test_a_confirmed_apelacion_ends_the_recursos_and_a_closed_case_stays_closed() -> None:
    row = resolved_on(date(2026, 3, 2), State.CLOSED)
    case(row).file_appeal(at(date(2026, 3, 3)))
    case(row).decide_appeal("confirm", "La decisión está bien fundada.", at(date(2026, 3, 10)))
    assert row.state == State.CLOSED
    assert case(row).recourses_open() == ()
    with pytest.raises(InvalidActionInput) as refused:
        case(row).file_appeal(at(date(2026, 3, 11)))
    assert "no admite otro recurso" in refused.value.message


def test_a_revoked_decision_is_handled_again_with_a_new_legal_term() -> None:
    row = resolved_on(date(2026, 3, 2), State.CLOSED)
    case(row).file_reconsideration(at(date(2026, 3, 3)))
    decided = at(date(2026, 3, 10))
    (event,) = case(row).decide_reconsideration("revoke", "Falta reparar la acera.", decided)
    assert row.state == State.CLASSIFIED and row.flagged
    assert row.due_at == shipped().terms.legal_due(decided) == event.due_at
    assert (row.resolved_at, row.closed_at, row.department, row.recourse) == (None,) * 4
    assert (event.outcome, event.department, event.recourse) == (
        "revoked",
        "vias",
        "reconsideration",
    )
    assert row.reopen_count == 0  # not the citizen's "no está resuelto"


def test_a_recurso_is_decided_only_by_its_own_action() -> None:
    row = resolved_on(date(2026, 3, 2))
    case(row).file_reconsideration(at(date(2026, 3, 3)))
    with pytest.raises(IllegalTransition):
        case(row).decide_appeal("confirm", "No corresponde.", at(date(2026, 3, 4)))
    with pytest.raises(IllegalTransition):
        case(row).file_appeal(at(date(2026, 3, 4)))  # one recurso pending at a time


def test_a_closure_added_by_decree_moves_a_pending_recursos_term_and_not_the_legal_one() -> None:
    plain = Terms(TermPolicy(30), TermPolicy(30), BusinessCalendar(CalendarKind.BUSINESS))
    closed = Terms(
        TermPolicy(30),
        TermPolicy(30),
        BusinessCalendar(CalendarKind.BUSINESS, [date(2026, 2, 16), date(2026, 2, 18)]),
    )
    filed = at(date(2026, 2, 10))  # Tuesday; 17 February (Carnival) is a holiday either way
    due = plain.appeal_decision_due(filed)
    assert due == datetime(2026, 3, 25, 23, 59, 59, tzinfo=TZ)
    pending = OpenTerms(
        state="appeal",
        received_at=at(date(2025, 12, 1)),
        due_at=at(date(2026, 1, 20)),  # the handling's legal term, long stopped
        recourse_filed_at=filed,
        recourse_due_at=due,
    )
    (change,) = moved_terms(pending, date(2026, 2, 16), closed)
    # The two days closed by decree push it two working days: Friday 27 March 2026.
    assert (change.clock, change.previous) == (Clock.RECOURSE, due)
    assert change.due_at == datetime(2026, 3, 27, 23, 59, 59, tzinfo=TZ)
    decided = OpenTerms(state="resolved", received_at=filed, due_at=due)
    assert moved_terms(decided, date(2026, 2, 16), closed) == []


def test_the_api_list_filter_names_every_state() -> None:
    literal = get_args(ListFilters.model_fields["state"].annotation)[0]
    assert set(get_args(literal)) == {s.value for s in State}
