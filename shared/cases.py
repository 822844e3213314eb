"""The service layer of the case record: filing a case and applying lifecycle actions.

Each function runs inside a :class:`~shared.uow.UnitOfWork`: the new state, the audit
row and the outgoing events are written in the caller's one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.calendar import BusinessCalendar, CalendarKind, TermPolicy, due_at
from shared.config import InstitutionConfig
from shared.contract import (
    CaseAddedToAgenda,
    CaseClassified,
    CaseClosed,
    CaseReceived,
    CaseRemitted,
    CaseResolved,
    CaseReturned,
    CitizenContact,
    DepartmentResponded,
    Event,
    InspectionStarted,
    Location,
    Submission,
)
from shared.db.models import CaseHistoryRow, CaseRow
from shared.lifecycle import DomainError, Lifecycle, State
from shared.tracking import new_tracking_code
from shared.uow import UnitOfWork


class CaseNotFound(DomainError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"caso no encontrado: {ref}")
        self.ref = ref


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


@dataclass(frozen=True)
class Terms:
    """The institution's deadline policy, made ready to compute due dates."""

    legal: TermPolicy
    department: TermPolicy
    calendar: BusinessCalendar

    @classmethod
    def from_config(cls, config: InstitutionConfig) -> Terms:
        kind = CalendarKind(config.deadlines.calendar)
        return cls(
            legal=TermPolicy(days=config.deadlines.days, calendar=kind),
            department=TermPolicy(days=config.deadlines.department_days, calendar=kind),
            calendar=BusinessCalendar(kind),
        )

    def legal_due(self, filed_at: datetime) -> datetime:
        return due_at(filed_at, self.legal, self.calendar)

    def department_due(self, remitted_at: datetime) -> datetime:
        return due_at(remitted_at, self.department, self.calendar)


@dataclass
class CaseServices:
    """What the case functions need besides the unit of work."""

    config: InstitutionConfig
    terms: Terms
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


# ------------------------------------------------------------------------------ queries


async def get_case(
    uow: UnitOfWork,
    *,
    tracking_code: str | None = None,
    case_id: str | None = None,
    lock: bool = False,
) -> CaseRow:
    query = select(CaseRow)
    if tracking_code is not None:
        query = query.where(CaseRow.tracking_code == tracking_code)
    elif case_id is not None:
        query = query.where(CaseRow.id == case_id)
    else:
        raise ValueError("tracking_code or case_id")
    if lock and uow.is_postgres:
        query = query.with_for_update()
    row = await uow.session.scalar(query)
    if row is None:
        raise CaseNotFound(tracking_code or case_id or "")
    return row


async def history(uow: UnitOfWork, case_id: str) -> list[CaseHistoryRow]:
    rows = await uow.session.scalars(
        select(CaseHistoryRow)
        .where(CaseHistoryRow.case_id == case_id)
        .order_by(CaseHistoryRow.at, CaseHistoryRow.id)
    )
    return list(rows)


# ------------------------------------------------------------------------------ filing


