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

from shared.contract import EXCHANGE, department_remitted_key

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
    ("case.received", "case.responded.*", "case.returned.*", "case.separated"),
    "New cases to classify and route (and cases separated from a main case, routed anew); "
    "departments' answers and returns",
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
        "case.reopened",
        "case.recourse_filed",
        "case.recourse_decided",
        "case.joined",
        "case.separated",
    ),
    "Events that start, stop and move the legal, department and recourse clocks (the system's "
    "verdicts only: never a department's own answer, which the router judges; a due date moved "
    "by a closure, DueDateChanged, moves its clock; a case the citizen reopened, CaseReopened, "
    "or a revoked decision, RecourseDecided, starts a new legal clock; a case joined to a main "
    "case, CaseJoined, stops its clocks until it is separated, CaseSeparated)",
    retired=("case.responded.*", "case.returned.*", "case.rejected.*"),
)
NOTIFIER = QueueSpec(
    f"{PREFIX}.notifier",
    (
        "case.received",
        department_remitted_key("*"),
        "case.resolved",
        "case.closed",
        "case.forwarded",
        "deadline.near",
        "deadline.missed",
        "deadline.changed",
        "case.reopened",
        "case.recourse_filed",
        "case.recourse_decided",
        "case.joined",
        "case.followed",
        "case.separated",
    ),
    "Events that become e-mails, SMS and webhooks",
)
# Privacy (DESIGN §4): the 311 platform binds the case keys one by one, never ``case.#``, which
# would match its own submissions (``case.submitted``, the citizen's data it sent) and a
# delivery error that may quote an address (``case.notification_failed``). A department's
# copy of a remitted case travels on ``department.<code>.remitted``, outside ``case.``.
PUBLIC_CASE_KEYS: tuple[str, ...] = (
    "case.received",
    "case.classified",
    "case.inspection",
    "case.remitted.*",
    "case.responded.*",
    "case.returned.*",
    "case.return_accepted",
    "case.on_agenda",
    "case.resolved",
    "case.closed",
    "case.recourse_filed",
    "case.recourse_decided",
    "case.joined",
    "case.followed",
    "case.separated",
    "case.rejected",
    "case.rejected.*",
)
PLATFORM311 = QueueSpec(
    f"{PREFIX}.platform311",
    PUBLIC_CASE_KEYS,
    "The 311 platform follows every case through its public projection (no personal data)",
)


def department_queue(code: str) -> QueueSpec:
    return QueueSpec(
        f"{PREFIX}.department.{code}",
        (department_remitted_key(code), f"case.rejected.{code}", f"case.information.{code}"),
        f"Cases remitted to department {code} (CaseRemittedToDepartment, with the citizen's "
        "contact), its refused answers and information the citizen added to its cases "
        "(CitizenAddedInformation)",
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
    """A broker whose channel confirms every publish and raises on an unroutable one.

    Its subscribers are called with the message itself (``apply_types=False``): every
    consumer parses and checks the raw body on its own (:mod:`shared.consumer`), so
    FastStream's dependency injection would only cost a call model per delivery."""
    return RabbitBroker(
        amqp_url,
        default_channel=Channel(
            prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True
        ),
        apply_types=False,
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
