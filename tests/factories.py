"""Cases, events and the institution for tests, built in memory with sensible defaults.

Every factory takes keyword overrides, so a test names only what it is about.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.cases import CaseServices
from shared.config import InstitutionConfig
from shared.contract import CaseReceived, CaseReturned, DepartmentResponded, Submission
from shared.db.models import CaseRow
from shared.domain.actions import REGISTRY
from shared.domain.case import Case
from shared.domain.clocks import Terms
from shared.lifecycle import State

# Monday 2 March 2026, 10:00 in Panama.
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DEPARTMENTS = {"vias": "Dirección de Mantenimiento Vial", "aseo": "Dirección de Aseo"}


def config(**overrides: Any) -> InstitutionConfig:
    values: dict[str, Any] = {
        "institution": {"name": "Alcaldía de prueba", "supervisor_email": "sup@example.com"},
        "departments": [
            {"code": code, "name": name, "email": f"{code}@example.com"}
            for code, name in DEPARTMENTS.items()
        ],
        "entities": [{"code": "idaan", "name": "IDAAN", "email": "atencion@idaan.example"}],
        **overrides,
    }
    return InstitutionConfig.model_validate(values)


def services(**overrides: Any) -> CaseServices:
    """The case services over :func:`config`; without overrides, one shared instance."""
    if not overrides:
        return _default_services()
    institution = config(**overrides)
    return CaseServices(config=institution, terms=Terms.from_config(institution))


@functools.cache
def _default_services() -> CaseServices:
    institution = config()
    return CaseServices(config=institution, terms=Terms.from_config(institution))


def case_row(**overrides: Any) -> CaseRow:
    """A stored case's row, in memory: a denuncia received at :data:`NOW` by default."""
    received = overrides.pop("received_at", NOW)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "tracking_code": "D311-2026-ABCD-EFGH",
        "external_ref": None,
        "channel": "web",
        "kind": "denuncia",
        "category": "Calles y huecos",
        "description": "Hay un hueco enorme frente a la escuela desde hace un mes.",
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
        "location": None,
        "anonymous": False,
        "state": State.RECEIVED.value,
        "department": None,
        "matched_rule": None,
        "received_at": received,
        "due_at": received + timedelta(days=42),
        "department_due_at": None,
        "remitted_at": None,
        "resolved_at": None,
        "closed_at": None,
        "resolution": None,
        "resolution_path": None,
        "decision": None,
        "inspector": None,
        "return_count": 0,
        "flagged": False,
        "updated_at": received,
        "reopen_count": 0,
    }
    values.update(overrides)
    return CaseRow(**values)


def case_in(state: str, kind: str | None = "denuncia", **overrides: Any) -> CaseRow:
    """A case row already in ``state`` (remitted cases to ``vias``, with its term)."""
    if state == State.REMITTED:
        overrides.setdefault("department", "vias")
        overrides.setdefault("remitted_at", NOW)
        overrides.setdefault("department_due_at", NOW + timedelta(days=20))
    if state in (State.RESOLVED, State.CLOSED):
        overrides.setdefault("resolved_at", NOW - timedelta(days=1))
    if state in (State.RECONSIDERATION, State.APPEAL):
        overrides.setdefault("resolved_at", NOW - timedelta(days=2))
        overrides.setdefault("recourse", state)
        overrides.setdefault("recourse_filed_at", NOW - timedelta(days=1))
        overrides.setdefault("recourse_due_at", NOW + timedelta(days=40))
    return case_row(state=state, kind=kind, **overrides)


def aggregate(record: CaseRow, case_services: CaseServices | None = None) -> Case:
    return (case_services or services()).case(record)


#: A valid body for each action, as its door would send it.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "classify": {"kind": "denuncia", "category": "Calles y huecos"},
    "start_inspection": {"inspector": "Ing. Rosa Ortega"},
    "remit": {"department": "vias"},
    "add_to_agenda": {},
    "record_findings": {"findings": "Se verificó el hueco y se reparó."},
    "respond": {"response": "Se rellenó el hueco el 5 de marzo."},
    "record_meeting_outcome": {"decision": "accepted", "meeting_date": "2026-03-02"},
    "return": {"reason": "Corresponde a Aseo, no a Vías."},
    "close": {"reason": "Ciudadano notificado."},
    "decline": {"reason_code": "duplicada", "reason": "Duplicado de otro caso."},
    "forward": {"entity": "idaan", "note": "Falta de agua: competencia del IDAAN."},
    "join": {"main": "2026-4SB-N2C-ZTS"},
    "separate": {},
    "add_information": {"text": "El hueco creció y ya hay un carro dañado."},
    "reopen": {"reason": "El hueco sigue igual."},
    "answer_survey": {"score": 4, "comment": "Buena atención."},
    "file_reconsideration": {"grounds": "La respuesta no atiende lo que denuncié."},
    "file_appeal": {"grounds": "La decisión desconoce las fotos que aporté."},
    "decide_reconsideration": {"outcome": "confirm", "reasoning": "Se verificó la reparación."},
    "decide_appeal": {"outcome": "confirm", "reasoning": "La decisión está bien fundada."},
}


def body(action: str, **overrides: Any) -> Any:
    """The action's validated body: :data:`VALID_BODIES` with ``overrides``."""
    return REGISTRY[action].body.model_validate({**VALID_BODIES[action], **overrides})


def submission(**overrides: Any) -> Submission:
    values: dict[str, Any] = {
        "kind": "denuncia",
        "description": "Hay un hueco enorme frente a la escuela desde hace un mes.",
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
        **overrides,
    }
    return Submission.model_validate(values)


def case_received(**overrides: Any) -> CaseReceived:
    values: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "tracking_code": "D311-2026-ABCD-EFGH",
        "channel": "web",
        "kind": "denuncia",
        "category": None,
        "received_at": NOW,
        "due_at": NOW + timedelta(days=42),
        "occurred_at": NOW,
        **overrides,
    }
    return CaseReceived(**values)


def department_responded(case: CaseRow, **overrides: Any) -> DepartmentResponded:
    values: dict[str, Any] = {
        "case_id": uuid.UUID(case.id),
        "tracking_code": case.tracking_code,
        "department": case.department or "vias",
        "response": "Se rellenó el hueco.",
        "occurred_at": NOW,
        **overrides,
    }
    return DepartmentResponded(**values)


def case_returned(case: CaseRow, **overrides: Any) -> CaseReturned:
    values: dict[str, Any] = {
        "case_id": uuid.UUID(case.id),
        "tracking_code": case.tracking_code,
        "department": case.department or "vias",
        "reason": "No es nuestro.",
        "occurred_at": NOW,
        **overrides,
    }
    return CaseReturned(**values)