async def file_case(
    uow: UnitOfWork,
    services: CaseServices,
    submission: Submission,
    *,
    channel: str,
    actor: str,
    now: datetime,
    external_ref: str | None = None,
) -> tuple[CaseRow, bool]:
    """Store a new case in ``received`` and emit ``CaseReceived``.

    A 311 ``external_ref`` seen before returns the existing case and emits nothing
    (``created`` is False).
    """
    if external_ref is not None:
        existing = await uow.session.scalar(
            select(CaseRow).where(CaseRow.external_ref == external_ref)
        )
        if existing is not None:
            return existing, False
    case = CaseRow(
        id=str(uuid.uuid4()),
        tracking_code=await _unique_tracking_code(uow, now),
        external_ref=external_ref,
        channel=channel,
        kind=submission.kind,
        category=submission.category,
        description=submission.description,
        citizen=submission.citizen.model_dump(exclude_none=True) if submission.citizen else None,
        notify=submission.notify.model_dump(exclude_none=True) if submission.notify else None,
        location=submission.location.model_dump(exclude_none=True) if submission.location else None,
        anonymous=submission.anonymous,
        state=State.RECEIVED.value,
        received_at=now,
        due_at=services.terms.legal_due(now),
        return_count=0,
        flagged=False,
        updated_at=now,
    )
    uow.session.add(case)
    await uow.session.flush()  # the history row's foreign key needs the case row first
    _audit(
        uow,
        case,
        actor=actor,
        action="file",
        from_state=None,
        to_state=State.RECEIVED,
        now=now,
        details={"channel": channel},
    )
    uow.publish(
        CaseReceived(
            case_id=uuid.UUID(case.id),
            tracking_code=case.tracking_code,
            external_ref=external_ref,
            channel=channel,  # type: ignore[arg-type]
            kind=case.kind,  # type: ignore[arg-type]
            category=case.category,
            received_at=now,
            due_at=case.due_at,
            occurred_at=now,
        )
    )
    return case, True


async def _unique_tracking_code(uow: UnitOfWork, now: datetime) -> str:
    for _ in range(10):
        code = new_tracking_code(now.year)
        taken = await uow.session.scalar(select(CaseRow.id).where(CaseRow.tracking_code == code))
        if taken is None:
            return code
    raise RuntimeError("could not draw a free tracking code")  # ~never: 40 random bits


# ------------------------------------------------------------------------------ actions


async def perform(
    uow: UnitOfWork,
    services: CaseServices,
    case: CaseRow,
    action: str,
    params: dict[str, Any],
    *,
    actor: str,
    now: datetime,
    department_event: bool = True,
) -> list[Event]:
    """Apply one lifecycle action to a (locked) case row; return the events emitted.

    ``department_event`` False means the department's own ``DepartmentResponded`` /
    ``CaseReturned`` is already on the wire (it arrived over AMQP), so it is not re-emitted.
    """
    if action == "classify" and params.get("kind"):
        kind_for_check = params["kind"]
    else:
        kind_for_check = case.kind
    from_state = case.state
    if action == "remit":
        department = params["department"]
        if services.config.department(department) is None:
            raise InvalidActionInput(
                "department", "unknown_department", f"departamento desconocido: {department}"
            )
    if action == "classify" and case.anonymous and kind_for_check in ("denuncia", "queja"):
        raise InvalidActionInput(
            "kind",
            "anonymous_only_sugerencia",
            "un caso anónimo solo puede clasificarse como sugerencia",
        )
    new_state = services.lifecycle.apply(case.state, action, kind_for_check)
    events = _effects(services, case, action, params, now=now, department_event=department_event)
    case.state = new_state.value
    case.updated_at = now
    for event in events:
        uow.publish(event)
    _audit(
        uow,
        case,
        actor=actor,
        action=action,
        from_state=from_state,
        to_state=new_state,
        now=now,
        details=_public_details(action, params, events),
    )
    return events


