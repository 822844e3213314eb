"""Prometheus metrics, one registry per process (no module-level collectors).

Besides the counters, each service contributes *gauges* read from its own tables
(``ServiceDefinition.gauges``): a process reports those of the services it runs, so no
service reads another's tables to describe it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("defensa311.metrics")

Gauges = Callable[[AsyncConnection, datetime], Awaitable[list[GaugeMetricFamily]]]
"""Gauges a service reads from its own tables, as of an instant."""


class _Snapshot(Collector):
    """The gauges as last read (a scrape of the registry is synchronous)."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "defensa311_messages_total",
            "Messages handled by consumers, by queue and outcome",
            ["queue", "outcome"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "defensa311_http_requests_total",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "defensa311_notifications_total",
            "Notifications by channel and status",
            ["channel", "status"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "defensa311_deadline_alerts_total",
            "Deadline alerts emitted by type",
            ["alert"],
            registry=self.registry,
        )
        self.pruned = Counter(
            "defensa311_pruned_rows_total",
            "Rows deleted by retention, by table (published outbox rows, inbox marks)",
            ["table"],
            registry=self.registry,
        )

        self.batches = Histogram(
            "defensa311_batch_deliveries",
            "Deliveries handled together in one consumer transaction, by queue",
            ["queue"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )

        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        self.gauges: Sequence[Gauges] = ()
        self._reading = asyncio.Lock()
        self._read_at: float | None = None

    async def refresh(self, engine: AsyncEngine, now: datetime, max_age: float = 0.0) -> None:
        """Read every gauge of this process's services, unless they were read less than
        ``max_age`` seconds ago; concurrent scrapes of expired gauges wait for one read. A
        failed read says so in ``defensa311_metrics_database_up`` rather than failing the
        scrape."""
        if self._fresh(max_age):
            return
        async with self._reading:
            if self._fresh(max_age):
                return
            await self._read(engine, now)
            self._read_at = time.monotonic()

    def _fresh(self, max_age: float) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < max_age

    async def _read(self, engine: AsyncEngine, now: datetime) -> None:
        families: list[GaugeMetricFamily] = []
        up = GaugeMetricFamily(
            "defensa311_metrics_database_up", "1 if the database answered the scrape's queries"
        )
        ok = True
        try:
            async with engine.connect() as conn:
                for gauges in self.gauges:
                    families += await gauges(conn, now)
        except Exception as exc:
            ok = False
            log.warning("metrics query failed", extra={"error": type(exc).__name__})
        up.add_metric([], 1 if ok else 0)
        self._snapshot.families = [*families, up]

    def message_outcome(self, queue: str, outcome: str) -> None:
        self.messages.labels(queue=queue, outcome=outcome).inc()

    def batch(self, queue: str, deliveries: int) -> None:
        self.batches.labels(queue=queue).observe(deliveries)

    def rows_pruned(self, outbox: int, inbox: int) -> None:
        self.pruned.labels(table="outbox").inc(outbox)
        self.pruned.labels(table="inbox").inc(inbox)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
