"""The event contract (DESIGN §4): pydantic models are the source of truth.

Every event carries the envelope (``event_id``, ``event_type``, ``occurred_at``,
``schema_version``) plus its own fields, and knows its routing key. Events carry the
least personal data that does the job: only ``CaseSubmitted`` (311 → intake) and
``CaseRemittedToDepartment`` (→ the department) hold a citizen's contact details.

Every event the system publishes under ``case.`` is a public projection (state, dates, tracking
code, the 311 ticket); the department's copy of a remitted case, with the description and the
contact, travels on ``department.<code>.remitted``, a key only that department's queue and the
notifier bind. The 311 platform's queue binds the public keys one by one
(:data:`shared.messaging.PLATFORM311`), so it can never match the department's copy.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from shared.validation import (
    check_in_panama,
    clean_text,
    normalize_dv,
    normalize_email,
    normalize_identity,
    normalize_phone,
    ruc_dv_matches,
    spanish_errors,
)

SCHEMA_VERSION = 1
EXCHANGE = "defensa311"

Kind = Literal["denuncia", "queja", "sugerencia"]
Channel = Literal["presencial", "web", "311"]
Clock = Literal["legal", "department", "recourse"]
Decision = Literal["accepted", "rejected", "partially_accepted"]
KINDS: tuple[str, ...] = ("denuncia", "queja", "sugerencia")


def _description(value: str) -> str:
    return clean_text(value, min_len=10, max_len=4000)


def _short_text(value: str) -> str:
    return clean_text(value, min_len=1, max_len=200, multiline=False)


def _reason(value: str) -> str:
    return clean_text(value, min_len=3, max_len=4000)


Description = Annotated[str, AfterValidator(_description)]
ShortText = Annotated[str, AfterValidator(_short_text)]
LongText = Annotated[str, AfterValidator(_reason)]
Phone = Annotated[str, AfterValidator(normalize_phone)]
Email = Annotated[str, AfterValidator(normalize_email)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


IdType = Literal["cedula", "pasaporte", "ruc"]


def _identity(value: str, info: ValidationInfo) -> str:
    # ``id_type`` is declared before ``id_number``: pydantic has validated it already.
    return normalize_identity(str(info.data.get("id_type") or "cedula"), value)


IdNumber = Annotated[str, AfterValidator(_identity)]


class Representative(_Strict):
    """The legal representative of a juridical person (name and document)."""

    full_name: ShortText
    id_type: Literal["cedula", "pasaporte"] = "cedula"
    id_number: IdNumber


class Citizen(_Strict):
    """Who files: a natural person (cédula or passport) or a juridical one (RUC with its DV and
    its legal representative). ``full_name`` is the person's or the company's name."""

    full_name: ShortText | None = None
    id_type: IdType = "cedula"
    id_number: IdNumber | None = None
    ruc_dv: Annotated[str, AfterValidator(normalize_dv)] | None = None
    representative: Representative | None = None
    phone: Phone | None = None
    email: Email | None = None


class Notify(_Strict):
    """Where the citizen receives notifications (the office's rule for a non-anonymous petition)."""

    email: Email | None = None
    phone: Phone | None = None
    address: Annotated[str, AfterValidator(_reason)] | None = None

    def is_empty(self) -> bool:
        return not (self.email or self.phone or self.address)


class Location(_Strict):
    province: ShortText | None = None
    district: ShortText | None = None
    corregimiento: ShortText | None = None
    address: Annotated[str, AfterValidator(_reason)] | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _inside_panama(self) -> Location:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat y lon deben indicarse juntas")
        if self.lat is not None and self.lon is not None:
            check_in_panama(self.lat, self.lon)
        return self


class Submission(_Strict):
    """What a citizen files, whatever the door (HTTP, 311 over AMQP, Open311)."""

    kind: Kind | None = None
    category: ShortText | None = None
    description: Description
    citizen: Citizen | None = None
    notify: Notify | None = None
    location: Location | None = None
    anonymous: bool = False


class FieldError(BaseModel):
    field: str
    rule: str
    message: str


def law_errors(submission: Submission) -> list[FieldError]:
    """The rules above the field formats: Ley 38 art. 65 and the office's notification rule."""
    errors: list[FieldError] = []
    citizen = submission.citizen or Citizen()
    if submission.anonymous and submission.kind in ("denuncia", "queja"):
        errors.append(
            FieldError(
                field="anonymous",
                rule="anonymous_only_sugerencia",
                message="solo una sugerencia puede presentarse de forma anónima",
            )
        )
    if submission.kind in ("denuncia", "queja"):
        # Ley 38 de 2000, art. 65: the denunciante must "identify himself duly" (any document);
        # the office asks the same of a queja (no anonymous complaints).
        why = " (Ley 38 de 2000, art. 65)" if submission.kind == "denuncia" else ""
        if not citizen.full_name:
            errors.append(
                FieldError(
                    field="citizen.full_name",
                    rule="required_for_kind",
                    message=f"campo obligatorio para una {submission.kind}{why}",
                )
            )
        if not citizen.id_number:
            errors.append(
                FieldError(
                    field="citizen.id_number",
                    rule="required_for_kind",
                    message=(
                        f"identifíquese debidamente: indique su documento de identidad (cédula, "
                        f"pasaporte o RUC) para una {submission.kind}{why}"
                    ),
                )
            )
    errors += _juridical_errors(citizen)
    if not submission.anonymous and (submission.notify is None or submission.notify.is_empty()):
        errors.append(
            FieldError(
                field="notify",
                rule="notification_address_required",
                message=(
                    "indique al menos un lugar donde recibir notificaciones "
                    "(correo, teléfono o dirección); solo una sugerencia anónima puede omitirlo"
                ),
            )
        )
    return errors


def _juridical_errors(citizen: Citizen) -> list[FieldError]:
    """A RUC comes with its DV and the legal representative; neither goes with another document."""
    errors: list[FieldError] = []
    if citizen.id_type == "ruc":
        if citizen.id_number and not citizen.ruc_dv:
            errors.append(
                FieldError(
                    field="citizen.ruc_dv",
                    rule="required_for_ruc",
                    message="indique el dígito verificador (DV) del RUC",
                )
            )
        elif (
            citizen.id_number
            and citizen.ruc_dv is not None
            and not ruc_dv_matches(citizen.id_number, citizen.ruc_dv)
        ):
            errors.append(
                FieldError(
                    field="citizen.ruc_dv",
                    rule="ruc_dv_mismatch",
                    message=(
                        "el dígito verificador (DV) no corresponde a ese RUC: revise el RUC y "
                        "el DV tal como figuran en el aviso de operación o en la DGI"
                    ),
                )
            )
        if citizen.id_number and citizen.representative is None:
            errors.append(
                FieldError(
                    field="citizen.representative",
                    rule="required_for_ruc",
                    message=(
                        "una persona jurídica presenta por medio de su representante legal: "
                        "indique su nombre y documento"
                    ),
                )
            )
    else:
        for name, value in (("ruc_dv", citizen.ruc_dv), ("representative", citizen.representative)):
            if value is not None:
                errors.append(
                    FieldError(
                        field=f"citizen.{name}",
                        rule="only_for_ruc",
                        message="solo corresponde a una persona jurídica (documento RUC)",
                    )
                )
    return errors


def validate_submission(data: Any, model: type[Submission] = Submission) -> Submission:
    """Validate formats and the law; raise :class:`SubmissionInvalid` naming every field."""
    try:
        submission = model.model_validate(data)
    except ValidationError as exc:
        errors = [FieldError(**e) for e in spanish_errors(exc)]
        raise SubmissionInvalid(with_law_errors(errors, data)) from exc
    errors = law_errors(submission)
    if errors:
        raise SubmissionInvalid(errors)
    return submission


def with_law_errors(errors: list[FieldError], data: Any) -> list[FieldError]:
    """Format errors plus the law's rules on the raw body, so one answer names every field."""
    named = {e.field for e in errors}
    return errors + [e for e in law_errors(_lenient(data)) if e.field not in named]


def _lenient(data: Any) -> Submission:
    """What the law's checks need from a body that failed format validation."""
    data = data if isinstance(data, dict) else {}
    citizen = data.get("citizen") if isinstance(data.get("citizen"), dict) else {}
    notify = data.get("notify") if isinstance(data.get("notify"), dict) else {}
    kind = data.get("kind") if data.get("kind") in KINDS else None
    return Submission.model_construct(
        description="",
        kind=kind,
        anonymous=data.get("anonymous") is True,
        citizen=Citizen.model_construct(
            full_name=citizen.get("full_name"),
            id_type="ruc" if citizen.get("id_type") == "ruc" else "cedula",
            id_number=citizen.get("id_number"),
            ruc_dv=citizen.get("ruc_dv"),
            representative=citizen.get("representative"),
        ),
        notify=Notify.model_construct(
            email=notify.get("email"), phone=notify.get("phone"), address=notify.get("address")
        ),
    )


class SubmissionInvalid(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


# ---------------------------------------------------------------------------- events


class Event(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION

    routing_prefix: ClassVar[str] = ""

    def routing_key(self) -> str:
        return self.routing_prefix


class CaseEvent(Event):
    case_id: UUID
    tracking_code: str


class CaseSubmitted(Event, Submission):
    """311 → intake. ``external_ref`` is the 311 ticket."""

    event_type: Literal["CaseSubmitted"] = "CaseSubmitted"
    external_ref: ShortText
    routing_prefix: ClassVar[str] = "case.submitted"


class CaseReceived(CaseEvent):
    event_type: Literal["CaseReceived"] = "CaseReceived"
    external_ref: str | None = None
    channel: Channel
    kind: Kind | None = None
    category: str | None = None
    received_at: AwareDatetime
    due_at: AwareDatetime
    routing_prefix: ClassVar[str] = "case.received"


class CaseClassified(CaseEvent):
    event_type: Literal["CaseClassified"] = "CaseClassified"
    kind: Kind | None
    category: str | None
    rule: str | None = None
    route: str | None = None
    by: str
    routing_prefix: ClassVar[str] = "case.classified"


class InspectionStarted(CaseEvent):
    event_type: Literal["InspectionStarted"] = "InspectionStarted"
    inspector: str | None = None
    scheduled_for: AwareDatetime | None = None
    routing_prefix: ClassVar[str] = "case.inspection"


class CitizenContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: str | None = None
    id_type: str | None = None
    id_number: str | None = None
    ruc_dv: str | None = None
    representative: dict[str, str] | None = None
    phone: str | None = None
    email: str | None = None
    notify_email: str | None = None
    notify_phone: str | None = None
    notify_address: str | None = None


class AttachmentLink(BaseModel):
    """A link to one of the case's attachments that stops working at ``expires_at``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    media_type: str
    url: str
    expires_at: AwareDatetime


class CaseRemitted(CaseEvent):
    """The public fact that a case was remitted: who must answer, and by when (no personal data)."""

    event_type: Literal["CaseRemitted"] = "CaseRemitted"
    department: str
    kind: Kind
    category: str | None
    remitted_at: AwareDatetime
    #: The department's due date: its own term, capped by the legal due date less the margin.
    due_at: AwareDatetime
    #: True when the legal due date capped the department's own term.
    due_capped: bool = False

    def routing_key(self) -> str:
        return f"case.remitted.{self.department}"


class CaseRemittedToDepartment(CaseEvent):
    """The department's copy of a remitted case: what it needs to act, the citizen's contact
    included. Published on a key only the department's queue (and the notifier) binds."""

    event_type: Literal["CaseRemittedToDepartment"] = "CaseRemittedToDepartment"
    department: str
    kind: Kind
    category: str | None
    description: str
    location: Location | None = None
    citizen: CitizenContact
    remitted_at: AwareDatetime
    #: The department's due date: its own term, capped by the legal due date less the margin.
    due_at: AwareDatetime
    #: True when the legal due date capped the department's own term.
    due_capped: bool = False
    #: The case's photos and documents as expiring links, never their bytes.
    attachments: list[AttachmentLink] = Field(default_factory=list)

    def routing_key(self) -> str:
        return department_remitted_key(self.department)


def department_remitted_key(department: str) -> str:
    return f"department.{department}.remitted"


class DepartmentResponded(CaseEvent):
    event_type: Literal["DepartmentResponded"] = "DepartmentResponded"
    department: str
    response: LongText

    def routing_key(self) -> str:
        return f"case.responded.{self.department}"


class CaseReturned(CaseEvent):
    event_type: Literal["CaseReturned"] = "CaseReturned"
    department: str
    reason: LongText
    flagged: bool = False

    def routing_key(self) -> str:
        return f"case.returned.{self.department}"


class CaseReturnAccepted(CaseEvent):
    """The system accepted a department's return (``CaseReturned``): the case is no longer
    that department's and waits to be routed again; ``flagged`` once returned twice."""

    event_type: Literal["CaseReturnAccepted"] = "CaseReturnAccepted"
    department: str
    reason: str
    flagged: bool = False
    routing_prefix: ClassVar[str] = "case.return_accepted"


class CaseAddedToAgenda(CaseEvent):
    event_type: Literal["CaseAddedToAgenda"] = "CaseAddedToAgenda"
    routing_prefix: ClassVar[str] = "case.on_agenda"


class CaseResolved(CaseEvent):
    event_type: Literal["CaseResolved"] = "CaseResolved"
    path: Literal["inspection", "department", "meeting"]
    resolution: str
    decision: Decision | None = None
    department: str | None = None
    resolved_at: AwareDatetime
    routing_prefix: ClassVar[str] = "case.resolved"


class CaseClosed(CaseEvent):
    event_type: Literal["CaseClosed"] = "CaseClosed"
    declined: bool = False
    reason: str | None = None
    #: A declined case: the configured reason's code and label (the citizen is told both).
    decline_reason: str | None = None
    decline_label: str | None = None
    routing_prefix: ClassVar[str] = "case.closed"


class CitizenAddedInformation(CaseEvent):
    """The person who filed added information to an open case (with their clave).

    It carries no text: what the citizen wrote may hold personal data. Staff and the
    department read it on the case's timeline (console, API).
    """

    event_type: Literal["CitizenAddedInformation"] = "CitizenAddedInformation"
    #: The department holding the case, if it is remitted; else the office alone is told.
    department: str | None = None
    attachments: int = 0
    routing_prefix: ClassVar[str] = "case.information"

    def routing_key(self) -> str:
        return f"case.information.{self.department or 'office'}"


class CaseReopened(CaseEvent):
    """The citizen said "no está resuelto" within the term: the case is handled again.

    A new legal term runs from ``reopened_at`` (``due_at``); the office is alerted.
    """

    event_type: Literal["CaseReopened"] = "CaseReopened"
    reopened_at: AwareDatetime
    due_at: AwareDatetime
    #: The department whose answer the citizen disputes, if the case was remitted.
    department: str | None = None
    reopen_count: int = 1
    routing_prefix: ClassVar[str] = "case.reopened"


#: The recursos against a decision (Ley 38 de 2000): decided by the office that decided
#: (reconsideración) or by its superior (apelación).
Recourse = Literal["reconsideration", "appeal"]


class RecourseFiled(CaseEvent):
    """A reconsideración or an apelación filed within its term against the case's decision.

    It carries no text: the grounds may hold personal data (staff read them on the timeline).
    The office or the superior must decide it by ``due_at``.
    """

    event_type: Literal["RecourseFiled"] = "RecourseFiled"
    recourse: Recourse
    filed_at: AwareDatetime
    due_at: AwareDatetime
    #: The department whose answer is contested, if the case had been remitted.
    department: str | None = None
    routing_prefix: ClassVar[str] = "case.recourse_filed"


class RecourseDecided(CaseEvent):
    """A recurso decided: ``confirmed`` (the decision stands; the case is resolved or closed
    again) or ``revoked`` (the case is handled again from ``classified`` with a new legal term,
    ``due_at``)."""

    event_type: Literal["RecourseDecided"] = "RecourseDecided"
    recourse: Recourse
    outcome: Literal["confirmed", "revoked"]
    #: The reasoned decision, written by the office or the superior for the citizen.
    reasoning: str
    decided_at: AwareDatetime
    #: The new legal due date of a revoked decision (None when confirmed).
    due_at: AwareDatetime | None = None
    department: str | None = None
    routing_prefix: ClassVar[str] = "case.recourse_decided"


class CaseForwarded(CaseEvent):
    """The petition belongs to another public body: sent there, and the case closed here."""

    event_type: Literal["CaseForwarded"] = "CaseForwarded"
    entity: str
    entity_name: str
    note: str
    forwarded_at: AwareDatetime
    #: The last day it should have been forwarded (``[deadlines] forward_days`` after filing).
    forward_due_at: AwareDatetime
    late: bool = False
    routing_prefix: ClassVar[str] = "case.forwarded"


class CaseJoined(CaseEvent):
    """Staff joined this case to a main case that reports the same thing (a duplicate).

    From now on the case follows its main case (``CaseFollowedMain``): it is not routed or
    remitted on its own, its own legal clock stops (the main case's governs) and its citizen
    is told each step of the main case. ``state`` is where the main case stands.
    """

    event_type: Literal["CaseJoined"] = "CaseJoined"
    main_case_id: UUID
    main_tracking_code: str
    joined_at: AwareDatetime
    state: str
    #: The main case's legal due date, which governs the joined case while it follows.
    due_at: AwareDatetime
    routing_prefix: ClassVar[str] = "case.joined"


class CaseFollowedMain(CaseEvent):
    """A joined case took a step of its main case: its state and dates mirror the main's.

    ``step`` names what the main case went through: a lifecycle action of the registry
    (``remit``, ``respond``, ``reopen``, ``decide_appeal``…) or ``due_date_changed`` (a closure
    by decree moved the main case's term); ``step_event_id`` is the main case's event that
    carried it. ``resolution`` is the main case's outcome once it has one (the same text
    ``CaseResolved`` carries).
    """

    event_type: Literal["CaseFollowedMain"] = "CaseFollowedMain"
    main_case_id: UUID
    main_tracking_code: str
    step: str
    step_event_id: UUID | None = None
    state: str
    due_at: AwareDatetime
    resolution: str | None = None
    routing_prefix: ClassVar[str] = "case.followed"


class CaseSeparated(CaseEvent):
    """Staff separated a joined case from its main case: it is handled on its own again.

    It starts over from ``received`` (the router classifies and routes it) with a new legal
    term from the separation (``due_at``), like a reopened case.
    """

    event_type: Literal["CaseSeparated"] = "CaseSeparated"
    main_case_id: UUID
    main_tracking_code: str
    separated_at: AwareDatetime
    due_at: AwareDatetime
    routing_prefix: ClassVar[str] = "case.separated"


class SubmissionRejected(Event):
    """A submission or a department's message refused, with every reason."""

    event_type: Literal["SubmissionRejected"] = "SubmissionRejected"
    external_ref: str | None = None
    refused_event_id: str | None = None
    department: str | None = None
    case_id: UUID | None = None
    tracking_code: str | None = None
    reasons: list[FieldError]
    routing_prefix: ClassVar[str] = "case.rejected"

    def routing_key(self) -> str:
        # A department's refused answer goes back to that department's queue.
        return f"case.rejected.{self.department}" if self.department else self.routing_prefix


class DeadlineNear(CaseEvent):
    event_type: Literal["DeadlineNear"] = "DeadlineNear"
    clock: Clock
    department: str | None = None
    due_at: AwareDatetime
    days_before: int
    routing_prefix: ClassVar[str] = "deadline.near"


class DeadlineMissed(CaseEvent):
    event_type: Literal["DeadlineMissed"] = "DeadlineMissed"
    clock: Clock
    department: str | None = None
    due_at: AwareDatetime
    routing_prefix: ClassVar[str] = "deadline.missed"


class DueDateChanged(CaseEvent):
    """A term of the case moved: a day closed by decree with terms suspended fell within it.

    The deadlines service moves the clock and its alerts; the notifier tells the citizen (legal
    term) and the department (its term) the new date and why.
    """

    event_type: Literal["DueDateChanged"] = "DueDateChanged"
    clock: Clock
    department: str | None = None
    previous_due_at: AwareDatetime
    due_at: AwareDatetime
    #: Why, in Spanish, naming the decree (shown to the citizen as is).
    reason: LongText
    closed_day: date
    routing_prefix: ClassVar[str] = "deadline.changed"


class NotificationFailed(CaseEvent):
    event_type: Literal["NotificationFailed"] = "NotificationFailed"
    notification_id: str
    channel: str
    reason: str
    routing_prefix: ClassVar[str] = "case.notification_failed"


AnyEvent = Annotated[
    CaseSubmitted
    | CaseReceived
    | CaseClassified
    | InspectionStarted
    | CaseRemitted
    | CaseRemittedToDepartment
    | DepartmentResponded
    | CaseReturned
    | CaseReturnAccepted
    | CaseAddedToAgenda
    | CaseResolved
    | CaseClosed
    | CitizenAddedInformation
    | CaseReopened
    | RecourseFiled
    | RecourseDecided
    | CaseForwarded
    | CaseJoined
    | CaseFollowedMain
    | CaseSeparated
    | SubmissionRejected
    | DeadlineNear
    | DeadlineMissed
    | DueDateChanged
    | NotificationFailed,
    Field(discriminator="event_type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (
        CaseSubmitted,
        CaseReceived,
        CaseClassified,
        InspectionStarted,
        CaseRemitted,
        CaseRemittedToDepartment,
        DepartmentResponded,
        CaseReturned,
        CaseReturnAccepted,
        CaseAddedToAgenda,
        CaseResolved,
        CaseClosed,
        CitizenAddedInformation,
        CaseReopened,
        RecourseFiled,
        RecourseDecided,
        CaseForwarded,
        CaseJoined,
        CaseFollowedMain,
        CaseSeparated,
        SubmissionRejected,
        DeadlineNear,
        DeadlineMissed,
        DueDateChanged,
        NotificationFailed,
    )
}

_any_event: TypeAdapter[Any] = TypeAdapter(AnyEvent)


def parse_event(body: bytes | str) -> Event:
    """Parse any known event from JSON; raises ``ValidationError`` on a bad body."""
    event: Event = _any_event.validate_json(body)
    return event
