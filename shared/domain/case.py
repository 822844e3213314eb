"""The case aggregate: each lifecycle verb checks its guards and returns the events it causes.

Pure: no I/O. A :class:`Case` wraps the case's record (:class:`CaseRecord`: the stored row,
or any object with the same attributes) and changes it in memory only when every guard has
passed; a refusal (:class:`~shared.lifecycle.IllegalTransition`, :class:`InvalidActionInput`,
:class:`NotYourCase`) leaves it untouched. Storing the record, the audit row and the events is
the service layer's job (:func:`shared.cases.actions.perform`), in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping
from datetime import date, datetime
from typing import Any, Protocol

from shared.calendar import TZ, TermPolicy, due_at
from shared.contract import (
    KINDS,
    CaseAddedToAgenda,
    CaseClassified,
    CaseClosed,
    CaseForwarded,
    CaseRemitted,
    CaseResolved,
    CaseReturnAccepted,
    CaseReturned,
    CitizenContact,
    DepartmentResponded,
    Event,
    InspectionStarted,
    Location,
)
from shared.domain.clocks import Terms
from shared.lifecycle import DomainError, Lifecycle, State

DECISION_TEXT = {
    "accepted": "sugerencia aceptada",
    "rejected": "sugerencia no aceptada",
    "partially_accepted": "sugerencia aceptada en parte",
}
#: Kinds an anonymous case may not take: the law needs a name and a cédula for them.
IDENTIFIED_KINDS = frozenset({"denuncia", "queja"})


class CaseRecord(Protocol):
    """What the aggregate reads and writes of a case (the stored row has these attributes)."""

    id: str
    tracking_code: str
    kind: str | None
    category: str | None
    description: str
    citizen: dict[str, Any] | None
    notify: dict[str, Any] | None
    location: dict[str, Any] | None
    anonymous: bool
    state: str
    department: str | None
    matched_rule: str | None
    received_at: datetime
    due_at: datetime
    department_due_at: datetime | None
    remitted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    resolution: str | None
    resolution_path: str | None
    decision: str | None
    inspector: str | None
    return_count: int
    flagged: bool
    updated_at: datetime


class InvalidActionInput(DomainError):
    """A well-formed action whose content the institution cannot accept."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message


class NotYourCase(DomainError):
    """A department acting on a case that is not remitted to it."""

    def __init__(self, department: str, actual: str | None) -> None:
        super().__init__(f"el caso no está remitido al departamento «{department}»")
        self.department = department
        self.actual = actual


