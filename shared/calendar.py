"""The legal clock's arithmetic: business days, due dates and alert instants.

Ley 38 de 2000, art. 67, counts day terms in business days (días hábiles). A petition's legal due
date is the N-th working day *after* the filing day (the filing day itself is not counted), and the
term ends at 23:59:59 America/Panama of that day. Saturdays, Sundays and Panama's national holidays
(as listed by the ``holidays`` package, ``country_holidays("PA")``, observed days included) are not
working days, nor are the days the Executive closes public offices by decree with terms suspended
(``closures``: the institution's configuration and the ``calendar_closures`` table, see
:mod:`shared.closures`). The same rule serves the department clock (N working days after the
remittance day). A policy may switch to calendar days, in which case every day counts.

Everything here is pure: no I/O, no reading of the system clock. ``now`` is always passed in.

Implementation note: a :class:`BusinessCalendar` keeps a sorted array of the ordinals of every
working day over a contiguous range of years (grown on demand), so ``add_days``, ``subtract_days``
and ``days_between`` are a bisection and an index, independent of the length of the term. Holiday
sets are computed once per year per process.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "TZ",
    "BusinessCalendar",
    "CalendarKind",
    "TermPolicy",
    "alert_instant",
    "days_left",
    "due_at",
    "is_overdue",
    "rfc3339",
]

TZ = ZoneInfo("America/Panama")


def rfc3339(value: datetime | None) -> str | None:
    """Every timestamp an API answers: RFC 3339 with the institution's offset (-05:00)."""
    return value.astimezone(TZ).isoformat() if value else None


#: The instant within the last day at which a term ends.
END_OF_DAY = time(23, 59, 59)

_COUNTRY = "PA"
_SATURDAY = 5  # date.weekday(): Monday == 0


class CalendarKind(StrEnum):
    """How day terms are counted."""

    BUSINESS = "business"
    CALENDAR = "calendar"


@dataclass(frozen=True)
class TermPolicy:
    """A day term: ``days`` days counted on the ``calendar`` kind.

    ``calendar`` also accepts the plain strings ``"business"`` / ``"calendar"`` (as read from a
    settings file) and is normalised to :class:`CalendarKind`.
    """

    days: int = 30
    calendar: CalendarKind = CalendarKind.BUSINESS

    def __post_init__(self) -> None:
        if isinstance(self.days, bool) or not isinstance(self.days, int):
            raise ValueError(f"TermPolicy.days must be an integer, got {self.days!r}")
        if self.days < 1:
            raise ValueError(f"TermPolicy.days must be at least 1, got {self.days}")
        object.__setattr__(self, "calendar", _kind(self.calendar, "TermPolicy.calendar"))


def _kind(value: str, field: str) -> CalendarKind:
    try:
        return CalendarKind(value)
    except ValueError:
        allowed = ", ".join(repr(k.value) for k in CalendarKind)
        raise ValueError(f"{field} must be one of {allowed}, got {value!r}") from None


@cache
def _holidays_in_year(year: int) -> frozenset[date]:
    """Panama's national holidays (observed days included) falling in ``year``.

    The neighbouring years are generated too, so that an observed day moved across the year
    boundary (none today, but the rules may change) is not lost.
    """
    years = [y for y in (year - 1, year, year + 1) if MINYEAR <= y <= MAXYEAR]
    table = holidays.country_holidays(_COUNTRY, years=years)
    return frozenset(d for d in table if d.year == year)


@cache
def _working_ordinals_in_year(year: int) -> tuple[int, ...]:
    """Sorted ordinals of the business days (Mon-Fri, not a holiday) of ``year``."""
    off = _holidays_in_year(year)
    first = date(year, 1, 1).toordinal()
    last = date(year, 12, 31).toordinal()
    return tuple(
        o
        for o in range(first, last + 1)
        if (o + 6) % 7 < _SATURDAY  # date.fromordinal(1) is a Monday: weekday == (o - 1) % 7
        and date.fromordinal(o) not in off
    )


class _Index(NamedTuple):
    first_year: int
    last_year: int
    ordinals: list[int]  # ordinals of all working days in [first_year, last_year], ascending


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _require_count(n: int, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"{name} must not be negative, got {n}")


