"""The deadlines service's gauges, read from its own table (``deadline_clocks``)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.deadlines.models import ClockRow


async def clock_gauges(conn: AsyncConnection, now: datetime) -> list[GaugeMetricFamily]:
    if not await conn.scalar(select(func.count()).select_from(ClockRow)):
        return []  # no clock written yet: no clock figures rather than false zeros
    open_clocks = GaugeMetricFamily(
        "defensa311_clocks_open", "Running deadline clocks by clock", labels=["clock"]
    )
    overdue = GaugeMetricFamily(
        "defensa311_clocks_overdue", "Running clocks past their due date", labels=["clock"]
    )
    late = func.sum(case((ClockRow.due_at < now, 1), else_=0))
    rows = await conn.execute(
        select(ClockRow.clock, func.count(), late)
        .where(ClockRow.stopped_at.is_(None))
        .group_by(ClockRow.clock)
    )
    for clock, count, late_count in rows:
        open_clocks.add_metric([str(clock)], int(count))
        overdue.add_metric([str(clock)], int(late_count or 0))
    return [open_clocks, overdue]
