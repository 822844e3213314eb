"""The public transparency figures, their inline SVG bar charts and their CSV.

Pure functions over rows (``figures``, ``bar_chart_svg``, ``to_csv``) plus one query
(``load_figures``). Days to resolution are counted like the legal term (business days by
default), from the filing day to the resolution day. "Resolved within the legal term" is
measured over the cases whose outcome is known: resolved (on time or late) and open cases
already past their due date (late for sure); cases still inside their term do not count yet.
A department's median is shown with its count, and counts under ``SMALL_SAMPLE`` are flagged,
so that a tiny sample is not read as a ranking.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    bindparam,
    cast,
    func,
    select,
)
from sqlalchemy import (
    case as sql_case,
)

from services.intake.web.satisfaction import SurveyFigures, survey_csv_rows
from shared.calendar import TZ, BusinessCalendar
from shared.config import InstitutionConfig
from shared.db.models import CaseRow
from shared.domain.clocks import is_overdue, overdue_clause
from shared.domain.labels import CHANNEL_LABELS, KIND_LABELS
from shared.lifecycle import OPEN_STATES, is_open
from shared.uow import UnitOfWork

SMALL_SAMPLE = 5

PATH_LABELS = {"inspection": "Inspección del Departamento", "meeting": "Reunión (sugerencias)"}
UNCLASSIFIED = "Sin clasificar"


@dataclass(frozen=True)
class CaseFacts:
    """What the figures need of one case (no personal data)."""

    kind: str | None
    channel: str
    state: str
    department: str | None
    resolution_path: str | None
    received_at: datetime
    due_at: datetime
    resolved_at: datetime | None
    department_due_at: datetime | None = None
    #: Read by the clocks; the figures count a case under a recurso by its decision.
    recourse_due_at: datetime | None = None


@dataclass(frozen=True)
class Median:
    key: str
    label: str
    median_days: float
    count: int

    @property
    def small(self) -> bool:
        return self.count < SMALL_SAMPLE


@dataclass
class Figures:
    total: int = 0
    by_kind: list[tuple[str, str, int]] = field(default_factory=list)
    by_channel: list[tuple[str, str, int]] = field(default_factory=list)
    by_month: list[tuple[str, str, int]] = field(default_factory=list)
    decided: int = 0
    on_time: int = 0
    open_count: int = 0
    overdue_count: int = 0
    #: Answered by sending the petition to the competent public body (counted apart).
    forwarded: int = 0
    medians: list[Median] = field(default_factory=list)
    #: The satisfaction survey and the duplicates joined (computed beside the figures).
    survey: SurveyFigures | None = None

    @property
    def on_time_share(self) -> float | None:
        return self.on_time / self.decided if self.decided else None


_MONTHS = (
    "ene",
    "feb",
    "mar",
    "abr",
    "may",
    "jun",
    "jul",
    "ago",
    "sep",
    "oct",
    "nov",
    "dic",
)


def month_label(key: str) -> str:
    year, month = key.split("-")
    return f"{_MONTHS[int(month) - 1]} {year}"


def figures(
    cases: list[CaseFacts],
    now: datetime,
    calendar: BusinessCalendar,
    config: InstitutionConfig,
) -> Figures:
    result = Figures(total=len(cases))
    result.by_kind = _kind_rows(Counter(c.kind or "" for c in cases))
    channels = Counter(c.channel for c in cases)
    result.by_channel = [(k, CHANNEL_LABELS.get(k, k), n) for k, n in sorted(channels.items())]
    months = Counter(c.received_at.astimezone(TZ).strftime("%Y-%m") for c in cases)
    result.by_month = [(k, month_label(k), months[k]) for k in sorted(months)]

    days: dict[str, list[int]] = {}
    for case in cases:
        if case.resolved_at is not None:
            result.decided += 1
            result.on_time += case.resolved_at <= case.due_at
            group = _resolution_group(case)
            days.setdefault(group, []).append(
                calendar.days_between(
                    case.received_at.astimezone(TZ).date(), case.resolved_at.astimezone(TZ).date()
                )
            )
        elif case.resolution_path == "forwarded":
            result.forwarded += 1
        elif is_open(case.state):
            result.open_count += 1
            if is_overdue(case, now):
                result.overdue_count += 1
            if now > case.due_at:
                result.decided += 1  # past the legal term: certainly not resolved within it
    result.medians = sorted(
        (
            Median(key, _group_label(key, config), float(statistics.median(values)), len(values))
            for key, values in days.items()
        ),
        key=lambda m: (-m.count, m.label),
    )
    return result


def _resolution_group(case: CaseFacts) -> str:
    if case.resolution_path == "department" and case.department:
        return case.department
    return case.resolution_path or "otro"


def _group_label(key: str, config: InstitutionConfig) -> str:
    department = config.department(key)
    if department is not None:
        return department.name
    return PATH_LABELS.get(key, key)


async def load_figures(
    uow: UnitOfWork, now: datetime, calendar: BusinessCalendar, config: InstitutionConfig
) -> Figures:
    """The figures, computed by the database on PostgreSQL (aggregates; no row is loaded);
    on SQLite, the embedded single-process store, by :func:`figures` over streamed rows."""
    if uow.session.get_bind().dialect.name != "postgresql":
        return await _figures_streamed(uow, now, calendar, config)
    result = Figures()
    kinds: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    months: Counter[str] = Counter()
    for row in await uow.session.execute(_totals_statement(now)):
        kinds[row.kind or ""] += row.n
        channels[row.channel] += row.n
        months[row.month] += row.n
        result.total += row.n
        result.decided += row.resolved + row.open_past_due
        result.on_time += row.on_time
        result.forwarded += row.forwarded
        result.open_count += row.open
        result.overdue_count += row.overdue
    result.by_kind = _kind_rows(kinds)
    result.by_channel = [(k, CHANNEL_LABELS.get(k, k), n) for k, n in sorted(channels.items())]
    result.by_month = [(k, month_label(k), months[k]) for k in sorted(months)]
    histograms = await _days_histograms(uow, calendar)
    result.medians = _medians(histograms, config)
    return result


def _kind_rows(kinds: Counter[str]) -> list[tuple[str, str, int]]:
    return [(k, KIND_LABELS[k], kinds[k]) for k in KIND_LABELS if kinds[k]] + (
        [("", UNCLASSIFIED, kinds[""])] if kinds[""] else []
    )


def _local(column: Any) -> Any:
    """A timestamp column as the institution's wall clock (PostgreSQL)."""
    return func.timezone(TZ.key, column)


