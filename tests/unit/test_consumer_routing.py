"""The consumer, with no broker or database: it checks the routing-key table before the handler
and claims the inbox itself, once per event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from shared.consumer import Consumer, Handlers
from shared.contract import CaseReceived, CaseResolved, DepartmentResponded, Event
from shared.messaging import ROUTER
from shared.routing import Identities
from shared.uow import UnitOfWork

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@dataclass
class Raw:
    routing_key: str
    user_id: str | None
    content_type: str = "application/json"
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    raw_message: Raw
    message_id: str
    acked: int = 0

    async def ack(self) -> None:
        self.acked += 1

    async def nack(self, requeue: bool = True) -> None:
        raise AssertionError("nothing here is requeued")


@dataclass
class Broker:
    dead: list[tuple[str, str]] = field(default_factory=list)  # (queue, reason)

    async def publish(self, body: bytes, **kwargs: Any) -> None:
        self.dead.append((kwargs["routing_key"], kwargs["headers"]["x-defensa311-reason"]))


class FakeUow:
    """The inbox as a set; one instance per transaction, one inbox for all."""

    def __init__(self, inbox: set[tuple[str, str]]) -> None:
        self.inbox = inbox

    async def __aenter__(self) -> FakeUow:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def claim(self, consumer: str, event_id: str, at: datetime) -> bool:
        if (consumer, event_id) in self.inbox:
            return False
        self.inbox.add((consumer, event_id))
        return True


def answer(**overrides: Any) -> DepartmentResponded:
    values: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "tracking_code": "D311-2026-000101",
        "department": "obras",
        "response": "Se retiró la obra de la acera.",
        "occurred_at": NOW,
    }
    return DepartmentResponded(**{**values, **overrides})


def consumer(broker: Broker, ran: list[str], inbox: set[tuple[str, str]]) -> Consumer:
    async def answered(event: DepartmentResponded, uow: UnitOfWork, deps: list[str]) -> None:
        deps.append(str(event.event_id))

    return Consumer(
        ROUTER,
        Handlers("router", ran, {DepartmentResponded: answered}),
        broker,  # type: ignore[arg-type]
        lambda: FakeUow(inbox),  # type: ignore[arg-type, return-value]
        identities=Identities(system="defensa311"),
        now=lambda: NOW,
    )


async def deliver(c: Consumer, event: Event, key: str, user_id: str | None) -> Message:
    message = Message(Raw(key, user_id), str(event.event_id))
    await c(event.model_dump_json().encode(), message)  # type: ignore[arg-type]
    return message


async def test_an_event_type_its_key_does_not_admit_never_reaches_the_handler() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    forged = CaseResolved(
        case_id=uuid.uuid4(),
        tracking_code="D311-2026-000101",
        path="department",
        resolution="Resuelto.",
        resolved_at=NOW,
        occurred_at=NOW,
    )
    message = await deliver(c, forged, "case.responded.obras", "dept-obras")
    assert ran == [] and message.acked == 1
    assert broker.dead == [
        (
            "defensa311.router.dlq",
            "event_type 'CaseResolved' no admitido en 'case.responded.obras' "
            "(admite: DepartmentResponded)",
        )
    ]


async def test_a_departments_answer_needs_its_accounts_user_id() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    await deliver(c, answer(), "case.responded.obras", None)
    await deliver(c, answer(), "case.responded.obras", "dept-salud")
    assert ran == []
    assert [reason for _, reason in broker.dead] == [
        "falta user_id: 'case.responded.obras' exige la cuenta 'dept-obras'",
        "user_id 'dept-salud' no es la cuenta 'dept-obras' de 'case.responded.obras'",
    ]
    own = answer()
    await deliver(c, own, "case.responded.obras", "dept-obras")
    await c.close()
    assert ran == [str(own.event_id)]


async def test_the_consumer_claims_the_inbox_so_a_redelivery_has_no_second_effect() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    event = answer()
    first = await deliver(c, event, "case.responded.obras", "dept-obras")
    again = await deliver(c, event, "case.responded.obras", "dept-obras")
    await c.close()
    assert ran == [str(event.event_id)]
    assert (first.acked, again.acked) == (1, 1)
    assert inbox == {("router", str(event.event_id))}
    assert broker.dead == []


async def test_an_answer_for_another_department_than_its_key_is_refused() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    await deliver(c, answer(department="salud"), "case.responded.obras", "dept-obras")
    assert ran == []
    assert broker.dead == [
        (
            "defensa311.router.dlq",
            "el departamento del mensaje no coincide con su clave de enrutamiento",
        )
    ]


async def test_a_body_outside_its_events_schema_is_refused_naming_the_field() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    message = Message(Raw("case.responded.obras", "dept-obras"), str(uuid.uuid4()))
    body = b'{"event_type": "DepartmentResponded", "department": "obras"}'
    await c(body, message)  # type: ignore[arg-type]
    assert ran == [] and message.acked == 1
    ((_queue, reason),) = broker.dead
    assert reason.startswith("no cumple el esquema del evento DepartmentResponded: ")
    assert "case_id:" in reason


async def test_an_event_no_handler_maps_is_acked_and_not_claimed() -> None:
    broker, ran, inbox = Broker(), [], set()  # type: ignore[var-annotated]
    c = consumer(broker, ran, inbox)
    received = CaseReceived(
        case_id=uuid.uuid4(),
        tracking_code="D311-2026-000101",
        channel="web",
        kind="denuncia",
        category=None,
        received_at=NOW,
        due_at=NOW,
        occurred_at=NOW,
    )
    message = await deliver(c, received, "case.received", None)
    assert (ran, inbox, broker.dead, message.acked) == ([], set(), [], 1)
