"""Router: classification by rules, the manual's three paths, the departments' answers."""

from __future__ import annotations

from services.router.duplicate_searches import search_loop
from services.router.handlers import handlers
from services.router.models import DuplicateSearchRow
from shared.messaging import ROUTER
from shared.runtime import ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="router",
        subscriptions=(
            Subscription(
                ROUTER,
                handlers,
                "New cases (CaseReceived) to classify and route; departments' answers "
                "(DepartmentResponded) and returns (CaseReturned)",
            ),
        ),
        loops=(search_loop,),
        models=(DuplicateSearchRow,),
    )
