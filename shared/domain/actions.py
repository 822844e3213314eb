"""The action registry: every lifecycle action, once, read by every door and page.

An :class:`ActionSpec` says everything about one action: its name (the HTTP API's), its body
(a pydantic model whose Spanish errors name the field and the rule), its row of the lifecycle
table, who may take it, its Spanish label (the timeline) and button, the console form's fields,
and the :class:`~shared.domain.case.Case` verb it calls. The API and its OpenAPI document, the
console, the router and the lifecycle machine all read :data:`REGISTRY`; nothing else lists
the actions.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.contract import Decision, Event, Kind, LongText, ShortText
from shared.domain.case import Case, CaseRecord, FollowsMain
from shared.lifecycle import OPEN_STATES, Lifecycle, State, Transition
from shared.tracking import normalize_tracking_code

# ------------------------------------------------------------------------------ who

STAFF = "staff"
SUPERVISOR = "supervisor"
PLATFORM311 = "platform311"
DEPARTMENT = "department"
DEPARTMENT_PREFIX = "department:"
#: The person who filed, proving it with the case's clave (the tracking page).
CITIZEN = "citizen"
#: The authority above the office: decides the apelación (Ley 38 de 2000).
SUPERIOR = "superior"
#: Roles that take the office's actions; supervisors may do everything staff may.
STAFF_ROLES = frozenset({STAFF, SUPERVISOR})


def role_group(role: str | None) -> str | None:
    """The role an action's ``takers`` name: ``department:vias`` is ``department``."""
    if role is not None and role.startswith(DEPARTMENT_PREFIX):
        return DEPARTMENT
    return role


# ------------------------------------------------------------------------------ bodies


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ClassifyBody(ActionBody):
    kind: Kind
    category: ShortText | None = None


class RoutedClassification(BaseModel):
    """The router's classification: a rule's result, which may leave the kind undecided."""

    kind: str | None = None
    category: str | None = None
    rule: str | None = None
    route: str | None = None
    note: str | None = None
    by: str = "router"


class StartInspectionBody(ActionBody):
    inspector: ShortText | None = None
    scheduled_for: AwareDatetime | None = None


class RemitBody(ActionBody):
    department: str = Field(min_length=1, max_length=32, description="código del departamento")


class EmptyBody(ActionBody):
    pass


class RecordFindingsBody(ActionBody):
    findings: LongText


class RespondBody(ActionBody):
    response: LongText
    #: Set by the door that stored the documents or photos sent with the answer, never typed.
    attachments: int = Field(
        default=0,
        ge=0,
        le=20,
        description="lo fija el servidor: los archivos enviados con la respuesta (multipart)",
    )


class MeetingOutcomeBody(ActionBody):
    decision: Decision
    meeting_date: date = Field(description="fecha de la reunión (AAAA-MM-DD), no futura")
    notes: LongText | None = None


class ReturnBody(ActionBody):
    reason: LongText


class CloseBody(ActionBody):
    reason: LongText | None = None


class DeclineBody(ActionBody):
    reason_code: str = Field(
        min_length=1, max_length=40, description="motivo de la lista configurada (decline_reasons)"
    )
    reason: LongText


class AddInformationBody(ActionBody):
    text: LongText = Field(description="lo que el ciudadano añade (3 a 4000 caracteres)")
    #: Set by the door that stored the photos or documents sent with it, never typed.
    attachments: int = Field(default=0, ge=0, le=20)


class ReopenBody(ActionBody):
    reason: LongText | None = Field(default=None, description="por qué no está resuelto")


class JoinBody(ActionBody):
    main: str = Field(
        min_length=9, max_length=40, description="código de seguimiento del caso principal"
    )

    @field_validator("main")
    @classmethod
    def _tracking_code(cls, value: str) -> str:
        return normalize_tracking_code(value)


class SurveyBody(ActionBody):
    score: int = Field(ge=1, le=5, description="calificación de 1 (muy mala) a 5 (muy buena)")
    comment: LongText | None = None


class RecourseBody(ActionBody):
    grounds: LongText = Field(description="por qué se recurre la decisión (3 a 4000 caracteres)")


