"""The alert schedule of a clock, against dates worked out by hand (America/Panama, UTC-5).

Term used throughout: filed Monday 2026-03-02, 30 business days. Panama's holidays in March and
April 2026: Good Friday 2026-04-03 (the only one in range). Business days after 2026-03-02:
March 3..31 gives 21 (3-6, 9-13, 16-20, 23-27, 30-31), April 1, 2 (23), April 6-10 (28),
April 13, 14 (30) -> due Tuesday 2026-04-14 23:59:59.
  1 business day before the due day:  Monday 2026-04-13
  3 business days before:             Thursday 2026-04-09
  7 business days before:             Thursday 2026-04-02 (04-03 is Good Friday, skipped)
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.deadlines.schedule import MISSED, Alert, AlertPolicy
from shared.calendar import TZ, BusinessCalendar, CalendarKind, TermPolicy, due_at

BUSINESS = BusinessCalendar(CalendarKind.BUSINESS)
CALENDAR = BusinessCalendar(CalendarKind.CALENDAR)
FILED = datetime(2026, 3, 2, 10, 30, tzinfo=TZ)
DUE = datetime(2026, 4, 14, 23, 59, 59, tzinfo=TZ)
AT_7 = datetime(2026, 4, 2, 0, 0, tzinfo=TZ)
AT_3 = datetime(2026, 4, 9, 0, 0, tzinfo=TZ)
AT_1 = datetime(2026, 4, 13, 0, 0, tzinfo=TZ)
TICK = timedelta(microseconds=1)


def policy(*thresholds: int, calendar: BusinessCalendar = BUSINESS) -> AlertPolicy:
    return AlertPolicy(thresholds=thresholds or (7, 3, 1), calendar=calendar)


def test_due_date_of_the_example_term() -> None:
    assert due_at(FILED, TermPolicy(30), BUSINESS) == DUE


def test_alerts_are_at_midnight_of_the_business_day_n_days_before() -> None:
    assert policy().alerts(DUE) == [
        Alert(7, AT_7),
        Alert(3, AT_3),
        Alert(1, AT_1),
        Alert(MISSED, DUE + TICK),
    ]


def test_thresholds_are_sorted_and_deduplicated() -> None:
    assert policy(1, 3, 7, 3).thresholds == (7, 3, 1)


@pytest.mark.parametrize("bad", [(0,), (-1,), (True,)])
def test_thresholds_must_be_positive_integers(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        AlertPolicy(thresholds=bad, calendar=BUSINESS)


def test_first_alert_of_a_fresh_term_is_the_least_urgent() -> None:
    assert policy().first(DUE, FILED) == Alert(7, AT_7)


def test_a_threshold_already_behind_at_the_start_is_skipped() -> None:
    # Started on Friday 2026-04-10: the 7-day (04-02) and 3-day (04-09) instants are behind;
    # the first alert is 1 business day before (04-13).
    started = datetime(2026, 4, 10, 9, 0, tzinfo=TZ)
    assert policy().first(DUE, started) == Alert(1, AT_1)
    step = policy().step(DUE, started, AT_1, None)
    assert step.send == Alert(1, AT_1)


def test_a_clock_started_after_its_due_date_still_misses() -> None:
    started = DUE + timedelta(days=1)
    assert policy().first(DUE, started) == Alert(MISSED, DUE + TICK)


def test_nothing_is_due_before_the_first_threshold() -> None:
    step = policy().step(DUE, FILED, AT_7 - TICK, None)
    assert step.send is None
    assert step.next == Alert(7, AT_7)


@pytest.mark.parametrize(
    ("now", "last", "sent", "following"),
    [
        (AT_7, None, 7, 3),
        (AT_3 - TICK, 7, None, 3),
        (AT_3, 7, 3, 1),
        (AT_1 + timedelta(hours=5), 3, 1, MISSED),
        (DUE, 1, None, MISSED),  # the due instant itself is still on time
        (DUE + TICK, 1, MISSED, None),
        (DUE + timedelta(days=40), MISSED, None, None),  # missed is sent once, ever
    ],
)
def test_each_alert_in_turn(
    now: datetime, last: int | None, sent: int | None, following: int | None
) -> None:
    step = policy().step(DUE, FILED, now, last)
    assert (step.send.threshold if step.send else None) == sent
    assert (step.next.threshold if step.next else None) == following


def test_after_downtime_only_the_most_urgent_reached_alert_is_sent() -> None:
    # Down from before the 7-day alert until the day after the 3-day one: send 3, not 7 and 3.
    step = policy().step(DUE, FILED, AT_3 + timedelta(days=1), None)
    assert step.send == Alert(3, AT_3)
    assert step.next == Alert(1, AT_1)


def test_after_downtime_past_the_due_date_only_missed_is_sent() -> None:
    step = policy().step(DUE, FILED, DUE + timedelta(days=3), 7)
    assert step.send == Alert(MISSED, DUE + TICK)
    assert step.next is None


def test_an_alert_already_sent_is_never_sent_again() -> None:
    for now in (AT_7, AT_3, AT_1, DUE + TICK):
        first = policy().step(DUE, FILED, now, None)
        assert first.send is not None
        again = policy().step(DUE, FILED, now, first.send.threshold)
        assert again.send is None


def test_a_less_urgent_threshold_added_later_is_not_sent_after_a_more_urgent_one() -> None:
    # Config changed from [3] to [7, 3] after the 3-day alert went out: 7 is stale, not sent.
    step = policy(7, 3).step(DUE, FILED, AT_3 + timedelta(hours=1), 3)
    assert step.send is None
    assert step.next == Alert(MISSED, DUE + TICK)


def test_a_monday_holiday_is_skipped() -> None:
    # Due Tuesday 2026-12-22. Monday 12-21 is the observed National Mourning Day (12-20 is a
    # Sunday), so 1 business day before is Friday 12-18; 3 before is Wednesday 12-16.
    due = datetime(2026, 12, 22, 23, 59, 59, tzinfo=TZ)
    alerts = policy(3, 1).alerts(due)
    assert [a.fire_at for a in alerts[:2]] == [
        datetime(2026, 12, 16, tzinfo=TZ),
        datetime(2026, 12, 18, tzinfo=TZ),
    ]


def test_year_end() -> None:
    # Due Tuesday 2027-01-05 (business days). Counting back from it: Jan 4 (Mon) is 1 before;
    # Jan 1 (Fri, New Year) is a holiday; Dec 31 (Thu) is 2; Dec 30 is 3; 29, 28 are 4, 5;
    # Dec 25 (Fri) is Christmas; Dec 24, 23 are 6, 7.
    due = datetime(2027, 1, 5, 23, 59, 59, tzinfo=TZ)
    alerts = policy().alerts(due)
    assert [a.fire_at.date().isoformat() for a in alerts[:3]] == [
        "2026-12-23",
        "2026-12-30",
        "2027-01-04",
    ]


def test_calendar_days_count_every_day() -> None:
    due = datetime(2026, 4, 14, 23, 59, 59, tzinfo=TZ)
    alerts = policy(calendar=CALENDAR).alerts(due)
    assert [a.fire_at for a in alerts[:3]] == [
        datetime(2026, 4, 7, tzinfo=TZ),
        datetime(2026, 4, 11, tzinfo=TZ),
        datetime(2026, 4, 13, tzinfo=TZ),
    ]
