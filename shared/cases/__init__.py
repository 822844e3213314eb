"""The service layer of the case record, one job per module.

- :mod:`~shared.cases.queries`: reading a case and its history;
- :mod:`~shared.cases.filing`: filing a new case;
- :mod:`~shared.cases.actions`: applying a lifecycle action (the rules are the domain's:
  :mod:`shared.domain.case` and :mod:`shared.domain.actions`);
- :mod:`~shared.cases.keys`: issuing the citizen's clave again at the front desk;
- :mod:`~shared.cases.audit`: the audit trail.

Each function runs inside a :class:`~shared.uow.UnitOfWork`: the new state, the audit row and
the outgoing events are written in the caller's one transaction.
"""

from shared.cases.actions import perform
from shared.cases.audit import CaseNote, audit, record_note, record_notes_on
from shared.cases.filing import file_case
from shared.cases.keys import issue_key
from shared.cases.queries import CaseNotFound, get_case, history
from shared.cases.services import CaseServices
from shared.domain.case import InvalidActionInput, NotYourCase

__all__ = [
    "CaseNotFound",
    "CaseNote",
    "CaseServices",
    "InvalidActionInput",
    "NotYourCase",
    "audit",
    "file_case",
    "get_case",
    "history",
    "issue_key",
    "perform",
    "record_note",
    "record_notes_on",
]
