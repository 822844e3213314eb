"""The alert schedule of one clock: pure arithmetic, no I/O, ``now`` always passed in.

A clock due at ``due`` has one alert per configured threshold N (``DeadlineNear`` at 00:00
America/Panama of the working day N working days before the due day, see
:func:`shared.calendar.alert_instant`) and a final ``DeadlineMissed`` once ``now > due``. The
missed alert is threshold ``0``. Alerts are ordered by urgency: a smaller threshold is more urgent,
and ``0`` is the most urgent of all.

A clock remembers the most urgent alert it has sent (``last_alert``); only more urgent alerts can
follow, so an alert is never sent twice, even if the configured thresholds change between runs.
After downtime only the most urgent alert reached is sent, never a burst of stale ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.calendar import BusinessCalendar, alert_instant
from shared.config import InstitutionConfig
from shared.domain.clocks import Terms

MISSED = 0

#: ``DeadlineMissed`` fires strictly after the due instant (the due instant itself is on time).
_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True)
class Alert:
    """One alert of a clock: ``threshold`` working days before the due day (0 = missed)."""

    threshold: int
    fire_at: datetime

    @property
    def missed(self) -> bool:
        return self.threshold == MISSED


@dataclass(frozen=True)
class Step:
    """What a sweep does for a clock at ``now``: send ``send`` (if any), then wait for ``next``."""

    send: Alert | None
    next: Alert | None


@dataclass(frozen=True)
class AlertPolicy:
    """The configured thresholds (working days before the due day) and the calendar they count."""

    thresholds: tuple[int, ...]
    calendar: BusinessCalendar

    def __post_init__(self) -> None:
        if any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in self.thresholds):
            raise ValueError(f"thresholds must be positive integers, got {self.thresholds!r}")
        object.__setattr__(self, "thresholds", tuple(sorted(set(self.thresholds), reverse=True)))

    @classmethod
    def from_config(cls, config: InstitutionConfig, terms: Terms | None = None) -> AlertPolicy:
        terms = terms or Terms.from_config(config)
        return cls(thresholds=tuple(config.deadlines.thresholds), calendar=terms.calendar)

    def alerts(self, due: datetime) -> list[Alert]:
        """Every alert of a clock due at ``due``, least urgent (earliest) first."""
        alerts = [Alert(n, alert_instant(due, n, self.calendar)) for n in self.thresholds]
        alerts.append(Alert(MISSED, due + _AFTER))
        return alerts

    def first(self, due: datetime, started_at: datetime) -> Alert | None:
        """The first alert of a clock started at ``started_at``.

        A threshold already behind when the term started (a term shorter than the threshold) is
        not an alert; the missed alert always remains.
        """
        return self.after(due, started_at, None)

    def after(self, due: datetime, started_at: datetime, last_alert: int | None) -> Alert | None:
        """The first alert more urgent than ``last_alert`` (None: the clock's first alert)."""
        return next(
            (
                a
                for a in self.alerts(due)
                if _counts(a, started_at) and (last_alert is None or a.threshold < last_alert)
            ),
            None,
        )

    def step(
        self, due: datetime, started_at: datetime, now: datetime, last_alert: int | None
    ) -> Step:
        """The most urgent alert reached at ``now`` that is more urgent than ``last_alert``, and
        the next alert not yet reached."""
        pending = [
            a
            for a in self.alerts(due)
            if _counts(a, started_at) and (last_alert is None or a.threshold < last_alert)
        ]
        reached = [a for a in pending if a.fire_at <= now]
        upcoming = [a for a in pending if a.fire_at > now]
        return Step(send=reached[-1] if reached else None, next=upcoming[0] if upcoming else None)


def _counts(alert: Alert, started_at: datetime) -> bool:
    """Whether an alert belongs to a clock started at ``started_at``: a threshold reached before
    the start does not; the missed alert always does."""
    return alert.missed or alert.fire_at > started_at
