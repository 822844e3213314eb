"""What the case functions need besides the unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import InstitutionConfig
from shared.db.models import CaseRow
from shared.domain.actions import new_lifecycle
from shared.domain.case import Case
from shared.domain.clocks import Terms
from shared.lifecycle import Lifecycle


@dataclass
class CaseServices:
    config: InstitutionConfig
    terms: Terms
    lifecycle: Lifecycle = field(default_factory=new_lifecycle)
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
        )