def _totals_statement(now: datetime) -> Select[Any]:
    """One pass over the cases: counts by kind, channel and month with the outcome sums."""
    c = CaseRow
    open_states = sorted(s.value for s in OPEN_STATES)
    # As in figures(): a forwarded petition counts apart, never as open.
    forwarded = and_(c.resolved_at.is_(None), c.resolution_path == "forwarded")
    unresolved_open = and_(
        c.resolved_at.is_(None),
        func.coalesce(c.resolution_path, "") != "forwarded",
        c.state.in_(open_states),
    )

    def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count().filter(condition)

    month = func.to_char(_local(c.received_at), "YYYY-MM").label("month")
    return (
        select(
            c.kind,
            c.channel,
            month,
            func.count().label("n"),
            count_if(c.resolved_at.is_not(None)).label("resolved"),
            count_if(c.resolved_at <= c.due_at).label("on_time"),
            count_if(forwarded).label("forwarded"),
            count_if(unresolved_open).label("open"),
            count_if(
                and_(
                    unresolved_open,
                    overdue_clause(
                        c.state,
                        c.due_at,
                        c.department_due_at,
                        now,
                        recourse_due=c.recourse_due_at,
                    ),
                )
            ).label("overdue"),
            count_if(and_(unresolved_open, c.due_at < now)).label("open_past_due"),
        )
        .where(c.duplicate_of.is_(None))  # a joined duplicate counts once, as its main
        .group_by(c.kind, c.channel, month)
    )


