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
    CaseFollowedMain,
    CaseForwarded,
    CaseJoined,
    CaseRemitted,
    CaseRemittedToDepartment,
    CaseReopened,
    CaseResolved,
    CaseReturnAccepted,
    CaseReturned,
    CaseSeparated,
    CitizenAddedInformation,
    CitizenContact,
    DepartmentResponded,
    Event,
    InspectionStarted,
    Location,
    RecourseDecided,
    RecourseFiled,
)
from shared.domain.clocks import Terms
from shared.lifecycle import OPEN_STATES, DomainError, Lifecycle, State
from shared.spanish import long_date

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
    due_note: str | None
    reopen_count: int
    survey_score: int | None
    survey_comment: str | None
    survey_at: datetime | None
    duplicate_of: str | None
    recourse: str | None
    recourse_filed_at: datetime | None
    recourse_due_at: datetime | None
    reconsidered_at: datetime | None


#: The recursos against a decision (Ley 38 de 2000) and what the citizen reads of each.
RECONSIDERATION = "reconsideration"
APPEAL = "appeal"
RECOURSE_NAMES = {RECONSIDERATION: "reconsideración", APPEAL: "apelación"}
#: A recurso's outcome as the bodies name it, and as the events record it.
OUTCOMES = {"confirm": "confirmed", "revoke": "revoked"}


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


class FollowsMain(InvalidActionInput):
    """An action on a case joined to a main one: the case follows its main case, where the
    actions (a recurso included) are taken."""

    def __init__(self, main_code: str | None) -> None:
        main = f"al caso principal {main_code}" if main_code else "a un caso principal"
        super().__init__(
            "case",
            "follows_main",
            f"este caso está unido {main} y sigue sus pasos: las actuaciones, los recursos "
            "incluidos, se hacen sobre el caso principal (en la oficina); si su caso es "
            "distinto, pida en la oficina que lo separen",
        )
        self.main_code = main_code


#: What a joined case mirrors of its main case: where it stands, its decision and its dates
#: (the main case's terms govern). Never the department, which holds the main case alone.
FOLLOWED_FIELDS = (
    "state",
    "due_at",
    "due_note",
    "resolved_at",
    "closed_at",
    "resolution",
    "resolution_path",
    "decision",
    "recourse",
    "recourse_filed_at",
    "recourse_due_at",
    "reconsidered_at",
)


class TermEnded(DomainError):
    """A citizen's step whose term has passed; ``ended_at`` is when it ended."""

    def __init__(self, message: str, ended_at: datetime) -> None:
        super().__init__(message)
        self.message = message
        self.ended_at = ended_at


