"""The service layer of the case record: filing a case and applying lifecycle actions.

Each function runs inside a :class:`~shared.uow.UnitOfWork`: the new state, the audit
row and the outgoing events are written in the caller's one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from shared.calendar import TZ
from shared.config import InstitutionConfig
from shared.contract import (
    KINDS,
    CaseAddedToAgenda,
    CaseClassified,
    CaseClosed,
    CaseReceived,
    CaseRemitted,
    CaseRemittedToDepartment,
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
from shared.domain.clocks import Terms
from shared.lifecycle import DomainError, Lifecycle, State
from shared.tracking import new_tracking_code
from shared.uow import UnitOfWork
from shared.validation import InvalidValue, clean_text

# The router's inbox name: a department fact emitted here must not be applied again there.
ROUTER_CONSUMER = "router"

DECISIONS: tuple[str, ...] = ("accepted", "rejected", "partially_accepted")
DECISION_TEXT = {
    "accepted": "sugerencia aceptada",
    "rejected": "sugerencia no aceptada",
    "partially_accepted": "sugerencia aceptada en parte",
}


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
    if case_id is not None and tracking_code is None:
        cached, row = uow.cached_case(case_id, lock=lock)
        if cached:
            if row is None:
                raise CaseNotFound(case_id)
            return row
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
    check_code: bool = True,
) -> tuple[CaseRow, bool]:
    """Store a new case in ``received`` and emit ``CaseReceived``.

    A 311 ``external_ref`` seen before returns the existing case and emits nothing
    (``created`` is False). ``check_code`` False skips the look-up that the new tracking
    code is free (40 random bits: a clash is all but impossible): for a caller that runs
    again on the unique index's refusal, as a consumer does.
    """
    if external_ref is not None:
        cached, existing = uow.cached_external_ref(external_ref)
        if not cached:
            existing = await uow.session.scalar(
                select(CaseRow).where(CaseRow.external_ref == external_ref)
            )
        if existing is not None:
            return existing, False
    case = CaseRow(
        id=str(uuid.uuid4()),
        tracking_code=(
            await _unique_tracking_code(uow, now) if check_code else new_tracking_code(now.year)
        ),
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
    if external_ref is not None:
        uow.remember_external_ref(external_ref, case)
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
            channel=channel,
            kind=case.kind,
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

    Refusals change nothing: :class:`~shared.lifecycle.IllegalTransition` (the state or the
    kind does not allow it), :class:`InvalidActionInput` (a parameter breaks a rule, named in
    Spanish) and :class:`NotYourCase` (``params["department"]`` is not the case's department).

    ``department_event`` False means the department's own ``DepartmentResponded`` /
    ``CaseReturned`` is already on the wire (it arrived over AMQP), so it is not re-emitted.
    When it is emitted here (the HTTP door), the router's inbox is marked in the same
    transaction so the router does not apply the same fact a second time when it hears it.
    """
    kind_for_check = (
        params.get("kind") if action == "classify" and params.get("kind") else case.kind
    )
    from_state = case.state
    new_state = services.lifecycle.apply(case.state, action, kind_for_check)
    clean = check_params(services, case, action, params, now=now)
    events = _effects(services, case, action, clean, now=now, department_event=department_event)
    if action == "return" and not department_event and case.flagged:
        # The department's own CaseReturned cannot know the case is now flagged for a
        # supervisor (returned twice): the system says so on the wire.
        events.append(
            CaseReturned(
                **_ids(case),
                department=clean["returned_by"],
                reason=clean["reason"],
                flagged=True,
                occurred_at=now,
            )
        )
    case.state = new_state.value
    case.updated_at = now
    for event in events:
        uow.publish(event)
        if isinstance(event, DepartmentResponded | CaseReturned):
            uow.mark_seen(ROUTER_CONSUMER, str(event.event_id), now)
    _audit(
        uow,
        case,
        actor=actor,
        action=action,
        from_state=from_state,
        to_state=new_state,
        now=now,
        details=_public_details(action, clean, events, case),
    )
    return events


# ------------------------------------------------------------------------------ parameters


def _text(
    params: dict[str, Any], name: str, *, required: bool, min_len: int, max_len: int
) -> str | None:
    value = params.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidActionInput(name, "required", "campo obligatorio")
        return None
    if not isinstance(value, str):
        raise InvalidActionInput(name, "string_type", "debe ser texto")
    try:
        return clean_text(value, min_len=min_len, max_len=max_len)
    except InvalidValue as exc:
        raise InvalidActionInput(name, exc.rule, exc.message) from exc


def _instant(params: dict[str, Any], name: str) -> datetime | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidActionInput(
                name,
                "datetime_format",
                "debe ser una fecha y hora (RFC 3339, ej. 2025-01-31T14:30:00-05:00)",
            ) from exc
    if not isinstance(value, datetime):
        raise InvalidActionInput(name, "datetime_type", "debe ser una fecha y hora")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidActionInput(
            name, "timezone_required", "indique la zona horaria (ej. 2025-01-31T14:30:00-05:00)"
        )
    return value


