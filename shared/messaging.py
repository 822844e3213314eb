"""Messaging topology (DESIGN §4–5) and the broker factory.

Every queue is a durable quorum queue dead-lettering to ``<queue>.dlq`` (itself a quorum
queue). Every service declares the *whole* topology at start, idempotently, so no event
is ever published before the queue that should receive it exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)

from shared.contract import EXCHANGE

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

PREFIX = "defensa311"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[str, ...]
    description: str
    # Bindings an older topology had: removed at start so nothing outside the contract flows in.
    retired: tuple[str, ...] = ()

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


INTAKE = QueueSpec(
    f"{PREFIX}.intake", ("case.submitted",), "311 submissions (CaseSubmitted) for intake"
)
ROUTER = QueueSpec(
    f"{PREFIX}.router",
    ("case.received", "case.responded.*", "case.returned.*"),
    "New cases to classify and route; departments' answers and returns",
)
#: The inbox of the consumer on :data:`ROUTER` that applies departments' answers: a door that
#: emits an answer itself marks it there, so the answer is not applied a second time.
ANSWERS_INBOX = "router"
DEADLINES = QueueSpec(
    f"{PREFIX}.deadlines",
    (
        "case.received",
        "case.remitted.*",
        "case.return_accepted",
        "case.resolved",
        "case.closed",
        "case.forwarded",
        "deadline.changed",
    ),
    "Events that start, stop and move the legal and department clocks (the system's verdicts "
    "only: never a department's own answer, which the router judges; a due date moved by a "
    "closure, DueDateChanged, moves its clock)",
    retired=("case.responded.*", "case.returned.*", "case.rejected.*"),
)
NOTIFIER = QueueSpec(
    f"{PREFIX}.notifier",
    (
        "case.received",
        "case.remitted.*",
        "case.resolved",
        "case.closed",
        "case.forwarded",
        "deadline.near",
        "deadline.missed",
        "deadline.changed",
    ),
    "Events that become e-mails, SMS and webhooks",
)
PLATFORM311 = QueueSpec(
    f"{PREFIX}.platform311",
    ("case.#",),
    "The 311 platform follows its cases: every case.# event",
)


def department_queue(code: str) -> QueueSpec:
    return QueueSpec(
        f"{PREFIX}.department.{code}",
        (f"case.remitted.{code}", f"case.rejected.{code}"),
        f"Cases remitted to department {code} (CaseRemitted) and its refused answers",
    )


def system_topology(department_codes: Iterable[str]) -> list[QueueSpec]:
    return [INTAKE, ROUTER, DEADLINES, NOTIFIER, PLATFORM311] + [
        department_queue(code) for code in department_codes
    ]


def exchange() -> RabbitExchange:
    return RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True)


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": spec.dlq}


def rabbit_queue(spec: QueueSpec) -> RabbitQueue:
    arguments: QuorumQueueArgs = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": spec.dlq,
    }
    return RabbitQueue(
        spec.name,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=spec.bindings[0],
        arguments=arguments,
    )


def dead_letter_queue(spec: QueueSpec) -> RabbitQueue:
    return RabbitQueue(spec.dlq, queue_type=QueueType.QUORUM, durable=True)


def make_broker(amqp_url: str, *, prefetch: int, logger: Any = None) -> RabbitBroker:
    """A broker whose channel confirms every publish and raises on an unroutable one."""
    return RabbitBroker(
        amqp_url,
        default_channel=Channel(
            prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True
        ),
        logger=logger,
        graceful_timeout=10.0,
        reconnect_interval=1.0,
    )


async def declare_topology(broker: RabbitBroker, specs: Iterable[QueueSpec]) -> None:
    """Declare the exchange, every queue, its DLQ and its bindings (idempotent)."""
    robust_exchange = await broker.declare_exchange(exchange())
    for spec in specs:
        await broker.declare_queue(dead_letter_queue(spec))
        queue = await broker.declare_queue(rabbit_queue(spec))
        for key in spec.bindings:
            await queue.bind(robust_exchange, routing_key=key)
        for key in spec.retired:
            await queue.unbind(robust_exchange, routing_key=key)