class RecourseDecisionBody(ActionBody):
    outcome: Literal["confirm", "revoke"] = Field(
        description="confirm: la decisión se mantiene; revoke: el caso se atiende de nuevo"
    )
    reasoning: LongText = Field(description="la decisión motivada, para el ciudadano")


class ForwardBody(ActionBody):
    entity: str = Field(
        min_length=1, max_length=32, description="código de la entidad ([[entities]])"
    )
    note: LongText


# ------------------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class FormField:
    """One control of the console's form for an action."""

    name: str
    label: str
    widget: Literal["text", "textarea", "date", "select"] = "text"
    required: bool = False
    #: For a select: which list it offers (``kinds``, ``departments``, ``decisions``).
    choices: str | None = None
    #: What fills it before the user types: the case's own value, or today's date.
    prefill: Literal["case", "today"] | None = None


@dataclass(frozen=True)
class Acting:
    """The circumstances of one action: when, and which department acts (if one does)."""

    now: datetime
    department: str | None = None
    #: The other case the body names (a join's main case), or the main case a joined case
    #: follows; looked up by the service layer.
    related: CaseRecord | None = None
    #: How many cases are joined to this one (read for an action that names another case).
    followers: int = 0


@dataclass(frozen=True)
class ActionSpec:
    name: str
    body: type[BaseModel]
    transition: Transition
    #: Roles that may take it (``staff``, ``supervisor``, ``department``); a department only
    #: on a case remitted to it.
    takers: frozenset[str]
    #: Past tense, as the timeline shows it.
    label: str
    #: The console's button.
    button: str
    take: Callable[[Case, Any, Acting], list[Event]]
    fields: tuple[FormField, ...] = ()
    #: The button gives the case up (the console styles it apart).
    secondary: bool = False
    #: What the console says once a department has done it (it leaves the case's page).
    done: str | None = None
    #: Offered only on cases it fits (the console hides it elsewhere; the domain still checks).
    applies: Callable[[CaseRecord], bool] | None = None
    #: The body's field that names another case by its tracking code.
    related_field: str | None = None
    #: A case joined to a main one may take it (the rest are taken on the main case).
    while_joined: bool = False
    #: The cases joined to this one follow the step (:meth:`Case.follow`).
    followed: bool = True

    def offered_on(self, case: CaseRecord) -> bool:
        return self.applies is None or self.applies(case)

    def may(self, role: str | None) -> bool:
        return role_group(role) in self.takers

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


OPEN_BEFORE_ROUTING = (State.RECEIVED, State.CLASSIFIED)
_OFFICE = STAFF_ROLES
_DEPARTMENT = frozenset({DEPARTMENT})
_CITIZEN = frozenset({CITIZEN})
#: A recurso is filed at the front desk or by the citizen with the clave.
_FILERS = _OFFICE | _CITIZEN
#: The apelación is decided by the superior, or by the supervisor on the superior's behalf.
_SUPERIORS = frozenset({SUPERIOR, SUPERVISOR})
_DECIDED = (State.RESOLVED, State.CLOSED)
_OUTCOME = FormField("outcome", "Decisión", "select", required=True, choices="recourse_outcomes")
_REASONING = FormField("reasoning", "Decisión motivada (se envía al ciudadano)", "textarea", True)
#: Open states in the lifecycle table's order (a stable order for the machine).
_OPEN = tuple(s for s in State if s in OPEN_STATES)
_REASON = FormField("reason", "Motivo", "textarea", required=True)


def _classify(case: Case, body: ClassifyBody | RoutedClassification, acting: Acting) -> list[Event]:
    if isinstance(body, RoutedClassification):
        return case.classify(
            body.kind, body.category, acting.now, by=body.by, rule=body.rule, route=body.route
        )
    return case.classify(body.kind, body.category, acting.now)


def _record_meeting_outcome(case: Case, body: MeetingOutcomeBody, acting: Acting) -> list[Event]:
    return case.record_meeting_outcome(body.decision, body.meeting_date, body.notes, acting.now)


