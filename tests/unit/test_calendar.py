"""Tests for shared.calendar against dates worked out by hand.

Panama's national holidays as listed by ``holidays.country_holidays("PA")`` (holidays 0.109),
the list every expectation below was reasoned from:

    2025: Jan 1 Wed, Jan 9 Thu, Mar 4 Tue (Carnival Tuesday), Apr 18 Fri (Good Friday),
          May 1 Thu, Nov 3 Mon, Nov 5 Wed, Nov 10 Mon, Nov 28 Fri, Dec 8 Mon,
          Dec 20 Sat (National Mourning Day; a Saturday holiday is not moved), Dec 25 Thu
    2026: Jan 1 Thu, Jan 9 Fri, Feb 17 Tue (Carnival), Apr 3 Fri (Good Friday), May 1 Fri,
          Nov 3 Tue, Nov 5 Thu, Nov 10 Tue, Nov 28 Sat, Dec 8 Tue,
          Dec 20 Sun -> observed Mon Dec 21, Dec 25 Fri
    2027: Jan 1 Fri, Jan 9 Sat, Feb 9 Tue (Carnival), Mar 26 Fri (Good Friday), May 1 Sat,
          Nov 3 Wed, Nov 5 Fri, Nov 10 Wed, Nov 28 Sun -> observed Mon Nov 29, Dec 8 Wed,
          Dec 20 Mon, Dec 25 Sat
    2028: Jan 1 Sat, Jan 9 Sun -> observed Mon Jan 10, ...

Note: Nov 4 (Día de los Símbolos Patrios) and Carnival Monday are NOT in the package's public
list (only in its "bank" category), so they count as business days here.

Shortcut used to check the hand counts: with no holidays, 30 business days after a weekday is the
same weekday six weeks (42 calendar days) later; every weekday holiday inside the term pushes the
due day one business day further.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, date, datetime, time, timedelta, timezone

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.calendar import (
    TZ,
    BusinessCalendar,
    CalendarKind,
    TermPolicy,
    alert_instant,
    days_left,
    due_at,
    is_overdue,
)

BUSINESS = BusinessCalendar()
CALENDAR = BusinessCalendar(CalendarKind.CALENDAR)
PETITION = TermPolicy()  # 30 business days


def local(y: int, m: int, d: int, hh: int = 10, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=TZ)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=TZ)


# --------------------------------------------------------------------------------------------
# The holiday list itself (guards the hand-worked cases against a package change)
# --------------------------------------------------------------------------------------------


def test_package_holiday_list_is_the_one_the_cases_were_worked_from() -> None:
    got = sorted(holidays.country_holidays("PA", years=2026))
    assert got == [
        date(2026, 1, 1),
        date(2026, 1, 9),
        date(2026, 2, 17),
        date(2026, 4, 3),
        date(2026, 5, 1),
        date(2026, 11, 3),
        date(2026, 11, 5),
        date(2026, 11, 10),
        date(2026, 11, 28),
        date(2026, 12, 8),
        date(2026, 12, 20),
        date(2026, 12, 21),
        date(2026, 12, 25),
    ]


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 6, 10), True),  # ordinary Wednesday
        (date(2026, 6, 13), False),  # Saturday
        (date(2026, 6, 14), False),  # Sunday
        (date(2026, 5, 1), False),  # Labour Day, a Friday
        (date(2026, 12, 21), False),  # Monday observed for Sunday Dec 20 (National Mourning)
        (date(2025, 12, 22), True),  # Dec 20 2025 fell on a Saturday: no observed Monday
        (date(2027, 11, 29), False),  # Monday observed for Sunday Nov 28 2027
        (date(2027, 11, 4), True),  # Nov 4 is not in the package's public holiday list
        (date(2026, 2, 16), True),  # Carnival Monday is not either; Carnival Tuesday is
        (date(2026, 2, 17), False),
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert BUSINESS.is_working_day(day) is working
    assert CALENDAR.is_working_day(day) is True  # calendar days: every day counts


# --------------------------------------------------------------------------------------------
# due_at: hand-worked petitions (30 business days after the filing day, 23:59:59 Panama)
# --------------------------------------------------------------------------------------------

HAND_WORKED_DUE = [
    pytest.param(
        local(2026, 6, 10),
        date(2026, 7, 22),
        # Ordinary mid-month filing, Wed Jun 10 2026; no holiday between May 1 and Nov 3.
        # Jun 11-12 = #1-2; Jun 15-19 #3-7; 22-26 #8-12; Jun 29-Jul 3 #13-17; Jul 6-10 #18-22;
        # 13-17 #23-27; Mon 20 #28, Tue 21 #29, Wed 22 #30 (= Wed + 6 weeks).
        id="ordinary-wednesday",
    ),
    pytest.param(
        local(2026, 6, 12),
        date(2026, 7, 24),
        # Friday Jun 12 2026: Mon Jun 15 is #1; six full weeks Jun 15 .. Jul 24 = #30, Fri Jul 24.
        id="filed-friday",
    ),
    pytest.param(
        local(2026, 6, 13),
        date(2026, 7, 24),
        # Saturday Jun 13: the first business day after it is still Mon Jun 15 = #1 -> Fri Jul 24.
        id="filed-saturday",
    ),
    pytest.param(
        local(2026, 6, 14),
        date(2026, 7, 24),
        # Sunday Jun 14: likewise Mon Jun 15 = #1 -> Fri Jul 24.
        id="filed-sunday",
    ),
    pytest.param(
        local(2026, 5, 1),
        date(2026, 6, 12),
        # Filed on a holiday (Labour Day, Fri May 1 2026): Mon May 4 = #1; May 4-8 #1-5,
        # 11-15 #6-10, 18-22 #11-15, 25-29 #16-20, Jun 1-5 #21-25, 8-12 #26-30 -> Fri Jun 12.
        id="filed-on-labour-day",
    ),
    pytest.param(
        local(2026, 2, 17),
        date(2026, 3, 31),
        # Filed on Carnival Tuesday (Feb 17 2026): Wed 18 #1, Thu 19 #2, Fri 20 #3;
        # Feb 23-27 #4-8, Mar 2-6 #9-13, 9-13 #14-18, 16-20 #19-23, 23-27 #24-28,
        # Mon 30 #29, Tue 31 #30. (Good Friday Apr 3 comes after.) -> Tue Mar 31.
        id="filed-on-carnival-tuesday",
    ),
    pytest.param(
        local(2026, 2, 16),
        date(2026, 3, 31),
        # Day before Carnival Tuesday: Tue Feb 17 is skipped, so Wed 18 is #1 again -> Mar 31.
        # (Plain Tuesday + 6 weeks would be Mar 30; one weekday holiday inside pushes to Mar 31.)
        id="holiday-right-after-filing",
    ),
    pytest.param(
        local(2025, 10, 24),
        date(2025, 12, 12),
        # Monday holidays inside the term plus the November patriotic days (Fri Oct 24 2025):
        # Oct 27-31 #1-5; Mon Nov 3 holiday, Tue 4 #6 (Nov 4 counts), Wed 5 holiday, Thu 6 #7,
        # Fri 7 #8; Mon Nov 10 holiday, Nov 11-14 #9-12; 17-21 #13-17; 24-27 #18-21,
        # Fri 28 holiday; Dec 1-5 #22-26; Mon Dec 8 holiday; Dec 9-12 #27-30 -> Fri Dec 12.
        # Check: Fri + 6 weeks = Dec 5, five weekday holidays -> Dec 9, 10, 11, 12 (skip Dec 8).
        id="monday-holidays-and-november",
    ),
    pytest.param(
        local(2025, 11, 21),
        date(2026, 1, 8),
        # Crossing the year end, ending in January (Fri Nov 21 2025): Nov 24-27 #1-4, Fri 28
        # holiday; Dec 1-5 #5-9; Mon Dec 8 holiday, 9-12 #10-13; 15-19 #14-18; 22-24 #19-21,
        # Thu 25 holiday, Fri 26 #22; 29-31 #23-25, Thu Jan 1 holiday, Fri Jan 2 #26;
        # Jan 5-8 #27-30 -> Thu Jan 8 (the Jan 9 holiday is just after).
        id="year-end-nov-21-2025",
    ),
    pytest.param(
        local(2025, 12, 20),
        date(2026, 2, 4),
        # Dec 20 2025: a Saturday and itself a holiday (National Mourning, not moved).
        # Mon Dec 22 #1, 23 #2, 24 #3, Thu 25 holiday, Fri 26 #4; 29-31 #5-7, Thu Jan 1
        # holiday, Fri Jan 2 #8; Jan 5-8 #9-12, Fri Jan 9 holiday; 12-16 #13-17; 19-23 #18-22;
        # 26-30 #23-27; Feb 2-4 #28-30 -> Wed Feb 4 (Carnival Feb 17 is after).
        id="year-end-dec-20-2025",
    ),
    pytest.param(
        local(2026, 12, 20),
        date(2027, 2, 3),
        # Dec 20 2026: a Sunday holiday; its observed day Mon Dec 21 is skipped too.
        # Tue Dec 22 #1, 23 #2, 24 #3, Fri 25 holiday; 28-31 #4-7, Fri Jan 1 holiday;
        # Jan 4-8 #8-12 (Jan 9 is a Saturday, not moved); 11-15 #13-17; 18-22 #18-22;
        # 25-29 #23-27; Feb 1-3 #28-30 -> Wed Feb 3 (Carnival Feb 9 is after).
        id="year-end-dec-20-2026-observed-monday",
    ),
    pytest.param(
        local(2027, 12, 20),
        date(2028, 2, 1),
        # Dec 20 2027: a Monday holiday. Tue 21 #1 .. Fri 24 #4 (Dec 25 is a Saturday, not
        # moved); 27-31 #5-9; Jan 1 2028 a Saturday; Jan 3-7 #10-14; Mon Jan 10 holiday
        # (observed for Sunday Jan 9); 11-14 #15-18; 17-21 #19-23; 24-28 #24-28;
        # Mon 31 #29, Tue Feb 1 #30 -> Tue Feb 1 2028.
        id="year-end-dec-20-2027",
    ),
    pytest.param(
        datetime(2026, 6, 11, 4, 30, tzinfo=UTC),
        date(2026, 7, 22),
        # Timezone boundary: 04:30 UTC on Jun 11 is 23:30 on Wed Jun 10 in Panama (UTC-5), so the
        # filing day is Jun 10 -> Wed Jul 22, not Thu Jul 23 as a UTC-date reading would give.
        id="2330-local-is-next-day-in-utc",
    ),
    pytest.param(
        datetime(2026, 6, 10, 23, 30, tzinfo=TZ),
        date(2026, 7, 22),
        # The same instant given in Panama time.
        id="2330-local",
    ),
    pytest.param(
        datetime(2026, 6, 11, 0, 30, tzinfo=timezone(timedelta(hours=1))),
        date(2026, 7, 22),
        # 00:30 on Jun 11 at UTC+1 is 18:30 on Jun 10 in Panama -> filing day Jun 10.
        id="other-offset",
    ),
]


@pytest.mark.parametrize(("filed_at", "last_day"), HAND_WORKED_DUE)
def test_due_at_hand_worked(filed_at: datetime, last_day: date) -> None:
    due = due_at(filed_at, PETITION)
    assert due == end_of(last_day)
    assert due.tzinfo is TZ
    assert due.utcoffset() == timedelta(hours=-5)
    # The shared-calendar form gives the same answer.
    assert due_at(filed_at, PETITION, BUSINESS) == due


def test_due_at_short_term_skips_observed_monday() -> None:
    # 3 business days after Fri Dec 18 2026: Mon Dec 21 is the observed National Mourning Day,
    # so Tue 22 #1, Wed 23 #2, Thu 24 #3 -> Thu Dec 24 23:59:59.
    assert due_at(local(2026, 12, 18), TermPolicy(days=3)) == end_of(date(2026, 12, 24))


@pytest.mark.parametrize(
    ("filed_at", "last_day"),
    [
        # Calendar days: Jun 10 + 30 days = Jun 30 (+20) then Jul 10 (+10) -> Fri Jul 10.
        (local(2026, 6, 10), date(2026, 7, 10)),
        # Nov 25 2025 + 30 = Nov 30 (+5) then Dec 25 (+25): Christmas, yet it stays.
        (local(2025, 11, 25), date(2025, 12, 25)),
        # Dec 20 2025 + 30 = Dec 31 (+11) then Jan 19 2026 (+19).
        (local(2025, 12, 20), date(2026, 1, 19)),
        # 23:30 local Jun 10 (04:30 UTC Jun 11) still counts from Jun 10.
        (datetime(2026, 6, 11, 4, 30, tzinfo=UTC), date(2026, 7, 10)),
    ],
)
def test_due_at_calendar_days(filed_at: datetime, last_day: date) -> None:
    policy = TermPolicy(days=30, calendar=CalendarKind.CALENDAR)
    assert due_at(filed_at, policy) == end_of(last_day)
    assert due_at(filed_at, policy, CALENDAR) == end_of(last_day)


def test_due_at_refuses_naive_and_mismatched_calendar() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(datetime(2026, 6, 10, 10, 0), PETITION)
    with pytest.raises(ValueError, match="calendar"):
        due_at(local(2026, 6, 10), PETITION, CALENDAR)


def test_term_policy_validation() -> None:
    assert TermPolicy() == TermPolicy(30, CalendarKind.BUSINESS)
    # Plain strings from a settings file are normalised.
    assert TermPolicy(10, "calendar").calendar is CalendarKind.CALENDAR  # type: ignore[arg-type]
    for bad_days in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="days"):
            TermPolicy(days=bad_days)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calendar"):
        TermPolicy(calendar="weekly")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# add_days / subtract_days / days_between by hand
# --------------------------------------------------------------------------------------------


def test_add_days_edges() -> None:
    assert BUSINESS.add_days(date(2026, 6, 13), 0) == date(2026, 6, 13)  # n=0: start as is
    assert BUSINESS.add_days(date(2026, 6, 12), 1) == date(2026, 6, 15)  # Fri -> Mon
    assert BUSINESS.add_days(date(2026, 12, 24), 1) == date(2026, 12, 28)  # skip Fri 25 + w/e
    assert BUSINESS.add_days(date(2026, 12, 31), 1) == date(2027, 1, 4)  # skip Jan 1 + w/e
    assert CALENDAR.add_days(date(2026, 12, 31), 1) == date(2027, 1, 1)
    with pytest.raises(ValueError):
        BUSINESS.add_days(date(2026, 6, 10), -1)


def test_long_terms_grow_the_index() -> None:
    # 2026 has 365 - 104 weekend days - 11 weekday holidays = 250 business days
    # (Nov 28 and Dec 20 fall on a weekend; Dec 21 is the observed Monday).
    assert BUSINESS.days_between(date(2025, 12, 31), date(2026, 12, 31)) == 250
    fresh = BusinessCalendar()
    assert fresh.add_days(date(2025, 12, 31), 250) == date(2026, 12, 31)
    assert fresh.subtract_days(date(2026, 12, 31), 250) == date(2025, 12, 31)
    far = fresh.add_days(date(2026, 1, 2), 5000)
    assert fresh.days_between(date(2026, 1, 2), far) == 5000
    assert fresh.subtract_days(far, 5000) == date(2026, 1, 2)
    # Growing backwards too, on another fresh calendar.
    back = BusinessCalendar().subtract_days(date(2026, 1, 2), 5000)
    assert BUSINESS.days_between(back, date(2026, 1, 2)) == 5000
    assert BusinessCalendar().add_days(back, 5000) == date(2026, 1, 2)


@pytest.mark.parametrize(
    ("end", "n", "expected"),
    [
        # The inverse of the ordinary case: 30 business days before Wed Jul 22 2026 is Jun 10.
        (date(2026, 7, 22), 30, date(2026, 6, 10)),
        # Mon Dec 28 2026, 1 back: Sun 27, Sat 26, Fri 25 (Christmas) skipped -> Thu Dec 24.
        (date(2026, 12, 28), 1, date(2026, 12, 24)),
        # Tue Dec 22 2026, 1 back: Mon 21 observed holiday, weekend -> Fri Dec 18.
        (date(2026, 12, 22), 1, date(2026, 12, 18)),
        # From a Saturday, 1 back is the Friday before it.
        (date(2026, 6, 13), 1, date(2026, 6, 12)),
        (date(2026, 6, 13), 0, date(2026, 6, 13)),
    ],
)
def test_subtract_days(end: date, n: int, expected: date) -> None:
    assert BUSINESS.subtract_days(end, n) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 6, 10), date(2026, 6, 10), 0),
        (date(2026, 6, 12), date(2026, 6, 15), 1),  # Fri -> Mon: only Mon
        (date(2026, 6, 13), date(2026, 6, 14), 0),  # Sat -> Sun: nothing
        (date(2026, 6, 10), date(2026, 7, 22), 30),  # the ordinary petition
        # Fri Dec 19 2025 -> Fri Jan 2 2026: Dec 22, 23, 24, 26, 29, 30, 31, Jan 2 = 8
        # (Dec 25 and Jan 1 are holidays).
        (date(2025, 12, 19), date(2026, 1, 2), 8),
        # Nov 2 2025 (Sun) -> Nov 30 (Sun): 20 weekdays minus Nov 3, 5, 10, 28 = 16.
        (date(2025, 11, 2), date(2025, 11, 30), 16),
    ],
)
def test_days_between_hand_worked_and_symmetric(start: date, end: date, expected: int) -> None:
    assert BUSINESS.days_between(start, end) == expected
    assert BUSINESS.days_between(end, start) == -expected


def test_days_between_calendar_kind() -> None:
    assert CALENDAR.days_between(date(2025, 12, 20), date(2026, 1, 19)) == 30
    assert CALENDAR.days_between(date(2026, 1, 19), date(2025, 12, 20)) == -30


# --------------------------------------------------------------------------------------------
# days_left / is_overdue
# --------------------------------------------------------------------------------------------

DUE_WED = end_of(date(2026, 7, 22))  # petition filed Wed Jun 10 2026
DUE_FRI = end_of(date(2026, 7, 24))  # petition filed Fri Jun 12 2026


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (DUE_WED, local(2026, 6, 10), 30),  # the filing day itself
        # Fri Jul 17: Mon 20, Tue 21, Wed 22 are left = 3; Saturday Jul 18 likewise 3.
        (DUE_WED, local(2026, 7, 17), 3),
        (DUE_WED, local(2026, 7, 18), 3),
        (DUE_WED, local(2026, 7, 20), 2),  # Mon Jul 20: Tue 21, Wed 22
        (DUE_WED, local(2026, 7, 21), 1),
        (DUE_WED, local(2026, 7, 22, 0, 0), 0),  # on the due day
        (DUE_WED, local(2026, 7, 22, 23, 59, 59), 0),  # the due instant itself: still on time
        # 03:00 UTC Jul 23 is 22:00 Jul 22 in Panama: still the due day.
        (DUE_WED, datetime(2026, 7, 23, 3, 0, tzinfo=UTC), 0),
        (DUE_WED, local(2026, 7, 23, 0, 0), -1),  # Thu Jul 23: one business day late
        (DUE_WED, local(2026, 7, 24), -2),  # Fri Jul 24
        (DUE_WED, local(2026, 7, 25), -2),  # Sat Jul 25: no business day since Friday
        (DUE_WED, local(2026, 7, 27), -3),  # Mon Jul 27
        # Due on a Friday: the weekend after it is already overdue (-1), as is Monday (-1),
        # Tuesday is -2.
        (DUE_FRI, local(2026, 7, 25), -1),
        (DUE_FRI, local(2026, 7, 26), -1),
        (DUE_FRI, local(2026, 7, 27), -1),
        (DUE_FRI, local(2026, 7, 28), -2),
    ],
)
def test_days_left(due: datetime, now: datetime, expected: int) -> None:
    assert days_left(due, now, BUSINESS) == expected
    assert (days_left(due, now, BUSINESS) < 0) is is_overdue(due, now)


def test_days_left_calendar_kind() -> None:
    due = end_of(date(2026, 7, 10))
    assert days_left(due, local(2026, 6, 10), CALENDAR) == 30
    assert days_left(due, local(2026, 7, 10), CALENDAR) == 0
    assert days_left(due, local(2026, 7, 11), CALENDAR) == -1


def test_is_overdue() -> None:
    assert not is_overdue(DUE_WED, local(2026, 7, 22, 23, 59, 59))
    assert is_overdue(DUE_WED, local(2026, 7, 23, 0, 0))
    assert is_overdue(DUE_WED, datetime(2026, 7, 23, 5, 0, tzinfo=UTC))  # = 00:00 Panama
    assert not is_overdue(DUE_WED, datetime(2026, 7, 23, 4, 59, 59, tzinfo=UTC))
    with pytest.raises(ValueError):
        is_overdue(DUE_WED, datetime(2026, 7, 23))
    with pytest.raises(ValueError):
        days_left(DUE_WED, datetime(2026, 7, 23), BUSINESS)
    with pytest.raises(ValueError):
        days_left(datetime(2026, 7, 22, 23, 59, 59), local(2026, 7, 1), BUSINESS)


# --------------------------------------------------------------------------------------------
# alert_instant
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("due", "days_before", "alert_day"),
    [
        # Due Wed Jul 22 2026, no holidays near: 1 back Tue 21; 3 back Fri 17 (21, 20, 17);
        # 7 back Mon Jul 13 (21, 20, 17, 16, 15, 14, 13); 0 back is the due day itself.
        (DUE_WED, 1, date(2026, 7, 21)),
        (DUE_WED, 3, date(2026, 7, 17)),
        (DUE_WED, 7, date(2026, 7, 13)),
        (DUE_WED, 0, date(2026, 7, 22)),
        # Due Fri Dec 12 2025 (filed Oct 24): 1 back Thu 11; 3 back Tue 9 (11, 10, 9);
        # 7 back: 11, 10, 9, [Mon Dec 8 holiday], 5, 4, 3, 2 -> Tue Dec 2.
        (end_of(date(2025, 12, 12)), 1, date(2025, 12, 11)),
        (end_of(date(2025, 12, 12)), 3, date(2025, 12, 9)),
        (end_of(date(2025, 12, 12)), 7, date(2025, 12, 2)),
        # Due Thu Jan 8 2026 (filed Nov 21 2025): 1 back Wed Jan 7; 3 back Mon Jan 5 (7, 6, 5);
        # 7 back: 7, 6, 5, 2, [Jan 1 holiday], Dec 31, 30, 29 -> Mon Dec 29 2025.
        (end_of(date(2026, 1, 8)), 1, date(2026, 1, 7)),
        (end_of(date(2026, 1, 8)), 3, date(2026, 1, 5)),
        (end_of(date(2026, 1, 8)), 7, date(2025, 12, 29)),
    ],
)
def test_alert_instant(due: datetime, days_before: int, alert_day: date) -> None:
    at = alert_instant(due, days_before, BUSINESS)
    assert at == datetime.combine(alert_day, time(0, 0), tzinfo=TZ)
    assert at.utcoffset() == timedelta(hours=-5)  # Panama has no DST
    assert at.astimezone(UTC).hour == 5


def test_alert_instant_due_given_in_utc_and_calendar_kind() -> None:
    # The same Jul 22 due instant expressed in UTC (04:59:59 Jul 23) -> the due day is Jul 22.
    due_utc = DUE_WED.astimezone(UTC)
    assert alert_instant(due_utc, 3, BUSINESS) == datetime(2026, 7, 17, tzinfo=TZ)
    # Calendar days: 3 days before Jul 22 is Jul 19 (a Sunday, which counts).
    assert alert_instant(DUE_WED, 3, CALENDAR) == datetime(2026, 7, 19, tzinfo=TZ)
    with pytest.raises(ValueError):
        alert_instant(datetime(2026, 7, 22, 23, 59, 59), 3, BUSINESS)


# --------------------------------------------------------------------------------------------
# Properties (Hypothesis), with a naive day-by-day oracle
# --------------------------------------------------------------------------------------------

DATES = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
TERMS = st.integers(min_value=0, max_value=400)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2090, 12, 31),
    timezones=st.sampled_from(
        [TZ, UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=11))]
    ),
)


def naive_add(start: date, n: int) -> date:
    day = start
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays.country_holidays("PA", years=day.year):
            n -= 1
    return day


@settings(max_examples=150, deadline=None)
@given(DATES, st.integers(min_value=0, max_value=60))
def test_add_days_matches_day_by_day_count(start: date, n: int) -> None:
    assert BUSINESS.add_days(start, n) == naive_add(start, n)


@given(DATES, TERMS)
def test_add_then_days_between_round_trips(start: date, n: int) -> None:
    end = BUSINESS.add_days(start, n)
    assert BUSINESS.days_between(start, end) == n
    assert BUSINESS.days_between(end, start) == -n
    back = BUSINESS.subtract_days(end, n)
    # Back to the start if it is a working day, else to the last working day before it.
    assert back <= start
    assert BUSINESS.days_between(back, start) == 0
    if BUSINESS.is_working_day(start):
        assert back == start
    assert CALENDAR.add_days(start, n) == start + timedelta(days=n)
    assert CALENDAR.days_between(start, CALENDAR.add_days(start, n)) == n


@given(DATES, st.integers(min_value=1, max_value=400))
def test_result_is_a_working_day(start: date, n: int) -> None:
    assert BUSINESS.is_working_day(BUSINESS.add_days(start, n))
    assert BUSINESS.is_working_day(BUSINESS.subtract_days(start, n))


@given(INSTANTS, st.integers(min_value=1, max_value=60))
def test_due_date_is_a_working_day_at_end_of_day(filed_at: datetime, days: int) -> None:
    due = due_at(filed_at, TermPolicy(days=days))
    assert due.tzinfo is TZ
    assert due.timetz() == time(23, 59, 59, tzinfo=TZ)
    assert BUSINESS.is_working_day(due.date())
    assert due > filed_at
    assert days_left(due, filed_at, BUSINESS) == days


@given(INSTANTS, INSTANTS)
def test_due_at_is_monotonic_in_filing_instant(a: datetime, b: datetime) -> None:
    a, b = sorted((a, b))
    assert due_at(a, PETITION) <= due_at(b, PETITION)


@given(DATES, DATES, TERMS)
def test_add_days_is_monotonic(a: date, b: date, n: int) -> None:
    a, b = sorted((a, b))
    assert BUSINESS.add_days(a, n) <= BUSINESS.add_days(b, n)


@given(DATES, DATES, DATES)
def test_days_between_is_antisymmetric_and_additive(a: date, b: date, c: date) -> None:
    assert BUSINESS.days_between(a, b) == -BUSINESS.days_between(b, a)
    assert BUSINESS.days_between(a, b) + BUSINESS.days_between(b, c) == BUSINESS.days_between(a, c)
    if a <= b:
        assert BUSINESS.days_between(a, b) >= 0
    else:
        assert BUSINESS.days_between(a, b) <= 0


@given(INSTANTS, st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=10))
def test_alert_comes_before_due_on_a_working_day(
    filed_at: datetime, days: int, before: int
) -> None:
    due = due_at(filed_at, TermPolicy(days=days))
    at = alert_instant(due, before, BUSINESS)
    assert at <= due
    assert at.timetz() == time(0, 0, tzinfo=TZ)
    assert BUSINESS.is_working_day(at.date())
    assert days_left(due, at, BUSINESS) == before


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


def test_add_days_is_fast() -> None:
    # A million 30-day additions should take on the order of a second; 200k must be well
    # under the generous bound below (a day-by-day loop rebuilding holiday sets would not be).
    cal = BusinessCalendar()
    starts = [date(2025, 1, 1) + timedelta(days=i % 1500) for i in range(200_000)]
    began = _time.perf_counter()
    for start in starts:
        cal.add_days(start, 30)
    assert _time.perf_counter() - began < 2.0