def _day(params: dict[str, Any], name: str) -> date:
    value = params.get(name)
    if value is None or value == "":
        raise InvalidActionInput(name, "required", "campo obligatorio")
    if isinstance(value, datetime):
        value = value.astimezone(TZ).date() if value.tzinfo else value.date()
    elif isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidActionInput(
                name, "date_format", "debe ser una fecha (AAAA-MM-DD, ej. 2025-01-31)"
            ) from exc
    if not isinstance(value, date):
        raise InvalidActionInput(name, "date_type", "debe ser una fecha (AAAA-MM-DD)")
    return value


def check_params(
    services: CaseServices, case: CaseRow, action: str, params: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    """The action's parameters, checked and normalised; raise naming the field and the rule."""
    clean: dict[str, Any] = {}
    if action == "classify":
        kind = params.get("kind")
        if kind is not None and kind not in KINDS:
            raise InvalidActionInput(
                "kind", "unknown_kind", "tipo desconocido; use denuncia, queja o sugerencia"
            )
        if case.anonymous and kind in ("denuncia", "queja"):
            raise InvalidActionInput(
                "kind",
                "anonymous_only_sugerencia",
                "un caso anónimo solo puede clasificarse como sugerencia",
            )
        clean["kind"] = kind
        clean["category"] = _text(params, "category", required=False, min_len=1, max_len=200)
        for name in ("rule", "route", "note", "by"):
            if isinstance(params.get(name), str):
                clean[name] = params[name]
    elif action == "start_inspection":
        clean["inspector"] = _text(params, "inspector", required=False, min_len=1, max_len=200)
        clean["scheduled_for"] = _instant(params, "scheduled_for")
    elif action == "remit":
        department = _text(params, "department", required=True, min_len=1, max_len=32)
        if services.config.department(department or "") is None:
            raise InvalidActionInput(
                "department", "unknown_department", f"departamento desconocido: {department}"
            )
        clean["department"] = department
    elif action == "record_findings":
        clean["findings"] = _text(params, "findings", required=True, min_len=3, max_len=4000)
    elif action in ("respond", "return"):
        field_name = "response" if action == "respond" else "reason"
        clean[field_name] = _text(params, field_name, required=True, min_len=3, max_len=4000)
        department = params.get("department")
        if department is not None and department != case.department:
            raise NotYourCase(str(department), case.department)
        clean["returned_by" if action == "return" else "department"] = case.department or ""
    elif action == "record_meeting_outcome":
        decision = params.get("decision")
        if decision not in DECISIONS:
            raise InvalidActionInput(
                "decision",
                "required" if decision is None else "unknown_decision",
                "indique la decisión de la reunión: accepted (aceptada), rejected (rechazada) "
                "o partially_accepted (aceptada en parte)",
            )
        meeting = _day(params, "meeting_date")
        if meeting > now.astimezone(TZ).date():
            raise InvalidActionInput(
                "meeting_date", "not_in_future", "la fecha de la reunión no puede ser futura"
            )
        if meeting < case.received_at.astimezone(TZ).date():
            raise InvalidActionInput(
                "meeting_date",
                "not_before_filing",
                "la fecha de la reunión no puede ser anterior a la recepción del caso",
            )
        clean["decision"] = decision
        clean["meeting_date"] = meeting
        clean["notes"] = _text(params, "notes", required=False, min_len=3, max_len=4000)
    elif action in ("close", "decline"):
        clean["reason"] = _text(
            params, "reason", required=action == "decline", min_len=3, max_len=4000
        )
    return clean


def _public_details(
    action: str, params: dict[str, Any], events: list[Event], case: CaseRow
) -> dict[str, Any]:
    keep: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, date):
            keep[key] = value.isoformat()
        elif value is not None and isinstance(value, str | int | bool):
            keep[key] = value
    if action == "return":
        keep["return_count"] = case.return_count
        keep["flagged"] = case.flagged
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
                category=case.category,
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
        term = services.terms.department_term(now, case.due_at)
        case.department_due_at = term.due_at
        if term.no_time_left:
            # Remitted with no working day left before the legal term's cap: a supervisor
            # must see it at once.
            case.flagged = True
        return _remitted_events(case, now)
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
        case.decision = params["decision"]
        meeting: date = params["meeting_date"]
        outcome = DECISION_TEXT[params["decision"]]
        summary = f"Reunión del {meeting.strftime('%d/%m/%Y')}: {outcome}"
        notes = params.get("notes")
        case.resolution = f"{summary}. {notes}" if notes else summary
        case.resolution_path = "meeting"
    events.append(
        CaseResolved(
            **ids,
            path=case.resolution_path,
            resolution=case.resolution or "",
            decision=case.decision,
            department=case.department,
            resolved_at=now,
            occurred_at=now,
        )
    )
    return events


def _remitted_events(case: CaseRow, now: datetime) -> list[Event]:
    """The public fact (``case.remitted.<code>``) and the department's copy with the contact."""
    citizen = case.citizen or {}
    notify = case.notify or {}
    assert case.kind is not None and case.department is not None
    assert case.department_due_at is not None
    public = CaseRemitted(
        **_ids(case),
        department=case.department,
        kind=case.kind,
        category=case.category,
        remitted_at=now,
        due_at=case.department_due_at,
        occurred_at=now,
    )
    copy = CaseRemittedToDepartment(
        **_ids(case),
        department=case.department,
        kind=case.kind,
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
    return [public, copy]


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
            case=case,
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
