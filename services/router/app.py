"""Router: classification by rules, the manual's three paths, the departments' answers."""

from __future__ import annotations

from services.router.handlers import case_received, department_answer
from shared.messaging import ROUTER
from shared.runtime import ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="router",
        subscriptions=(
            Subscription(
                ROUTER,
                _dispatch,
                "New cases (CaseReceived) to classify and route; departments' answers",
            ),
        ),
    )


def _dispatch(deps):  # type: ignore[no-untyped-def]
    received = case_received(deps)
    answered = department_answer(deps)

    async def handle(body, msg):  # type: ignore[no-untyped-def]
        key = msg.raw_message.routing_key or ""
        if key == "case.received":
            await received(body, msg)
        else:
            await answered(body, msg)

    return handle
