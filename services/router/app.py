"""Router: classification by rules, the manual's three paths, the departments' answers."""

from __future__ import annotations

from faststream.rabbit.message import RabbitMessage

from services.router.handlers import case_received, department_answer
from shared.consumer import Handler, Poison, Work
from shared.messaging import ROUTER
from shared.runtime import Deps, ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="router",
        subscriptions=(
            Subscription(
                ROUTER,
                dispatch,
                "New cases (CaseReceived) to classify and route; departments' answers "
                "(DepartmentResponded) and returns (CaseReturned)",
            ),
        ),
    )


def dispatch(deps: Deps) -> Handler:
    """One queue, three kinds of message: choose the handler by routing key."""
    received = case_received(deps)
    answered = department_answer(deps)

    def decode(body: bytes, msg: RabbitMessage) -> Work | None:
        key = msg.raw_message.routing_key or ""
        if key == "case.received":
            return received(body, msg)
        if key.startswith(("case.responded.", "case.returned.")):
            return answered(body, msg)
        raise Poison(f"clave de enrutamiento inesperada: {key!r}")

    return decode