class Case:
    """One case and its rules; ``departments`` are the codes a case may be remitted to."""

    def __init__(
        self,
        record: CaseRecord,
        *,
        lifecycle: Lifecycle,
        terms: Terms,
        departments: Container[str],
        decline_reasons: Mapping[str, str] | None = None,
        entities: Mapping[str, str] | None = None,
        forward_days: int = 5,
    ) -> None:
        self.record = record
        self._decline_reasons = decline_reasons or {}
        self._entities = entities or {}
        self._forward_days = forward_days
        self._lifecycle = lifecycle
        self._terms = terms
        self._departments = departments

    # -------------------------------------------------------------------------- guards

    def _next(self, action: str, kind: str | None = None) -> State:
        """The state ``action`` leads to; raises IllegalTransition (checked before any input)."""
        return self._lifecycle.apply(self.record.state, action, kind or self.record.kind)

    def _enter(self, state: State, now: datetime) -> None:
        self.record.state = state.value
        self.record.updated_at = now

    def _check_mine(self, department: str | None) -> str:
        """The case's department; a department acting on another's case is refused."""
        if department is not None and department != self.record.department:
            raise NotYourCase(department, self.record.department)
        return self.record.department or ""

    def _ids(self) -> dict[str, Any]:
        return {"case_id": uuid.UUID(self.record.id), "tracking_code": self.record.tracking_code}

    # -------------------------------------------------------------------------- verbs

    def classify(
        self,
        kind: str | None,
        category: str | None,
        now: datetime,
        *,
        by: str = "staff",
        rule: str | None = None,
        route: str | None = None,
    ) -> list[Event]:
        to = self._next("classify", kind)
        if kind is not None and kind not in KINDS:
            raise InvalidActionInput(
                "kind", "unknown_kind", "tipo desconocido; use denuncia, queja o sugerencia"
            )
        if self.record.anonymous and kind in IDENTIFIED_KINDS:
            raise InvalidActionInput(
                "kind",
                "anonymous_only_sugerencia",
                "un caso anónimo solo puede clasificarse como sugerencia",
            )
        case = self.record
        case.kind = kind or case.kind
        case.category = category or case.category
        case.matched_rule = rule
        self._enter(to, now)
        return [
            CaseClassified(
                **self._ids(),
                kind=case.kind,
                category=case.category,
                rule=rule,
                route=route,
                by=by,
                occurred_at=now,
            )
        ]

    def start_inspection(
        self, inspector: str | None, scheduled_for: datetime | None, now: datetime
    ) -> list[Event]:
        to = self._next("start_inspection")
        self.record.inspector = inspector
        self._enter(to, now)
        return [
            InspectionStarted(
                **self._ids(), inspector=inspector, scheduled_for=scheduled_for, occurred_at=now
            )
        ]

    def remit(self, department: str, now: datetime) -> list[Event]:
        to = self._next("remit")
        if department not in self._departments:
            raise InvalidActionInput(
                "department", "unknown_department", f"departamento desconocido: {department}"
            )
        case = self.record
        case.department = department
        case.remitted_at = now
        term = self._terms.department_term(now, case.due_at)
        case.department_due_at = term.due_at
        if term.no_time_left:
            # Remitted with no working day left before the legal term's cap: a supervisor
            # must see it at once.
            case.flagged = True
        self._enter(to, now)
        return [self._remitted(now, capped=term.capped)]

    def add_to_agenda(self, now: datetime) -> list[Event]:
        to = self._next("add_to_agenda")
        self._enter(to, now)
        return [CaseAddedToAgenda(**self._ids(), occurred_at=now)]

    def record_findings(self, findings: str, now: datetime) -> list[Event]:
        to = self._next("record_findings")
        return self._resolve(to, findings, "inspection", now)

    def respond(self, response: str, now: datetime, *, department: str | None) -> list[Event]:
        """The department's answer; ``department`` is who answers (None: on its behalf)."""
        to = self._next("respond")
        answering = self._check_mine(department)
        answer = DepartmentResponded(
            **self._ids(), department=answering, response=response, occurred_at=now
        )
        return [answer, *self._resolve(to, response, "department", now)]

    def record_meeting_outcome(
        self, decision: str, meeting_date: date, notes: str | None, now: datetime
    ) -> list[Event]:
        to = self._next("record_meeting_outcome")
        if meeting_date > now.astimezone(TZ).date():
            raise InvalidActionInput(
                "meeting_date", "not_in_future", "la fecha de la reunión no puede ser futura"
            )
        if meeting_date < self.record.received_at.astimezone(TZ).date():
            raise InvalidActionInput(
                "meeting_date",
                "not_before_filing",
                "la fecha de la reunión no puede ser anterior a la recepción del caso",
            )
        self.record.decision = decision
        summary = f"Reunión del {meeting_date.strftime('%d/%m/%Y')}: {DECISION_TEXT[decision]}"
        resolution = f"{summary}. {notes}" if notes else summary
        return self._resolve(to, resolution, "meeting", now)

    def return_(self, reason: str, now: datetime, *, department: str | None) -> list[Event]:
        """The department gives the case back; a case returned twice is flagged."""
        to = self._next("return")
        returning = self._check_mine(department)
        case = self.record
        case.return_count += 1
        case.flagged = case.flagged or case.return_count >= 2
        case.department = None
        case.department_due_at = None
        self._enter(to, now)
        # The department's request, then the system's verdict (deadlines and 311 act on it).
        return [
            CaseReturned(
                **self._ids(),
                department=returning,
                reason=reason,
                flagged=case.flagged,
                occurred_at=now,
            ),
            CaseReturnAccepted(
                **self._ids(),
                department=returning,
                reason=reason,
                flagged=case.flagged,
                occurred_at=now,
            ),
        ]

    def close(self, reason: str | None, now: datetime) -> list[Event]:
        to = self._next("close")
        self.record.closed_at = now
        self._enter(to, now)
        return [CaseClosed(**self._ids(), declined=False, reason=reason, occurred_at=now)]

    def decline(self, reason_code: str, reason: str, now: datetime) -> list[Event]:
        """Decline with a reason from the configured list and a text for the citizen."""
        to = self._next("decline")
        label = self._decline_reasons.get(reason_code)
        if label is None:
            known = ", ".join(self._decline_reasons) or "ninguno configurado"
            raise InvalidActionInput(
                "reason_code", "unknown_reason", f"motivo desconocido; use uno de: {known}"
            )
        self.record.closed_at = now
        self.record.resolution = f"{label}. {reason}"
        self._enter(to, now)
        return [
            CaseClosed(
                **self._ids(),
                declined=True,
                reason=reason,
                decline_reason=reason_code,
                decline_label=label,
                occurred_at=now,
            )
        ]

    def forward(self, entity: str, note: str, now: datetime) -> list[Event]:
        """Send the petition to the competent public body and close it here."""
        to = self._next("forward")
        name = self._entities.get(entity)
        if name is None:
            known = ", ".join(self._entities) or "ninguna configurada"
            raise InvalidActionInput(
                "entity", "unknown_entity", f"entidad desconocida; use una de: {known}"
            )
        due = due_at(
            self.record.received_at,
            TermPolicy(self._forward_days, self._terms.calendar.kind),
            self._terms.calendar,
        )
        self.record.closed_at = now
        self.record.resolution = f"Enviada por competencia a {name}. {note}"
        self.record.resolution_path = "forwarded"
        self._enter(to, now)
        return [
            CaseForwarded(
                **self._ids(),
                entity=entity,
                entity_name=name,
                note=note,
                forwarded_at=now,
                forward_due_at=due,
                late=now > due,
                occurred_at=now,
            )
        ]

    # -------------------------------------------------------------------------- events

    def _resolve(self, to: State, resolution: str, path: str, now: datetime) -> list[Event]:
        case = self.record
        case.resolved_at = now
        case.resolution = resolution
        case.resolution_path = path
        self._enter(to, now)
        return [
            CaseResolved(
                **self._ids(),
                path=path,
                resolution=resolution,
                decision=case.decision,
                department=case.department,
                resolved_at=now,
                occurred_at=now,
            )
        ]

    def _remitted(self, now: datetime, *, capped: bool = False) -> CaseRemitted:
        case = self.record
        citizen = case.citizen or {}
        notify = case.notify or {}
        assert case.kind is not None and case.department is not None
        assert case.department_due_at is not None
        return CaseRemitted(
            **self._ids(),
            department=case.department,
            kind=case.kind,
            category=case.category,
            description=case.description,
            location=Location.model_validate(case.location) if case.location else None,
            citizen=CitizenContact(
                full_name=citizen.get("full_name"),
                id_type=citizen.get("id_type"),
                id_number=citizen.get("id_number"),
                ruc_dv=citizen.get("ruc_dv"),
                representative=citizen.get("representative"),
                phone=citizen.get("phone"),
                email=citizen.get("email"),
                notify_email=notify.get("email"),
                notify_phone=notify.get("phone"),
                notify_address=notify.get("address"),
            ),
            remitted_at=now,
            due_at=case.department_due_at,
            due_capped=capped,
            occurred_at=now,
        )