class AlreadyAnswered(DomainError):
    """The satisfaction survey of a case is answered once."""

    def __init__(self) -> None:
        super().__init__("la encuesta de este caso ya fue respondida; gracias")


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
        return self._remitted(now, capped=term.capped)

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

    # -------------------------------------------------------------------- the citizen's

    def add_information(self, text: str, attachments: int, now: datetime) -> list[Event]:
        """The person who filed adds to an open case; the department holding it is told."""
        self._next("add_information")
        self.record.updated_at = now
        return [
            CitizenAddedInformation(
                **self._ids(),
                department=self.record.department
                if self.record.state == State.REMITTED and self.record.duplicate_of is None
                else None,
                attachments=attachments,
                occurred_at=now,
            )
        ]

    def reopen_ends(self) -> datetime | None:
        """Until when the citizen may say "no está resuelto" (None: not resolved yet)."""
        resolved_at = self.record.resolved_at
        return self._terms.reopen_ends(resolved_at) if resolved_at is not None else None

    def reopen(self, now: datetime) -> list[Event]:
        """ "No está resuelto": within the term after the resolution, the case is handled again
        from ``classified`` (to be routed anew) with a new legal term; it is flagged so the
        office sees it at once."""
        to = self._next("reopen")
        ends = self.reopen_ends()
        if ends is None:
            raise InvalidActionInput(
                "case", "not_resolved", "el caso no tiene una resolución que objetar"
            )
        if now > ends:
            raise TermEnded(
                "el plazo para indicar que el caso no está resuelto terminó el "
                f"{long_date(ends.astimezone(TZ).date())}",
                ends,
            )
        case = self.record
        disputed = case.department
        case.reopen_count = (case.reopen_count or 0) + 1
        self._handle_again(to, now)
        return [
            CaseReopened(
                **self._ids(),
                reopened_at=now,
                due_at=case.due_at,
                department=disputed,
                reopen_count=case.reopen_count,
                occurred_at=now,
            )
        ]

    def _handle_again(self, to: State, now: datetime) -> None:
        """The decision no longer stands: the case is handled again from ``to`` (classified,
        to be routed anew) with a new legal term from ``now``, flagged so the office sees it
        at once; a later decision opens its own recursos."""
        case = self.record
        case.due_at = self._terms.legal_due(now)
        case.due_note = None
        case.resolved_at = None
        case.closed_at = None
        case.resolution_path = None
        case.decision = None
        case.department = None
        case.department_due_at = None
        case.remitted_at = None
        case.recourse = None
        case.reconsidered_at = None
        case.flagged = True
        self._enter(to, now)

    # ------------------------------------------------------------ recursos (Ley 38 de 2000)

    def recourse_ends(self) -> datetime | None:
        """Until when a recurso may be filed against the standing decision (None: no decision).

        The term runs from the decision's notification: the resolution (or the closure of a
        case closed without one), or a confirmed reconsideración, from which the apelación runs.
        """
        case = self.record
        notified = case.reconsidered_at or case.resolved_at or case.closed_at
        return self._terms.appeal_ends(notified) if notified is not None else None

    def recourses_open(self) -> tuple[str, ...]:
        """The recursos the standing decision still admits (their term aside): a
        reconsideración once, then the apelación; none after the apelación was decided."""
        done = self.record.recourse
        if done == APPEAL:
            return ()
        if done == RECONSIDERATION:
            return (APPEAL,)
        return (RECONSIDERATION, APPEAL)

    def file_reconsideration(self, now: datetime) -> list[Event]:
        """The reconsideración, decided by the office that decided."""
        return self._file_recourse(RECONSIDERATION, now)

    def file_appeal(self, now: datetime) -> list[Event]:
        """The apelación, decided by the superior: directly, or after a confirmed
        reconsideración (its term then runs from that decision's notification)."""
        return self._file_recourse(APPEAL, now)

    def decide_reconsideration(self, outcome: str, reasoning: str, now: datetime) -> list[Event]:
        return self._decide_recourse(RECONSIDERATION, outcome, reasoning, now)

    def decide_appeal(self, outcome: str, reasoning: str, now: datetime) -> list[Event]:
        return self._decide_recourse(APPEAL, outcome, reasoning, now)

    def _file_recourse(self, recourse: str, now: datetime) -> list[Event]:
        """File a reconsideración or an apelación within its term; the office (or the superior)
        must decide it within ``appeal_decision_days``."""
        to = self._next(f"file_{recourse}")
        name = RECOURSE_NAMES[recourse]
        if recourse not in self.recourses_open():
            if self.record.recourse == APPEAL:
                message = (
                    "la apelación contra esta decisión ya fue decidida; no admite otro recurso"
                )
            else:
                message = (
                    "la reconsideración contra esta decisión ya fue decidida; puede presentar "
                    "la apelación"
                )
            raise InvalidActionInput("recourse", "already_decided", message)
        ends = self.recourse_ends()
        if ends is None:
            raise InvalidActionInput(
                "case", "no_decision", "el caso no tiene una decisión que recurrir"
            )
        if now > ends:
            raise TermEnded(
                f"el plazo para presentar la {name} terminó el "
                f"{long_date(ends.astimezone(TZ).date())}",
                ends,
            )
        case = self.record
        case.recourse = recourse
        case.recourse_filed_at = now
        case.recourse_due_at = self._terms.appeal_decision_due(now)
        self._enter(to, now)
        return [
            RecourseFiled(
                **self._ids(),
                recourse=recourse,
                filed_at=now,
                due_at=case.recourse_due_at,
                department=case.department,
                occurred_at=now,
            )
        ]

    def _decide_recourse(
        self, recourse: str, outcome: str, reasoning: str, now: datetime
    ) -> list[Event]:
        """Decide the pending recurso: ``confirm`` puts the case back where the decision left
        it (closed if it had been closed, else resolved); ``revoke`` handles it again from
        ``classified`` with a new legal term."""
        self._next(f"decide_{recourse}")
        if outcome not in OUTCOMES:
            raise InvalidActionInput(
                "outcome", "unknown_outcome", "resultado desconocido; use confirm o revoke"
            )
        case = self.record
        disputed = case.department
        if outcome == "confirm":
            if recourse == RECONSIDERATION:
                case.reconsidered_at = now
            self._enter(State.CLOSED if case.closed_at is not None else State.RESOLVED, now)
            new_due = None
        else:
            self._handle_again(State.CLASSIFIED, now)
            new_due = case.due_at
        return [
            RecourseDecided(
                **self._ids(),
                recourse=recourse,
                outcome=OUTCOMES[outcome],
                reasoning=reasoning,
                decided_at=now,
                due_at=new_due,
                department=disputed,
                occurred_at=now,
            )
        ]

    def answer_survey(self, score: int, comment: str | None, now: datetime) -> list[Event]:
        """The satisfaction survey of a closed case: once, 1 to 5 and an optional comment."""
        self._next("answer_survey")
        if self.record.survey_score is not None:
            raise AlreadyAnswered()
        if not 1 <= score <= 5:
            raise InvalidActionInput("score", "range_1_5", "la calificación va de 1 a 5")
        self.record.survey_score = score
        self.record.survey_comment = comment
        self.record.survey_at = now
        self.record.updated_at = now
        return []

    # -------------------------------------------------------------------- duplicates

    def join(self, main: CaseRecord | None, now: datetime, *, followers: int = 0) -> list[Event]:
        """Join this case to ``main`` (an open case, not itself joined) as a duplicate: it
        takes the main case's state and dates and follows it from now on (:meth:`follow`).
        ``followers``: how many cases are joined to this one (a main case is not joined)."""
        self._next("join")
        case = self.record
        if main is None:
            raise InvalidActionInput("main", "unknown_case", "no hay ningún caso con ese código")
        if main.id == case.id:
            raise InvalidActionInput("main", "not_itself", "un caso no se une consigo mismo")
        if main.duplicate_of is not None:
            raise InvalidActionInput(
                "main", "main_is_joined", "ese caso ya está unido a otro; únalo al principal"
            )
        if main.state not in OPEN_STATES:
            raise InvalidActionInput(
                "main", "main_not_open", "el caso principal ya no está abierto"
            )
        if case.duplicate_of is not None:
            raise InvalidActionInput("main", "already_joined", "el caso ya está unido a otro")
        if followers:
            raise InvalidActionInput(
                "main",
                "has_joined_cases",
                "otros casos están unidos a este; una al otro caso a este, o separe primero "
                "los casos unidos",
            )
        case.duplicate_of = main.id
        self._mirror(main, now)
        return [
            CaseJoined(
                **self._ids(),
                main_case_id=uuid.UUID(main.id),
                main_tracking_code=main.tracking_code,
                joined_at=now,
                state=case.state,
                due_at=case.due_at,
                occurred_at=now,
            )
        ]

    def follow(
        self,
        main: CaseRecord,
        step: str,
        now: datetime,
        *,
        step_event_id: uuid.UUID | None = None,
    ) -> list[Event]:
        """The main case took ``step``: this joined case mirrors where it now stands."""
        case = self.record
        if case.duplicate_of != main.id:
            raise InvalidActionInput("main", "not_its_main", "el caso no está unido a ese caso")
        self._mirror(main, now)
        decided = case.state not in OPEN_STATES
        return [
            CaseFollowedMain(
                **self._ids(),
                main_case_id=uuid.UUID(main.id),
                main_tracking_code=main.tracking_code,
                step=step,
                step_event_id=step_event_id,
                state=case.state,
                due_at=case.due_at,
                resolution=case.resolution if decided else None,
                occurred_at=now,
            )
        ]

    def separate(self, main: CaseRecord | None, now: datetime) -> list[Event]:
        """Undo a join: the case is handled on its own again, from ``received`` (the router
        classifies and routes it) with a new legal term from now, as a reopened case gets:
        its own term stopped while the main case's governed, and what the main case decided
        is not this case's decision."""
        self._next("separate")
        case = self.record
        if case.duplicate_of is None:
            raise InvalidActionInput("case", "not_joined", "el caso no está unido a otro")
        main_id = case.duplicate_of
        case.duplicate_of = None
        case.due_at = self._terms.legal_due(now)
        for name in FOLLOWED_FIELDS:
            if name not in ("state", "due_at"):
                setattr(case, name, None)
        case.department = None
        case.department_due_at = None
        case.remitted_at = None
        self._enter(State.RECEIVED, now)
        return [
            CaseSeparated(
                **self._ids(),
                main_case_id=uuid.UUID(main_id),
                main_tracking_code=main.tracking_code if main is not None else "",
                separated_at=now,
                due_at=case.due_at,
                occurred_at=now,
            )
        ]

    def _mirror(self, main: CaseRecord, now: datetime) -> None:
        case = self.record
        for name in FOLLOWED_FIELDS:
            setattr(case, name, getattr(main, name))
        case.department = None
        case.department_due_at = None
        case.remitted_at = None
        case.updated_at = now

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

    def _remitted(self, now: datetime, *, capped: bool = False) -> list[Event]:
        """The public fact (``case.remitted.<code>``) and the department's copy with the
        contact (``department.<code>.remitted``, a key the 311 platform does not bind)."""
        case = self.record
        citizen = case.citizen or {}
        notify = case.notify or {}
        assert case.kind is not None and case.department is not None
        assert case.department_due_at is not None
        public = CaseRemitted(
            **self._ids(),
            department=case.department,
            kind=case.kind,
            category=case.category,
            remitted_at=now,
            due_at=case.department_due_at,
            due_capped=capped,
            occurred_at=now,
        )
        copy = CaseRemittedToDepartment(
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
        return [public, copy]