def _local_day(instant: datetime) -> date:
    return instant.astimezone(TZ).date()


class BusinessCalendar:
    """Counts working days: business days (default) or every calendar day.

    Business days are Monday to Friday except Panama's national holidays (observed days
    included). Instances are cheap to share and safe to use from several threads.
    """

    __slots__ = ("_closed", "_index", "_kind", "_lock")

    def __init__(
        self, kind: CalendarKind = CalendarKind.BUSINESS, closures: Iterable[date] = ()
    ) -> None:
        self._kind = _kind(kind, "kind")
        self._closed: frozenset[date] = frozenset(closures)
        self._index: _Index | None = None
        self._lock = threading.Lock()

    @property
    def kind(self) -> CalendarKind:
        return self._kind

    @property
    def closures(self) -> frozenset[date]:
        """Days closed by decree with terms suspended: not working days (business calendars)."""
        return self._closed

    def set_closures(self, closures: Iterable[date]) -> bool:
        """Replace the closed days (a reload); say whether they changed.

        Every holder of this calendar (the terms, the alert policy) sees the new days at once.
        """
        closed = frozenset(closures)
        with self._lock:
            if closed == self._closed:
                return False
            self._closed = closed
            self._index = None  # rebuilt on the next question, with the new days
            return True

    def __repr__(self) -> str:
        return f"BusinessCalendar({self._kind.value!r})"

    # -- the index of working days -------------------------------------------------------------

    def _covering(self, first_year: int, last_year: int) -> _Index:
        """An index whose year range includes ``[first_year, last_year]`` (clamped to date's)."""
        first_year = max(first_year, MINYEAR)
        last_year = min(last_year, MAXYEAR)
        index = self._index
        if index is not None and index.first_year <= first_year and last_year <= index.last_year:
            return index
        with self._lock:
            index = self._index
            if index is not None:
                first_year = min(first_year, index.first_year)
                last_year = max(last_year, index.last_year)
            ordinals: list[int] = []
            closed = {d.toordinal() for d in self._closed}
            for year in range(first_year, last_year + 1):
                if closed:
                    ordinals.extend(o for o in _working_ordinals_in_year(year) if o not in closed)
                else:
                    ordinals.extend(_working_ordinals_in_year(year))
            index = _Index(first_year, last_year, ordinals)
            self._index = index  # one atomic swap: readers see the old or the new index
            return index

    def _index_for(self, *days: date) -> _Index:
        years = [d.year for d in days]
        # A year of margin on each side: terms near a boundary seldom need a rebuild.
        return self._covering(min(years) - 1, max(years) + 1)

    # -- public API ----------------------------------------------------------------------------

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` counts: always for calendar days; otherwise Mon-Fri, not a holiday and
        not closed by decree with terms suspended."""
        if self._kind is CalendarKind.CALENDAR:
            return True
        return (
            day.weekday() < _SATURDAY
            and day not in _holidays_in_year(day.year)
            and day not in self._closed
        )

    def holidays_in(self, year: int) -> dict[date, str]:
        """Panama's national holidays of ``year`` with their names (the ``holidays`` package)."""
        _holidays_in_year(year)  # validates the year range the same way
        table = holidays.country_holidays(_COUNTRY, years=[year], language="es")
        return {d: str(name) for d, name in sorted(table.items()) if d.year == year}

    def add_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start`` (``start`` itself is not counted).

        ``n == 0`` returns ``start`` unchanged, whether or not it is a working day.
        """
        if type(n) is not int or n < 0:  # fast path for the common exact-int case
            _require_count(n, "n")
        if n == 0:
            return start
        if self._kind is CalendarKind.CALENDAR:
            return start + timedelta(days=n)
        index = self._index
        if index is None or not index.first_year < start.year < index.last_year:
            index = self._index_for(start)
        key = start.toordinal()
        while True:
            ordinals = index.ordinals
            # Working days <= start come before position i; the n-th one after start is at i+n-1.
            target = bisect_right(ordinals, key) + n - 1
            if target < len(ordinals):
                return date.fromordinal(ordinals[target])
            if index.last_year >= MAXYEAR:
                raise OverflowError(f"{n} working days after {start} is beyond date.max")
            index = self._covering(index.first_year, index.last_year + 1 + n // 200)

    def subtract_days(self, end: date, n: int) -> date:
        """The working day that is ``n`` working days before ``end``.

        Counting backwards from ``end`` (not counted), the ``n``-th working day met. For a working
        day ``s``, ``subtract_days(add_days(s, n), n) == s``. ``n == 0`` returns ``end``.
        """
        if type(n) is not int or n < 0:
            _require_count(n, "n")
        if n == 0:
            return end
        if self._kind is CalendarKind.CALENDAR:
            return end - timedelta(days=n)
        index = self._index
        if index is None or not index.first_year < end.year < index.last_year:
            index = self._index_for(end)
        key = end.toordinal()
        while True:
            ordinals = index.ordinals
            # Working days < end occupy positions [0, j); the n-th one back is at j-n.
            target = bisect_left(ordinals, key) - n
            if target >= 0:
                return date.fromordinal(ordinals[target])
            if index.first_year <= MINYEAR:
                raise OverflowError(f"{n} working days before {end} is before date.min")
            index = self._covering(index.first_year - 1 - n // 200, index.last_year)

    def days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end``; negative if ``end < start``.

        Antisymmetric (``days_between(a, b) == -days_between(b, a)``) and additive
        (``days_between(a, b) + days_between(b, c) == days_between(a, c)``).
        """
        if self._kind is CalendarKind.CALENDAR:
            return end.toordinal() - start.toordinal()
        index = self._index
        if index is None or not (
            index.first_year <= start.year <= index.last_year
            and index.first_year <= end.year <= index.last_year
        ):
            index = self._index_for(start, end)
        ordinals = index.ordinals
        return bisect_right(ordinals, end.toordinal()) - bisect_right(ordinals, start.toordinal())


_DEFAULT_CALENDARS = {kind: BusinessCalendar(kind) for kind in CalendarKind}


def due_at(
    filed_at: datetime, policy: TermPolicy, calendar: BusinessCalendar | None = None
) -> datetime:
    """When a term started at ``filed_at`` ends: 23:59:59 America/Panama of its last day.

    The start day is the local (America/Panama) day of ``filed_at``, which may be in any time
    zone but must be aware. The last day is ``policy.days`` working days after it. ``calendar``
    lets callers share one instance; it must count the same kind of days as ``policy``.
    """
    _require_aware(filed_at, "filed_at")
    if calendar is None:
        calendar = _DEFAULT_CALENDARS[policy.calendar]
    elif calendar.kind is not policy.calendar:
        raise ValueError(
            f"calendar counts {calendar.kind.value} days but the policy counts "
            f"{policy.calendar.value} days"
        )
    last_day = calendar.add_days(_local_day(filed_at), policy.days)
    return datetime.combine(last_day, END_OF_DAY, tzinfo=TZ)


def days_left(due: datetime, now: datetime, calendar: BusinessCalendar) -> int:
    """Working days from today (America/Panama) to the due day.

    Positive before the due day (the number of working days after today up to and including the
    due day), 0 on the due day while not yet overdue, negative once ``now`` is past ``due``: -1 on
    the first working day after the due day (and on any non-working day in between), and so on.
    """
    _require_aware(due, "due")
    _require_aware(now, "now")
    left = calendar.days_between(_local_day(now), _local_day(due))
    if now > due and left >= 0:
        return -1
    return left


def alert_instant(due: datetime, days_before: int, calendar: BusinessCalendar) -> datetime:
    """00:00 America/Panama of the working day ``days_before`` working days before the due day."""
    _require_aware(due, "due")
    day = calendar.subtract_days(_local_day(due), days_before)
    return datetime.combine(day, time(0, 0), tzinfo=TZ)


def is_overdue(due: datetime, now: datetime) -> bool:
    """Whether ``now`` is strictly past ``due`` (the due instant itself is still on time)."""
    _require_aware(due, "due")
    _require_aware(now, "now")
    return now > due