def _public_details(action: str, params: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    keep = {k: v for k, v in params.items() if v is not None and isinstance(v, str | int | bool)}
    keep["events"] = [str(e.event_id) for e in events]
    return keep


def _ids(case: CaseRow) -> dict[str, Any]:
    return {"case_id": uuid.UUID(case.id), "tracking_code": case.tracking_code}


def _effects(
    services: CaseServices,
    case: CaseRow,
    action: str,
    params: dict[str, Any],
    *,
    now: datetime,
    department_event: bool,
) -> list[Event]:
    ids = _ids(case)
    if action == "classify":
        case.kind = params.get("kind") or case.kind
        case.category = params.get("category") or case.category
        case.matched_rule = params.get("rule")
        return [
            CaseClassified(
                **ids,
                kind=case.kind,
                category=case.category,  # type: ignore[arg-type]
                rule=params.get("rule"),
                route=params.get("route"),
                by=params.get("by", "staff"),
                occurred_at=now,
            )
        ]
    if action == "start_inspection":
        case.inspector = params.get("inspector")
        return [
            InspectionStarted(
                **ids,
                inspector=params.get("inspector"),
                scheduled_for=params.get("scheduled_for"),
                occurred_at=now,
            )
        ]
    if action == "remit":
        case.department = params["department"]
        case.remitted_at = now
        case.department_due_at = services.terms.department_due(now)
        return [_remitted_event(case, now)]
    if action == "add_to_agenda":
        return [CaseAddedToAgenda(**ids, occurred_at=now)]
    if action in ("record_findings", "respond", "record_meeting_outcome"):
        return _resolution(case, action, params, now=now, department_event=department_event)
    if action == "return":
        department = case.department or ""
        case.return_count += 1
        case.flagged = case.flagged or case.return_count >= 2
        case.department = None
        case.department_due_at = None
        if not department_event:
            return []
        return [
            CaseReturned(
                **ids,
                department=department,
                reason=params["reason"],
                flagged=case.flagged,
                occurred_at=now,
            )
        ]
    if action in ("close", "decline"):
        case.closed_at = now
        reason = params.get("reason")
        if action == "decline":
            case.resolution = reason
        return [CaseClosed(**ids, declined=action == "decline", reason=reason, occurred_at=now)]
    raise AssertionError(action)


def _resolution(
    case: CaseRow, action: str, params: dict[str, Any], *, now: datetime, department_event: bool
) -> list[Event]:
    ids = _ids(case)
    events: list[Event] = []
    case.resolved_at = now
    if action == "record_findings":
        case.resolution, case.resolution_path = params["findings"], "inspection"
    elif action == "respond":
        case.resolution, case.resolution_path = params["response"], "department"
        if department_event:
            events.append(
                DepartmentResponded(
                    **ids,
                    department=case.department or "",
                    response=params["response"],
                    occurred_at=now,
                )
            )
    else:
        notes = params.get("notes") or ""
        case.decision = params["decision"]
        case.resolution, case.resolution_path = notes or case.decision, "meeting"
    events.append(
        CaseResolved(
            **ids,
            path=case.resolution_path,  # type: ignore[arg-type]
            resolution=case.resolution or "",
            decision=case.decision,  # type: ignore[arg-type]
            department=case.department,
            resolved_at=now,
            occurred_at=now,
        )
    )
    return events


def _remitted_event(case: CaseRow, now: datetime) -> CaseRemitted:
    citizen = case.citizen or {}
    notify = case.notify or {}
    assert case.kind is not None and case.department is not None
    assert case.department_due_at is not None
    return CaseRemitted(
        **_ids(case),
        department=case.department,
        kind=case.kind,  # type: ignore[arg-type]
        category=case.category,
        description=case.description,
        location=Location.model_validate(case.location) if case.location else None,
        citizen=CitizenContact(
            full_name=citizen.get("full_name"),
            id_number=citizen.get("id_number"),
            phone=citizen.get("phone"),
            email=citizen.get("email"),
            notify_email=notify.get("email"),
            notify_phone=notify.get("phone"),
            notify_address=notify.get("address"),
        ),
        remitted_at=now,
        due_at=case.department_due_at,
        occurred_at=now,
    )


def _audit(
    uow: UnitOfWork,
    case: CaseRow,
    *,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    uow.session.add(
        CaseHistoryRow(
            case_id=case.id,
            at=now,
            actor=actor,
            action=action,
            from_state=from_state,
            to_state=str(to_state) if to_state else None,
            details=details,
        )
    )


def record_note(
    uow: UnitOfWork,
    case: CaseRow,
    *,
    actor: str,
    action: str,
    now: datetime,
    details: dict[str, Any],
) -> None:
    """An audit row that changes no state (a refused answer, a notification, an alert)."""
    _audit(
        uow,
        case,
        actor=actor,
        action=action,
        from_state=case.state,
        to_state=case.state,
        now=now,
        details=details,
    )
