"""Closures by decree: days the calendar does not count, and the terms a new one moves."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from shared.calendar import TZ, BusinessCalendar, CalendarKind, TermPolicy
from shared.calendar_cli import calendar_lines
from shared.config import InstitutionConfig, load_config
from shared.domain.clocks import Clock, Terms
from shared.domain.closures import Closure, OpenTerms, closed_days, moved_terms
from shared.lifecycle import State
from shared.settings import DEFAULT_CONFIG

# Decreto Ejecutivo N.° 37 de 5 de diciembre de 2025 (terms suspended 24 and 31 December 2025)
# and the Carnival 2026 closures (Monday 16 and Wednesday 18 February 2026).
# Shipped closures that suspend terms (DE 37 de 2025); the Carnival 2026 closures (DE 3 de 2026)
# are shipped as leaving terms running.
SHIPPED = {date(2025, 12, 24), date(2025, 12, 31)}
CARNIVAL_2026 = {date(2026, 2, 16), date(2026, 2, 18)}


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ)


def terms(days: int, closures: set[date], department_days: int | None = None) -> Terms:
    return Terms(
        legal=TermPolicy(days),
        department=TermPolicy(department_days or days),
        calendar=BusinessCalendar(CalendarKind.BUSINESS, closures),
        department_margin_days=2,
    )


def test_the_shipped_configuration_closes_the_decreed_days() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert Terms.from_config(config).calendar.closures == SHIPPED


def test_over_the_year_end_the_decreed_afternoons_and_the_holidays_do_not_count() -> None:
    # From Monday 22 December 2025, ten working days: 23 Dec (1), 24 closed by decree, 25
    # Christmas, 26 (2), 29 (3), 30 (4), 31 closed by decree, 1 Jan holiday, 2 Jan (5), 5 (6),
    # 6 (7), 7 (8), 8 (9), 9 Jan holiday (Mártires), 12 Jan (10).
    assert terms(10, SHIPPED).legal_due(at(date(2025, 12, 22))).date() == date(2026, 1, 12)
    # Without the decree the same term ends on Wednesday 7 January.
    assert terms(10, set()).legal_due(at(date(2025, 12, 22))).date() == date(2026, 1, 7)


def test_carnival_tuesday_never_counts_and_the_2026_closures_count_unless_they_suspend() -> None:
    # From Friday 13 February 2026, five working days, as shipped: 16 (1), 17 Carnival Tuesday
    # (law), 18 (2), 19 (3), 20 (4), 23 (5).
    assert terms(5, SHIPPED).legal_due(at(date(2026, 2, 13))).date() == date(2026, 2, 23)
    # Were the closures to suspend terms: 16 closed, 17 holiday, 18 closed, 19 (1) … 25 (5).
    suspended = SHIPPED | CARNIVAL_2026
    assert terms(5, suspended).legal_due(at(date(2026, 2, 13))).date() == date(2026, 2, 25)
    shipped = {c.date: c.suspends_terms for c in load_config(DEFAULT_CONFIG).calendar.closures}
    assert {shipped[day] for day in CARNIVAL_2026} == {False}


def test_a_closure_that_leaves_terms_running_is_still_a_working_day() -> None:
    closures = [
        Closure(date(2026, 11, 4), "Decreto de prueba", suspends_terms=False),
        Closure(date(2026, 2, 16), "Decreto de prueba"),
    ]
    assert closed_days(closures) == {date(2026, 2, 16)}


def test_setting_the_closures_changes_the_count_at_once_for_every_holder() -> None:
    shared = terms(10, set())
    before = shared.legal_due(at(date(2026, 10, 27)))
    assert shared.calendar.set_closures({date(2026, 11, 4)}) is True
    assert shared.calendar.set_closures({date(2026, 11, 4)}) is False
    assert shared.legal_due(at(date(2026, 10, 27))) > before
    assert not shared.calendar.is_working_day(date(2026, 11, 4))


def remitted_case(old: Terms) -> OpenTerms:
    filed, remitted = at(date(2026, 10, 27)), at(date(2026, 10, 29))
    legal = old.legal_due(filed)
    return OpenTerms(
        state=State.REMITTED.value,
        received_at=filed,
        due_at=legal,
        department="vias",
        remitted_at=remitted,
        department_due_at=old.department_due(remitted, legal),
    )


def test_a_new_closure_moves_the_legal_term_and_the_department_term_it_caps() -> None:
    # Filed Tuesday 27 October 2026, ten working days (3, 5 and 10 November are holidays):
    # 28, 29, 30 Oct, 2, 4, 6, 9, 11, 12, 13 Nov -> 13 November. Remitted Thursday 29 October:
    # the department's own ten days end 17 November, capped at 13 November less 2 -> 11.
    old = terms(10, set())
    case = remitted_case(old)
    assert case.due_at == datetime(2026, 11, 13, 23, 59, 59, tzinfo=TZ)
    assert case.department_due_at == datetime(2026, 11, 11, 23, 59, 59, tzinfo=TZ)

    # Wednesday 4 November closed with terms suspended: the legal term ends Monday 16
    # November; the cap becomes 16 less 2 working days (13, 12) -> Thursday 12 November.
    changes = moved_terms(case, date(2026, 11, 4), terms(10, {date(2026, 11, 4)}))
    assert [(c.clock, c.department, c.previous.date(), c.due_at.date()) for c in changes] == [
        (Clock.LEGAL, None, date(2026, 11, 13), date(2026, 11, 16)),
        (Clock.DEPARTMENT, "vias", date(2026, 11, 11), date(2026, 11, 12)),
    ]


def test_moving_again_changes_nothing() -> None:
    new = terms(10, {date(2026, 11, 4)})
    case = remitted_case(new)
    assert moved_terms(case, date(2026, 11, 4), new) == []


def test_a_term_that_does_not_span_the_day_or_a_closed_case_is_not_moved() -> None:
    old, new = terms(10, set()), terms(10, {date(2026, 12, 1)})
    case = remitted_case(old)  # due 13 November, before the closure
    assert moved_terms(case, date(2026, 12, 1), new) == []
    resolved = OpenTerms(
        state=State.RESOLVED.value, received_at=case.received_at, due_at=case.due_at
    )
    assert moved_terms(resolved, date(2026, 11, 4), terms(10, {date(2026, 11, 4)})) == []


def test_the_year_shows_each_non_working_day_with_its_source() -> None:
    config = load_config(DEFAULT_CONFIG)
    closures = [Closure(c.date, c.reason, c.suspends_terms) for c in config.calendar.closures] + [
        Closure(date(2026, 11, 4), "Decreto de prueba", suspends_terms=False)
    ]
    lines = calendar_lines(config, closures, 2026)
    by_day = {line[:10]: line for line in lines[1:]}
    assert "ley" in by_day["2026-02-17"] and "Martes de Carnaval" in by_day["2026-02-17"]
    assert "decreto" in by_day["2026-02-16"] and "decreto" in by_day["2026-02-18"]
    assert "no suspende términos" in by_day["2026-11-04"]
    assert "2025-12-24" not in by_day
    assert list(by_day) == sorted(by_day)


def test_two_closures_on_one_day_are_refused_in_the_configuration() -> None:
    closure = {"date": "2026-02-16", "reason": "Decreto de prueba"}
    with pytest.raises(ValidationError, match="repetidas"):
        InstitutionConfig.model_validate({"calendar": {"closures": [closure, closure]}})