async def _days_histograms(uow: UnitOfWork, calendar: BusinessCalendar) -> dict[str, Counter[int]]:
    """Per resolution group, how many cases took each number of working days.

    Working days between two dates are the difference of their working-day ordinals
    (:meth:`BusinessCalendar.days_between` is additive); the ordinals of the few hundred
    dates in range are sent with the query, so the database counts cases per (group, days)
    and only that small histogram comes back.
    """
    c = CaseRow
    filed_day = cast(_local(c.received_at), Date)
    resolved_day = cast(_local(c.resolved_at), Date)
    bounds = (
        await uow.session.execute(
            select(
                func.min(func.least(filed_day, resolved_day)),
                func.max(func.greatest(filed_day, resolved_day)),
            ).where(c.resolved_at.is_not(None), c.duplicate_of.is_(None))
        )
    ).one()
    first, last = bounds
    if first is None or last is None:
        return {}
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    ordinals = [calendar.days_between(first, day) for day in days]
    group = sql_case(
        (
            and_(c.resolution_path == "department", func.coalesce(c.department, "") != ""),
            c.department,
        ),
        else_=func.coalesce(func.nullif(c.resolution_path, ""), "otro"),
    ).label("grp")
    resolved = (
        select(group, filed_day.label("filed"), resolved_day.label("resolved"))
        .where(c.resolved_at.is_not(None), c.duplicate_of.is_(None))
        .subquery()
    )
    ordinal_of = (
        select(
            func.unnest(bindparam("days", days, type_=ARRAY(Date))).label("day"),
            func.unnest(bindparam("ordinals", ordinals, type_=ARRAY(Integer))).label("ordinal"),
        )
    ).subquery()
    filed_ordinal = ordinal_of.alias("filed_ordinal")
    resolved_ordinal = ordinal_of.alias("resolved_ordinal")
    span = (resolved_ordinal.c.ordinal - filed_ordinal.c.ordinal).label("days")
    rows = await uow.session.execute(
        select(resolved.c.grp, span, func.count())
        .select_from(resolved)
        .join(filed_ordinal, filed_ordinal.c.day == resolved.c.filed)
        .join(resolved_ordinal, resolved_ordinal.c.day == resolved.c.resolved)
        .group_by(resolved.c.grp, span)
    )
    histograms: dict[str, Counter[int]] = {}
    for key, span_days, n in rows:
        histograms.setdefault(key, Counter())[span_days] += n
    return histograms


def histogram_median(histogram: Counter[int]) -> float:
    """:func:`statistics.median` of the values the histogram counts, without expanding it."""
    total = sum(histogram.values())
    middle = [(total - 1) // 2, total // 2]  # the one or two middle positions (0-based)
    found: list[int] = []
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        while len(found) < 2 and middle[len(found)] < seen:
            found.append(value)
    return (found[0] + found[1]) / 2


def _medians(histograms: dict[str, Counter[int]], config: InstitutionConfig) -> list[Median]:
    return sorted(
        (
            Median(key, _group_label(key, config), histogram_median(h), sum(h.values()))
            for key, h in histograms.items()
        ),
        key=lambda m: (-m.count, m.label),
    )


async def _figures_streamed(
    uow: UnitOfWork, now: datetime, calendar: BusinessCalendar, config: InstitutionConfig
) -> Figures:
    """The embedded store's path: the rows, streamed into :func:`figures`."""
    rows = await uow.session.stream(
        select(
            CaseRow.kind,
            CaseRow.channel,
            CaseRow.state,
            CaseRow.department,
            CaseRow.resolution_path,
            CaseRow.received_at,
            CaseRow.due_at,
            CaseRow.resolved_at,
            CaseRow.department_due_at,
        )
        .where(CaseRow.duplicate_of.is_(None))  # a joined duplicate counts once, as its main
        .execution_options(yield_per=1000)
    )
    cases = [CaseFacts(*row) async for row in rows]
    return figures(cases, now, calendar, config)


@dataclass(frozen=True)
class Snapshot:
    """Figures as computed at one moment, with the validators HTTP caches use."""

    figures: Figures
    computed_at: datetime
    etag: str


class FiguresCache:
    """The figures, recomputed at most once per ``ttl`` however many requests ask.

    Concurrent requests for expired figures wait for the one recomputation in progress,
    so a burst of anonymous requests costs the database one aggregate query. Figures past
    the ``ttl`` but younger than ``stale`` are answered at once while that one recomputation
    runs in the background: over years of cases it takes seconds, which no visitor should
    wait for. Older figures (after a quiet spell, or none yet) are recomputed first.
    """

    def __init__(
        self,
        ttl: timedelta,
        load: Callable[[datetime], Awaitable[Figures]],
        now: Callable[[], datetime],
        stale: timedelta = timedelta(0),
    ) -> None:
        self._ttl = ttl
        self._stale = stale
        self._load = load
        self._now = now
        self._lock = asyncio.Lock()
        self._snapshot: Snapshot | None = None
        self._refresh: asyncio.Task[Snapshot] | None = None

    def _fresh(self, at: datetime) -> Snapshot | None:
        snapshot = self._snapshot
        if snapshot is not None and at - snapshot.computed_at < self._ttl:
            return snapshot
        return None

    async def get(self) -> Snapshot:
        at = self._now()
        snapshot = self._fresh(at)
        if snapshot is not None:
            return snapshot
        stale = self._snapshot
        if stale is not None and self._ttl and at - stale.computed_at < self._stale:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._recompute(), name="figures")
                # A failed recomputation leaves the figures as they were; the next request
                # past the ttl tries again.
                self._refresh.add_done_callback(lambda task: task.cancelled() or task.exception())
            return stale
        return await self._recompute()

    async def _recompute(self) -> Snapshot:
        async with self._lock:
            at = self._now()
            snapshot = self._fresh(at)
            if snapshot is None:
                data = await self._load(at)
                digest = hashlib.sha256(to_csv(data).encode()).hexdigest()[:20]
                snapshot = Snapshot(data, at, f'"{digest}"')
                self._snapshot = snapshot
            return snapshot


