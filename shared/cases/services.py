"""What the case functions need besides the unit of work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from shared.config import InstitutionConfig
from shared.db.models import CaseRow
from shared.domain.actions import new_lifecycle
from shared.domain.case import Case
from shared.domain.clocks import Terms
from shared.lifecycle import Lifecycle

if TYPE_CHECKING:
    from shared.contract import Event
    from shared.uow import UnitOfWork


@dataclass
class CaseServices:
    config: InstitutionConfig
    terms: Terms
    lifecycle: Lifecycle = field(default_factory=new_lifecycle)
    #: Adds what the pure domain cannot know to an outgoing event before it is stored
    #: (the attachments' expiring links on ``CaseRemitted``: :class:`shared.evidence.RemitLinks`).
    complete_event: Callable[[UnitOfWork, Event, datetime], Awaitable[Event]] | None = None
    departments: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.departments = frozenset(self.config.department_codes)

    def case(self, record: CaseRow) -> Case:
        """The aggregate over a stored case, with the institution's rules."""
        return Case(
            record,
            lifecycle=self.lifecycle,
            terms=self.terms,
            departments=self.departments,
            decline_reasons=self.config.decline_labels,
            entities={e.code: e.name for e in self.config.entities},
            forward_days=self.config.deadlines.forward_days,
        )
