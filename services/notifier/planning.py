"""Who gets what for an event: the notifier's routing table, pure (no I/O).

============================  =================================================
The citizen's address is chosen in the order e-mail → phone (SMS through the gateway
webhook) → postal address (a task for staff to notify in person). The law requires the
notification, so nothing is silently skipped: a recipient that cannot be reached becomes a
staff task, and an event with nobody to tell returns a ``gap`` for the case's history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from services.notifier.channels import mask_email, mask_phone
from shared.config import Department, InstitutionConfig
from shared.contract import (
    CaseClosed,
    CaseFollowedMain,
    CaseForwarded,
    CaseJoined,
    CaseReceived,
    CaseRemittedToDepartment,
    CaseReopened,
    CaseResolved,
    CaseSeparated,
    DeadlineMissed,
    DeadlineNear,
    DueDateChanged,
    Event,
    Location,
    RecourseDecided,
    RecourseFiled,
)
from shared.domain.case import RECOURSE_NAMES
from shared.domain.clocks import Terms
from shared.domain.labels import STATE_LABELS, action_label

EMAIL = "email"
WEBHOOK = "webhook"
SMS = "sms"
IN_PERSON = "in_person"

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
TASK = "task"
DONE = "done"

NO_ADDRESS = "no notification address"
NO_SMS_GATEWAY = "no SMS gateway configured: notify by phone"
ADDRESS_MASK = "dirección física (ver expediente)"
KIND_FALLBACK = "petición"  # a case received before it is classified has no kind yet
#: A main case's steps its joined cases' citizens are not told of: the office's own sorting.
QUIET_STEPS = frozenset({"classify"})
#: Who decides each recurso, as the citizen reads it.
DECIDERS = {
    "reconsideration": "el Departamento que tomó la decisión",
    "appeal": "el superior jerárquico",
}


@dataclass(frozen=True)
class CaseFacts:
    """What the planner needs from the case record (read by the handler)."""

    tracking_code: str
    kind: str | None
    category: str | None
    received_at: datetime
    due_at: datetime
    anonymous: bool = False
    citizen_name: str | None = None
    notify: Mapping[str, str] = field(default_factory=dict)
    department: str | None = None
    # The petition's text (sent to another public body when the case is forwarded there).
    description: str = ""
    # What a clave link made now is bound to (shared.domain.key_link.binding_of).
    clave_binding: str = ""


@dataclass(frozen=True)
class Planned:
    """One notification to store: one row of the log, unique per (event, recipient)."""

    template: str
    channel: str
    recipient: str
    recipient_masked: str
    status: str
    context: dict[str, Any]
    note: str | None = None


@dataclass
class Plan:
    notifications: list[Planned] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # why someone who should be told is not

    def add(self, planned: Planned) -> None:
        if all(p.recipient != planned.recipient for p in self.notifications):
            self.notifications.append(planned)


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme or 'http'}://{parts.hostname or '?'}/…"


def address_key(address: str) -> str:
    """A postal address can be long; the log's unique key holds a digest of it."""
    return "address:" + hashlib.sha256(address.strip().encode("utf-8")).hexdigest()[:32]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def location_text(location: Location | None) -> str:
    if location is None:
        return ""
    parts = [location.address, location.corregimiento, location.district, location.province]
    text = ", ".join(p for p in parts if p)
    if not text and location.lat is not None and location.lon is not None:
        text = f"{location.lat:.5f}, {location.lon:.5f}"
    return text