_SPECS: tuple[ActionSpec, ...] = (
    ActionSpec(
        name="classify",
        body=ClassifyBody,
        transition=Transition("classify", OPEN_BEFORE_ROUTING, State.CLASSIFIED),
        takers=_OFFICE,
        label="Caso clasificado",
        button="Clasificar",
        take=_classify,
        fields=(
            FormField("kind", "Tipo", "select", required=True, choices="kinds", prefill="case"),
            FormField("category", "Categoría", prefill="case"),
        ),
    ),
    ActionSpec(
        name="start_inspection",
        body=StartInspectionBody,
        transition=Transition(
            "start_inspection", (State.CLASSIFIED,), State.INSPECTION, "is_inspectable"
        ),
        takers=_OFFICE,
        label="Inspección iniciada",
        button="Iniciar inspección",
        take=lambda case, body, acting: case.start_inspection(
            body.inspector, body.scheduled_for, acting.now
        ),
        fields=(FormField("inspector", "Inspector asignado (opcional)"),),
    ),
    ActionSpec(
        name="remit",
        body=RemitBody,
        transition=Transition("remit", (State.CLASSIFIED,), State.REMITTED, "is_denuncia"),
        takers=_OFFICE,
        label="Remitido a la dependencia responsable",
        button="Remitir",
        take=lambda case, body, acting: case.remit(body.department, acting.now),
        fields=(
            FormField("department", "Dependencia", "select", required=True, choices="departments"),
        ),
    ),
    ActionSpec(
        name="add_to_agenda",
        body=EmptyBody,
        transition=Transition(
            "add_to_agenda", (State.CLASSIFIED,), State.ON_AGENDA, "is_sugerencia"
        ),
        takers=_OFFICE,
        label="Incluido en la agenda de reunión",
        button="Incluir en la agenda",
        take=lambda case, body, acting: case.add_to_agenda(acting.now),
    ),
    ActionSpec(
        name="record_findings",
        body=RecordFindingsBody,
        transition=Transition("record_findings", (State.INSPECTION,), State.RESOLVED),
        takers=_OFFICE,
        label="Hallazgos de la inspección registrados",
        button="Registrar hallazgos y resolver",
        take=lambda case, body, acting: case.record_findings(body.findings, acting.now),
        fields=(FormField("findings", "Hallazgos de la inspección", "textarea", required=True),),
    ),
    ActionSpec(
        name="respond",
        body=RespondBody,
        transition=Transition("respond", (State.REMITTED,), State.RESOLVED),
        takers=_DEPARTMENT,
        label="Respuesta de la dependencia registrada",
        button="Enviar respuesta",
        take=lambda case, body, acting: case.respond(
            body.response, acting.now, department=acting.department
        ),
        fields=(FormField("response", "Respuesta de la dependencia", "textarea", required=True),),
        done="Respuesta enviada: el caso {code} quedó resuelto.",
    ),
    ActionSpec(
        name="record_meeting_outcome",
        body=MeetingOutcomeBody,
        transition=Transition("record_meeting_outcome", (State.ON_AGENDA,), State.RESOLVED),
        takers=_OFFICE,
        label="Decisión de la reunión registrada",
        button="Registrar decisión y resolver",
        take=_record_meeting_outcome,
        fields=(
            FormField(
                "decision", "Decisión de la reunión", "select", required=True, choices="decisions"
            ),
            FormField(
                "meeting_date", "Fecha de la reunión", "date", required=True, prefill="today"
            ),
            FormField("notes", "Notas de la reunión", "textarea"),
        ),
    ),
    ActionSpec(
        name="return",
        body=ReturnBody,
        transition=Transition("return", (State.REMITTED,), State.CLASSIFIED),
        takers=_DEPARTMENT,
        label="Devuelto por la dependencia para reasignarlo",
        button="Devolver el caso",
        take=lambda case, body, acting: case.return_(
            body.reason, acting.now, department=acting.department
        ),
        fields=(_REASON,),
        secondary=True,
        done="Caso {code} devuelto al Departamento.",
    ),
    ActionSpec(
        name="close",
        body=CloseBody,
        transition=Transition("close", (State.RESOLVED,), State.CLOSED),
        takers=_OFFICE,
        label="Caso cerrado",
        button="Cerrar el caso",
        take=lambda case, body, acting: case.close(body.reason, acting.now),
    ),
    ActionSpec(
        name="decline",
        body=DeclineBody,
        transition=Transition("decline", OPEN_BEFORE_ROUTING, State.CLOSED),
        takers=_OFFICE,
        label="Caso declinado",
        button="Declinar el caso",
        take=lambda case, body, acting: case.decline(body.reason_code, body.reason, acting.now),
        fields=(
            FormField("reason_code", "Motivo", "select", required=True, choices="decline_reasons"),
            FormField("reason", "Explicación para el ciudadano", "textarea", required=True),
        ),
        secondary=True,
    ),
)

