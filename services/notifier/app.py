"""Notifier: events become e-mails, SMS and webhooks that are never lost and never go twice.

The consumer (:mod:`services.notifier.handlers`) writes the notification log; the delivery
loop (:mod:`services.notifier.delivery`) sends it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.notifier.delivery import CONCURRENCY, delivery_loop
from services.notifier.handlers import handlers
from services.notifier.http import router
from services.notifier.metrics import notification_gauges
from services.notifier.models import NotificationRow
from services.notifier.settings import NotifierSettings
from shared.consumer import Handlers
from shared.key_links import key_link_problems
from shared.messaging import NOTIFIER
from shared.runtime import Deps, ServiceDefinition, Subscription


def service(settings: NotifierSettings | None = None) -> ServiceDefinition:
    """The notifier, with its settings from the environment unless given."""
    notifier = settings or NotifierSettings()
    queued = asyncio.Event()  # the consumer wakes the delivery loop after a commit

    def handler_map(deps: Deps) -> Handlers[Any]:
        return handlers(deps, notifier, queued)

    async def deliver(deps: Deps) -> None:
        await delivery_loop(deps, notifier, queued)

    return ServiceDefinition(
        name="notifier",
        subscriptions=(
            Subscription(
                NOTIFIER,
                handler_map,
                "Citizen-facing and deadline events to notify (e-mail, SMS, webhooks, tasks)",
                gather_seconds=0.2,
            ),
        ),
        loops=(deliver,),
        routers=(router,),
        # the receipt e-mail's clave link is signed with intake's secret
        checks=(key_link_problems,),
        models=(NotificationRow,),
        gauges=(notification_gauges,),
        # what `run all` holds at once under load: the four consumers' transactions, the
        # relay's poll and mark, this delivery group's and the other services' loops
        db_pool_size=CONCURRENCY + 3,
    )