class Planner:
    def __init__(
        self,
        config: InstitutionConfig,
        *,
        sms_gateway: bool,
        terms: Terms | None = None,
        clave_link_lifetime: timedelta | None = None,
    ) -> None:
        self._config = config
        self._sms_gateway = sms_gateway
        self._terms = terms or Terms.from_config(config)
        # None: no clave link in the receipt (no secret to sign it with).
        self._clave_link = clave_link_lifetime

    def plan(self, event: Event, case: CaseFacts) -> Plan:
        plan = Plan()
        if isinstance(event, CaseReceived):
            context = self._base(case) | {
                "received_at": _iso(event.received_at),
                "due_at": _iso(event.due_at),
                "citizen": self._citizen(case),
            }
            if self._clave_link is not None:
                # What the e-mail's link is made of; the delivery signs it as it sends, so
                # the token itself is never stored.
                context["clave_link"] = {
                    "expires_at": _iso(event.received_at + self._clave_link),
                    "binding": case.clave_binding,
                }
            self._to_citizen(plan, "case_received", case, context)
        elif isinstance(event, CaseResolved):
            department = self._config.department(event.department) if event.department else None
            context = self._base(case) | {
                "response": event.resolution,
                "received_at": _iso(case.received_at),
                "resolved_at": _iso(event.resolved_at),
                "department_name": department.name if department else None,
                "citizen": self._citizen(case),
                "appeal_days": self._config.deadlines.appeal_days,
            }
            self._to_citizen(plan, "case_resolved", case, context)
        elif isinstance(event, CaseRemittedToDepartment):
            self._remitted(plan, event, case)
        elif isinstance(event, DeadlineNear | DeadlineMissed):
            self._deadline(plan, event, case)
        elif isinstance(event, CaseClosed) and event.declined:
            context = self._base(case) | {
                "decline_label": event.decline_label or "Petición declinada",
                "reason": event.reason or "",
                "received_at": _iso(case.received_at),
                "citizen": self._citizen(case),
                "appeal_days": self._config.deadlines.appeal_days,
            }
            self._to_citizen(plan, "case_declined", case, context)
        elif isinstance(event, CaseForwarded):
            self._forwarded(plan, event, case)
        elif isinstance(event, DueDateChanged):
            self._due_changed(plan, event, case)
        elif isinstance(event, CaseReopened):
            self._reopened(plan, event, case)
        elif isinstance(event, RecourseFiled):
            self._recourse_filed(plan, event, case)
        elif isinstance(event, RecourseDecided):
            self._recourse_decided(plan, event, case)
        elif isinstance(event, CaseJoined | CaseFollowedMain | CaseSeparated):
            self._joined(plan, event, case)
        return plan

    # ---------------------------------------------------------------------------- contexts

    def _base(self, case: CaseFacts) -> dict[str, Any]:
        institution = self._config.institution
        return {
            "tracking_code": case.tracking_code,
            "kind": case.kind or KIND_FALLBACK,
            "category": case.category,
            "institution": institution.name,
            "office": institution.office,
            "public_url": institution.public_url.rstrip("/"),
            "business_days": self._config.deadlines.calendar == "business",
        }

    @staticmethod
    def _citizen(case: CaseFacts) -> dict[str, Any]:
        return {"name": None if case.anonymous else case.citizen_name}

    # -------------------------------------------------------------------------- recipients

    def _to_citizen(
        self, plan: Plan, template: str, case: CaseFacts, context: dict[str, Any]
    ) -> None:
        notify = case.notify
        if email := notify.get("email"):
            plan.add(Planned(template, EMAIL, email, mask_email(email), PENDING, context))
        elif phone := notify.get("phone"):
            if self._sms_gateway:
                plan.add(Planned(template, SMS, phone, mask_phone(phone), PENDING, context))
            else:
                plan.add(
                    Planned(template, SMS, phone, mask_phone(phone), TASK, context, NO_SMS_GATEWAY)
                )
        elif address := notify.get("address"):
            plan.add(
                Planned(
                    template,
                    IN_PERSON,
                    address_key(address),
                    ADDRESS_MASK,
                    TASK,
                    context | {"address": address},
                )
            )
        else:
            plan.gaps.append(NO_ADDRESS)

    def _to_department(
        self,
        plan: Plan,
        template: str,
        code: str | None,
        context: dict[str, Any],
        event: Event,
    ) -> None:
        department = self._config.department(code) if code else None
        if department is None:
            plan.gaps.append(f"department not configured: {code}" if code else "no department")
            return
        plan.add(
            Planned(
                template,
                EMAIL,
                str(department.email),
                mask_email(str(department.email)),
                PENDING,
                context | {"department_name": department.name},
            )
        )
        if department.webhook_url:
            plan.add(
                Planned(
                    template,
                    WEBHOOK,
                    department.webhook_url,
                    mask_url(department.webhook_url),
                    PENDING,
                    {"event": event.model_dump(mode="json")},
                )
            )

    def _supervisors(self, department: Department | None) -> list[str]:
        found: list[str] = []
        for email in (
            self._config.institution.supervisor_email,
            department.supervisor_email if department else None,
        ):
            if email and str(email) not in found:
                found.append(str(email))
        return found

    def _remitted(self, plan: Plan, event: CaseRemittedToDepartment, case: CaseFacts) -> None:
        citizen = event.citizen
        context = self._base(case) | {
            "kind": event.kind,
            "category": event.category or case.category or "Sin categoría",
            "description": event.description,
            "location": location_text(event.location),
            "department_code": event.department,
            "citizen": {
                "name": citizen.full_name,
                "email": citizen.notify_email or citizen.email,
                "phone": citizen.notify_phone or citizen.phone,
                "address": citizen.notify_address,
            },
            "received_at": _iso(case.received_at),
            "remitted_at": _iso(event.remitted_at),
            "due_at": _iso(event.due_at),
        }
        self._to_department(plan, "case_remitted", event.department, context, event)

    def _forwarded(self, plan: Plan, event: CaseForwarded, case: CaseFacts) -> None:
        context = self._base(case) | {
            "entity_name": event.entity_name,
            "note": event.note,
            "received_at": _iso(case.received_at),
            "forwarded_at": _iso(event.forwarded_at),
        }
        self._to_citizen(plan, "case_forwarded", case, context | {"citizen": self._citizen(case)})
        entity = self._config.entity(event.entity)
        if entity is None:
            plan.gaps.append(f"entity not configured: {event.entity}")
            return
        petition = context | {
            "description": case.description,
            "citizen": {
                "name": None if case.anonymous else case.citizen_name,
                "email": case.notify.get("email"),
                "phone": case.notify.get("phone"),
                "address": case.notify.get("address"),
            },
        }
        email = str(entity.email)
        plan.add(
            Planned("case_forwarded_entity", EMAIL, email, mask_email(email), PENDING, petition)
        )
        if entity.webhook_url:
            plan.add(
                Planned(
                    "case_forwarded_entity",
                    WEBHOOK,
                    entity.webhook_url,
                    mask_url(entity.webhook_url),
                    PENDING,
                    {"event": event.model_dump(mode="json")},
                )
            )

    def _due_changed(self, plan: Plan, event: DueDateChanged, case: CaseFacts) -> None:
        context = self._base(case) | {
            "clock": event.clock,
            "previous_due_at": _iso(event.previous_due_at),
            "due_at": _iso(event.due_at),
            "reason": event.reason,
        }
        # The citizen's terms: the case's and a pending recurso's.
        if event.clock in ("legal", "recourse"):
            self._to_citizen(
                plan, "due_date_changed", case, context | {"citizen": self._citizen(case)}
            )
        else:
            code = event.department or case.department
            self._to_department(plan, "due_date_changed", code, context, event)

    def _reopened(self, plan: Plan, event: CaseReopened, case: CaseFacts) -> None:
        department = self._config.department(event.department) if event.department else None
        context = self._base(case) | {
            "due_at": _iso(event.due_at),
            "department_name": department.name if department else None,
        }
        supervisors = self._supervisors(department)
        for email in supervisors:
            plan.add(Planned("case_reopened", EMAIL, email, mask_email(email), PENDING, context))
        if not supervisors:
            plan.gaps.append("no supervisor configured")

    def _recourse_filed(self, plan: Plan, event: RecourseFiled, case: CaseFacts) -> None:
        context = self._base(case) | {
            "recourse_name": RECOURSE_NAMES[event.recourse],
            "decider": DECIDERS[event.recourse],
            "filed_at": _iso(event.filed_at),
            "due_at": _iso(event.due_at),
            "citizen": self._citizen(case),
        }
        self._to_citizen(plan, "recourse_filed", case, context)

    def _recourse_decided(self, plan: Plan, event: RecourseDecided, case: CaseFacts) -> None:
        context = self._base(case) | {
            "recourse_name": RECOURSE_NAMES[event.recourse],
            "outcome": event.outcome,
            "reasoning": event.reasoning,
            "decided_at": _iso(event.decided_at),
            "due_at": _iso(event.due_at) if event.due_at else None,
            "citizen": self._citizen(case),
        }
        if event.recourse == "reconsideration" and event.outcome == "confirmed":
            # The apelación remains, within its term from this notification.
            context["appeal_days"] = self._config.deadlines.appeal_days
            context["appeal_ends"] = _iso(self._terms.appeal_ends(event.decided_at))
        self._to_citizen(plan, "recourse_decided", case, context)

    def _joined(
        self, plan: Plan, event: CaseJoined | CaseFollowedMain | CaseSeparated, case: CaseFacts
    ) -> None:
        """The citizen of a joined case hears that it was joined, each step of the main case
        (under their own tracking code) and that it was separated."""
        context = self._base(case) | {
            "main_tracking_code": event.main_tracking_code,
            "due_at": _iso(event.due_at),
            "citizen": self._citizen(case),
        }
        if isinstance(event, CaseJoined):
            context["state_label"] = STATE_LABELS.get(event.state, event.state)
            self._to_citizen(plan, "case_joined", case, context)
        elif isinstance(event, CaseSeparated):
            context["separated_at"] = _iso(event.separated_at)
            self._to_citizen(plan, "case_separated", case, context)
        elif event.step not in QUIET_STEPS:
            context |= {
                "step_label": action_label(event.step),
                "state": event.state,
                "state_label": STATE_LABELS.get(event.state, event.state),
                "resolution": event.resolution,
            }
            self._to_citizen(plan, "case_followed", case, context)

    def _deadline(self, plan: Plan, event: DeadlineNear | DeadlineMissed, case: CaseFacts) -> None:
        code = event.department or case.department
        department = self._config.department(code) if code else None
        context = self._base(case) | {
            "clock": event.clock,
            "due_at": _iso(event.due_at),
            "department_name": department.name if department else None,
        }
        if isinstance(event, DeadlineNear):
            template = "deadline_near"
            context["days_left"] = event.days_before
        else:
            template = "deadline_missed"
        # The legal and recourse terms are the office's (or the superior's): its supervisors hear.
        escalate = isinstance(event, DeadlineMissed) or event.clock in ("legal", "recourse")
        if escalate:
            supervisors = self._supervisors(department)
            for email in supervisors:
                plan.add(Planned(template, EMAIL, email, mask_email(email), PENDING, context))
            if not supervisors:
                plan.gaps.append("no supervisor configured")
        if event.clock != "recourse" and (code or not escalate):
            self._to_department(plan, template, code, context, event)