_SPECS += (
    ActionSpec(
        name="forward",
        body=ForwardBody,
        transition=Transition("forward", OPEN_BEFORE_ROUTING, State.CLOSED),
        takers=_OFFICE,
        label="Enviado a la entidad competente",
        button="Enviar a la entidad competente",
        take=lambda case, body, acting: case.forward(body.entity, body.note, acting.now),
        fields=(
            FormField("entity", "Entidad competente", "select", required=True, choices="entities"),
            FormField("note", "Nota para la entidad y el ciudadano", "textarea", required=True),
        ),
        secondary=True,
    ),
    # ---- duplicates: a case joined to a main one follows it until separated
    ActionSpec(
        name="join",
        body=JoinBody,
        transition=Transition("join", OPEN_BEFORE_ROUTING, None),
        takers=_OFFICE,
        label="Unido a otro caso como duplicado",
        button="Unir a otro caso",
        take=lambda case, body, acting: case.join(
            acting.related, acting.now, followers=acting.followers
        ),
        fields=(FormField("main", "Código del caso principal", required=True),),
        secondary=True,
        applies=lambda case: case.duplicate_of is None,
        related_field="main",
        followed=False,
    ),
    ActionSpec(
        name="separate",
        body=EmptyBody,
        transition=Transition("separate", _OPEN, None),
        takers=_OFFICE,
        label="Separado del caso principal",
        button="Separar del caso principal",
        take=lambda case, body, acting: case.separate(acting.related, acting.now),
        secondary=True,
        applies=lambda case: case.duplicate_of is not None,
        while_joined=True,
        followed=False,
    ),
    # ---- the citizen's, on the tracking page with the clave (never in the console)
    ActionSpec(
        name="add_information",
        body=AddInformationBody,
        transition=Transition("add_information", _OPEN, None),
        takers=_CITIZEN,
        label="Información añadida por el ciudadano",
        button="Añadir información",
        take=lambda case, body, acting: case.add_information(
            body.text, body.attachments, acting.now
        ),
        fields=(FormField("text", "Información adicional", "textarea", required=True),),
        while_joined=True,
        followed=False,
    ),
    ActionSpec(
        name="reopen",
        body=ReopenBody,
        transition=Transition("reopen", (State.RESOLVED, State.CLOSED), State.CLASSIFIED),
        takers=_CITIZEN,
        label="Reabierto: el ciudadano indicó que no está resuelto",
        button="No está resuelto",
        take=lambda case, body, acting: case.reopen(acting.now),
        fields=(FormField("reason", "¿Qué falta por resolver? (opcional)", "textarea"),),
    ),
    ActionSpec(
        name="answer_survey",
        body=SurveyBody,
        transition=Transition("answer_survey", (State.CLOSED,), None),
        takers=_CITIZEN,
        label="Encuesta de satisfacción respondida",
        button="Enviar encuesta",
        take=lambda case, body, acting: case.answer_survey(body.score, body.comment, acting.now),
        fields=(
            FormField("score", "Calificación (1 a 5)", "select", required=True, choices="scores"),
            FormField("comment", "Comentario (opcional)", "textarea"),
        ),
        while_joined=True,
        followed=False,
    ),
)

