"""Notifier: events become e-mails, SMS and webhooks that are never lost and never go twice.

The consumer (:mod:`services.notifier.handlers`) writes the notification log; the delivery
loop (:mod:`services.notifier.delivery`) sends it.
"""

from __future__ import annotations

from services.notifier.delivery import CONCURRENCY, delivery_loop
from services.notifier.handlers import events
from shared.messaging import NOTIFIER
from shared.runtime import ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="notifier",
        subscriptions=(
            Subscription(
                NOTIFIER,
                events,
                "Citizen-facing and deadline events to notify (e-mail, SMS, webhooks, tasks)",
                gather_seconds=0.2,
            ),
        ),
        loops=(delivery_loop,),
        # the deliveries in flight, the consumer's transaction, the relay's poll and mark
        db_pool_size=CONCURRENCY + 3,
    )
