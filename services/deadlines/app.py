"""Deadlines: the legal and department clocks, durable timers in the database, and their alerts."""

from __future__ import annotations

from services.deadlines.handlers import handlers
from services.deadlines.metrics import clock_gauges
from services.deadlines.models import ClockRow, StopRow
from services.deadlines.sweep import sweep_loop
from shared.messaging import DEADLINES
from shared.runtime import ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="deadlines",
        subscriptions=(
            Subscription(
                DEADLINES,
                handlers,
                "Case events that start and stop the legal and department clocks",
                gather_seconds=0.2,
            ),
        ),
        loops=(sweep_loop,),
        models=(ClockRow, StopRow),
        gauges=(clock_gauges,),
    )