# ------------------------------------------------------------------------------ SVG


def bar_chart_svg(
    title: str,
    bars: list[tuple[str, float]],
    *,
    unit: str = "",
    chart_id: str = "grafico",
    notes: list[str] | None = None,
) -> str:
    """A horizontal bar chart as accessible inline SVG (a ``<title>`` and one per bar).

    Phone first: each label sits on its own lines above its bar, whole (wrapped, never cut),
    in a drawing as wide as a phone's screen, so the text keeps its size; a zero draws no bar.
    """
    width, line, bar_h, value_w = CHART_WIDTH, 18, 16, 118
    bar_w = width - value_w
    top = max((v for _, v in bars), default=0) or 1
    title_id = f"{chart_id}-titulo"
    body: list[str] = []
    y = 4
    if not bars:
        body.append(f'<text x="0" y="20" class="grafico-etiqueta">{escape("Sin datos")}</text>')
        y = 28
    for i, (label, value) in enumerate(bars):
        shown = f"{value:g}{unit}" + (f" {notes[i]}" if notes else "")
        lines = "".join(
            f'<tspan x="0" y="{y + (n + 1) * line - 4}">{escape(text)}</tspan>'
            for n, text in enumerate(wrap_label(label))
        )
        y += len(wrap_label(label)) * line
        length = round(bar_w * value / top, 1) if value > 0 else 0.0
        bar = (
            f'<rect x="0" y="{y}" width="{length}" height="{bar_h}" class="grafico-barra" rx="2"/>'
            if length > 0
            else ""
        )
        body.append(
            f"<g><title>{escape(label)}: {escape(shown)}</title>"
            f'<text class="grafico-etiqueta">{lines}</text>{bar}'
            f'<text x="{length + 6 if length else 0}" y="{y + bar_h - 3}" class="grafico-valor">'
            f"{escape(shown)}</text></g>"
        )
        y += bar_h + 12
    return "".join(
        [
            f'<svg class="grafico" viewBox="0 0 {width} {y}" role="img" '
            f'aria-labelledby="{title_id}" xmlns="http://www.w3.org/2000/svg">',
            f'<title id="{title_id}">{escape(title)}</title>',
            *body,
            "</svg>",
        ]
    )


# The drawing's width in its own units: about a phone's screen, so one unit stays one pixel.
CHART_WIDTH = 340
LABEL_CHARACTERS = 38


def wrap_label(label: str, limit: int = LABEL_CHARACTERS) -> list[str]:
    """A label in lines of at most ``limit`` characters, broken between words."""
    lines: list[str] = []
    current = ""
    for word in label.split():
        if current and len(current) + 1 + len(word) > limit:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines


# ------------------------------------------------------------------------------ CSV


def to_csv(data: Figures) -> str:
    """The same numbers as the page: ``figure,group,value,count``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "group", "value", "count"])
    writer.writerow(["cases_total", "", data.total, ""])
    for key, _, n in data.by_kind:
        writer.writerow(["cases_by_kind", key or "unclassified", n, ""])
    for key, _, n in data.by_channel:
        writer.writerow(["cases_by_channel", key, n, ""])
    for key, _, n in data.by_month:
        writer.writerow(["cases_by_month", key, n, ""])
    share = data.on_time_share
    writer.writerow(
        [
            "resolved_within_legal_term_share",
            "",
            "" if share is None else f"{share:.4f}",
            data.decided,
        ]
    )
    writer.writerow(["resolved_within_legal_term", "", data.on_time, data.decided])
    for median in data.medians:
        writer.writerow(
            [
                "median_business_days_to_resolution",
                median.key,
                f"{median.median_days:g}",
                median.count,
            ]
        )
    writer.writerow(["open_cases", "", data.open_count, ""])
    writer.writerow(["overdue_open_cases", "", data.overdue_count, ""])
    if data.survey is not None:
        writer.writerows(survey_csv_rows(data.survey))
    return out.getvalue()
