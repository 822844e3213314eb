"""Prometheus metrics, one registry per process (no module-level collectors)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)


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
