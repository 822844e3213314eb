"""The notifier's gauges, read from its own table (the notification log)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.models import NotificationRow


async def notification_gauges(conn: AsyncConnection, now: datetime) -> list[GaugeMetricFamily]:
    family = GaugeMetricFamily(
        "defensa311_notifications_logged",
        "Notification log rows by channel and status (sent, failed, pending, …)",
        labels=["channel", "status"],
    )
    rows = await conn.execute(
        select(NotificationRow.channel, NotificationRow.status, func.count()).group_by(
            NotificationRow.channel, NotificationRow.status
        )
    )
    for channel, status, count in rows:
        family.add_metric([str(channel), str(status)], int(count))
    return [family]