_SPECS += (
    # ---- recursos against the decision (Ley 38 de 2000): within the term after notification
    ActionSpec(
        name="file_reconsideration",
        body=RecourseBody,
        transition=Transition("file_reconsideration", _DECIDED, State.RECONSIDERATION),
        takers=_FILERS,
        label="Recurso de reconsideración presentado",
        button="Presentar reconsideración",
        take=lambda case, body, acting: case.file_reconsideration(acting.now),
        fields=(FormField("grounds", "Fundamentos del recurso", "textarea", required=True),),
        secondary=True,
        # Once per decision: after it is decided, only the apelación remains.
        applies=lambda case: case.recourse is None,
    ),
    ActionSpec(
        name="file_appeal",
        body=RecourseBody,
        transition=Transition("file_appeal", _DECIDED, State.APPEAL),
        takers=_FILERS,
        label="Recurso de apelación presentado",
        button="Presentar apelación",
        take=lambda case, body, acting: case.file_appeal(acting.now),
        fields=(FormField("grounds", "Fundamentos del recurso", "textarea", required=True),),
        secondary=True,
        # Directly, or after a confirmed reconsideración; a decided apelación ends the recursos.
        applies=lambda case: case.recourse != "appeal",
    ),
    ActionSpec(
        name="decide_reconsideration",
        body=RecourseDecisionBody,
        transition=Transition("decide_reconsideration", (State.RECONSIDERATION,), None),
        takers=_OFFICE,
        label="Reconsideración decidida",
        button="Decidir la reconsideración",
        take=lambda case, body, acting: case.decide_reconsideration(
            body.outcome, body.reasoning, acting.now
        ),
        fields=(_OUTCOME, _REASONING),
    ),
    ActionSpec(
        name="decide_appeal",
        body=RecourseDecisionBody,
        transition=Transition("decide_appeal", (State.APPEAL,), None),
        takers=_SUPERIORS,
        label="Apelación decidida por el superior",
        button="Decidir la apelación",
        take=lambda case, body, acting: case.decide_appeal(
            body.outcome, body.reasoning, acting.now
        ),
        fields=(_OUTCOME, _REASONING),
    ),
)

REGISTRY: Mapping[str, ActionSpec] = {spec.name: spec for spec in _SPECS}
ACTIONS: tuple[str, ...] = tuple(REGISTRY)
TRANSITIONS: tuple[Transition, ...] = tuple(spec.transition for spec in _SPECS)


def new_lifecycle() -> Lifecycle:
    """The lifecycle machine over the registry's transitions."""
    return Lifecycle(TRANSITIONS)


def may_take(role: str | None, action: str) -> bool:
    """Whether ``role`` (``None``: anonymous) may take ``action`` at all."""
    spec = REGISTRY.get(action)
    return spec is not None and spec.may(role)


def actions_of(role: str | None) -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.may(role)]


def refusal(role: str | None, action: str) -> str:
    """Why ``role`` may not take ``action``, in Spanish."""
    if role_group(role) == DEPARTMENT:
        mine = " o ".join(REGISTRY[a].button.lower() for a in actions_of(role))
        return f"un departamento solo puede {mine}, no «{action}»"
    return f"su rol ({role or 'anónimo'}) no puede aplicar «{action}»"


def allowed_for(lifecycle: Lifecycle, role: str | None, state: str, kind: str | None) -> list[str]:
    """The actions the state and kind allow that ``role`` may take, in the table's order."""
    return [a for a in lifecycle.allowed(state, kind) if may_take(role, a)]


def check_follows(spec: ActionSpec, case: CaseRecord, main: CaseRecord | None) -> None:
    """A case joined to a main one follows it: it takes only the actions marked
    ``while_joined`` (to be separated; the citizen's information and survey); any other,
    a recurso included, is refused naming the main case, where it is taken."""
    if case.duplicate_of is not None and not spec.while_joined:
        raise FollowsMain(main.tracking_code if main is not None else None)


def offered_to(lifecycle: Lifecycle, role: str | None, case: CaseRecord) -> list[str]:
    """What ``role`` is offered on this case: :func:`allowed_for`, less the actions that do not
    fit it (``applies``); a case joined to another follows its main case and offers only what
    :func:`check_follows` lets it take (staff: to separate it). The API's ``allowed_actions``
    and the console's buttons are this list."""
    return [
        a
        for a in allowed_for(lifecycle, role, case.state, case.kind)
        if REGISTRY[a].offered_on(case) and (case.duplicate_of is None or REGISTRY[a].while_joined)
    ]
