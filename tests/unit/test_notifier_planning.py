"""Who gets what (services/notifier/planning.py) and the retry schedule, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.notifier.delivery import retry_delay
from services.notifier.planning import (
    ADDRESS_MASK,
    NO_ADDRESS,
    NO_SMS_GATEWAY,
    CaseFacts,
    Planner,
    address_key,
)
from services.notifier.templates import TemplateRenderer
from shared.config import InstitutionConfig
from shared.contract import (
    CaseClosed,
    CaseForwarded,
    CaseReceived,
    CaseRemittedToDepartment,
    CaseReopened,
    CaseResolved,
    CitizenContact,
    DeadlineMissed,
    DeadlineNear,
    DueDateChanged,
    Event,
    FieldError,
    Location,
    RecourseDecided,
    RecourseFiled,
    SubmissionRejected,
)

NOW = datetime(2026, 11, 3, 14, 5, tzinfo=UTC)
DUE = NOW + timedelta(days=42)
CASE_ID = uuid.uuid4()
CODE = "D311-2026-000123"
CONFIG = InstitutionConfig.model_validate(
    {
        "institution": {"name": "Alcaldía", "supervisor_email": "sup@alcaldia.example"},
        "departments": [
            {
                "code": "aseo",
                "name": "Aseo",
                "email": "aseo@alcaldia.example",
                "supervisor_email": "jefe@alcaldia.example",
                "webhook_url": "https://aseo.example/hook?k=1",
            },
            {"code": "vias", "name": "Vías", "email": "vias@alcaldia.example"},
        ],
        "entities": [
            {
                "code": "idaan",
                "name": "IDAAN",
                "email": "atencion@idaan.example",
                "webhook_url": "https://idaan.example/hook",
            }
        ],
    }
)


def facts(**extra: Any) -> CaseFacts:
    values: dict[str, Any] = {
        "tracking_code": CODE,
        "kind": "queja",
        "category": "Basura",
        "received_at": NOW,
        "due_at": DUE,
        "citizen_name": "Ana",
        "notify": {"email": "ana@example.com"},
    }
    values.update(extra)
    return CaseFacts(**values)


def received() -> CaseReceived:
    return CaseReceived(
        case_id=CASE_ID, tracking_code=CODE, channel="web", received_at=NOW, due_at=DUE
    )


def who(event: Event, case: CaseFacts, *, sms: bool = True) -> set[tuple[str, str, str]]:
    plan = Planner(CONFIG, sms_gateway=sms).plan(event, case)
    return {(p.channel, p.recipient, p.status) for p in plan.notifications}


def test_citizen_address_order_email_then_phone_then_post() -> None:
    both = facts(notify={"email": "ana@example.com", "phone": "+50761234567"})
    assert who(received(), both) == {("email", "ana@example.com", "pending")}
    phone = facts(notify={"phone": "+50761234567"})
    assert who(received(), phone) == {("sms", "+50761234567", "pending")}
    assert who(received(), phone, sms=False) == {("sms", "+50761234567", "task")}
    post = facts(notify={"address": "Calle 50, casa 12"})
    assert who(received(), post) == {("in_person", address_key("Calle 50, casa 12"), "task")}


def test_unreachable_citizen_is_a_gap_never_silence() -> None:
    plan = Planner(CONFIG, sms_gateway=True).plan(received(), facts(notify={}, anonymous=True))
    assert plan.notifications == [] and plan.gaps == [NO_ADDRESS]
    task = Planner(CONFIG, sms_gateway=False).plan(received(), facts(notify={"phone": "+5076"}))
    assert task.notifications[0].note == NO_SMS_GATEWAY


def test_masked_recipients_carry_no_personal_data() -> None:
    plan = Planner(CONFIG, sms_gateway=True).plan(received(), facts(notify={"address": "Calle 50"}))
    (task,) = plan.notifications
    assert task.recipient_masked == ADDRESS_MASK
    assert task.context["address"] == "Calle 50"
    assert "Calle" not in task.recipient


def remitted(department: str = "aseo") -> CaseRemittedToDepartment:
    return CaseRemittedToDepartment(
        case_id=CASE_ID,
        tracking_code=CODE,
        department=department,
        kind="denuncia",
        category=None,
        description="Basura acumulada en la esquina",
        location=Location(address="Calle 50", district="Panamá"),
        citizen=CitizenContact(full_name="Ana", notify_email="ana@example.com"),
        remitted_at=NOW,
        due_at=DUE,
    )


def test_remitted_goes_to_the_department_email_and_webhook() -> None:
    assert who(remitted(), facts()) == {
        ("email", "aseo@alcaldia.example", "pending"),
        ("webhook", "https://aseo.example/hook?k=1", "pending"),
    }
    assert who(remitted("vias"), facts()) == {("email", "vias@alcaldia.example", "pending")}
    plan = Planner(CONFIG, sms_gateway=True).plan(remitted("aseo"), facts())
    mail = next(p for p in plan.notifications if p.channel == "email")
    hook = next(p for p in plan.notifications if p.channel == "webhook")
    assert hook.recipient_masked == "https://aseo.example/…"
    assert hook.context["event"]["event_type"] == "CaseRemittedToDepartment"
    assert mail.context["location"] == "Calle 50, Panamá"
    assert mail.context["category"] == "Basura"  # the case's, when the event has none
    # the context renders with the real templates
    rendered = TemplateRenderer().render(mail.template, mail.context)
    assert CODE in rendered.subject and "Aseo" in rendered.text


def test_unknown_department_is_a_gap() -> None:
    plan = Planner(CONFIG, sms_gateway=True).plan(remitted("nadie"), facts())
    assert plan.notifications == []
    assert plan.gaps == ["department not configured: nadie"]


@pytest.mark.parametrize(
    ("clock", "department", "case_department", "expected"),
    [
        ("department", "aseo", "aseo", {"aseo@alcaldia.example", "https://aseo.example/hook?k=1"}),
        ("legal", None, None, {"sup@alcaldia.example"}),
        ("legal", None, "vias", {"sup@alcaldia.example", "vias@alcaldia.example"}),
        (
            "legal",
            None,
            "aseo",
            {
                "sup@alcaldia.example",
                "jefe@alcaldia.example",
                "aseo@alcaldia.example",
                "https://aseo.example/hook?k=1",
            },
        ),
    ],
)
def test_deadline_near(
    clock: str, department: str | None, case_department: str | None, expected: set[str]
) -> None:
    event = DeadlineNear(
        case_id=CASE_ID,
        tracking_code=CODE,
        clock=clock,
        department=department,
        due_at=DUE,
        days_before=3,
    )
    plan = Planner(CONFIG, sms_gateway=True).plan(event, facts(department=case_department))
    assert {p.recipient for p in plan.notifications} == expected
    assert all(p.template == "deadline_near" for p in plan.notifications)
    for p in plan.notifications:
        if p.channel == "email":
            assert "3 días hábiles" in TemplateRenderer().render(p.template, p.context).text


def test_deadline_missed_escalates_to_supervisors_and_department() -> None:
    event = DeadlineMissed(
        case_id=CASE_ID, tracking_code=CODE, clock="department", department="vias", due_at=DUE
    )
    assert {
        p.recipient for p in Planner(CONFIG, sms_gateway=True).plan(event, facts()).notifications
    } == {
        "sup@alcaldia.example",
        "vias@alcaldia.example",
    }


def test_resolved_goes_to_the_citizen_and_rejected_to_nobody() -> None:
    event = CaseResolved(
        case_id=CASE_ID,
        tracking_code=CODE,
        path="inspection",
        resolution="Se recogió la basura.",
        resolved_at=NOW,
    )
    plan = Planner(CONFIG, sms_gateway=True).plan(event, facts())
    (mail,) = plan.notifications
    assert (mail.template, mail.recipient) == ("case_resolved", "ana@example.com")
    assert "Se recogió la basura." in TemplateRenderer().render(mail.template, mail.context).text
    rejected = SubmissionRejected(reasons=[FieldError(field="a", rule="b", message="c")])
    empty = Planner(CONFIG, sms_gateway=True).plan(rejected, facts())
    assert empty.notifications == [] and empty.gaps == []


def test_unclassified_case_receipt_still_renders() -> None:
    plan = Planner(CONFIG, sms_gateway=True).plan(received(), facts(kind=None, category=None))
    (mail,) = plan.notifications
    text = TemplateRenderer().render(mail.template, mail.context).text
    assert "ha recibido su petición" in text
    assert "None" not in text


def test_retry_delay_is_exponential_capped_and_honours_retry_after() -> None:
    assert [retry_delay(n, 2.0).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert retry_delay(40, 2.0) == timedelta(hours=1)
    assert retry_delay(1, 2.0, retry_after=30) == timedelta(seconds=30)
    assert retry_delay(5, 2.0, retry_after=3) == timedelta(seconds=32)


def test_a_body_that_is_no_event_is_poison() -> None:
    from shared.consumer import Poison, parse

    with pytest.raises(Poison, match="JSON"):
        parse(CaseReceived, b"{not json")
    with pytest.raises(Poison, match="esquema del evento CaseReceived"):
        parse(CaseReceived, b'{"event_type": "CaseReceived"}')
    assert isinstance(parse(CaseReceived, received().model_dump_json().encode()), CaseReceived)


def test_a_moved_legal_term_tells_the_citizen_and_a_moved_department_term_the_department() -> None:
    common: dict[str, Any] = {
        "case_id": CASE_ID,
        "tracking_code": CODE,
        "previous_due_at": DUE,
        "due_at": DUE + timedelta(days=1),
        "reason": "Cierre de oficinas del 04/11/2026 con suspensión de términos (Decreto X)",
        "closed_day": date(2026, 11, 4),
    }
    planner = Planner(CONFIG, sms_gateway=False)
    case = facts(notify={"email": "ana@example.com"}, department="vias")
    (citizen,) = planner.plan(DueDateChanged(clock="legal", **common), case).notifications
    assert (citizen.template, citizen.recipient) == ("due_date_changed", "ana@example.com")
    text = TemplateRenderer().render(citizen.template, citizen.context).text
    assert "Nueva fecha límite" in text and "Decreto X" in text and CODE in text
    department = planner.plan(
        DueDateChanged(clock="department", department="vias", **common), case
    ).notifications
    assert [p.template for p in department if p.channel == "email"] == ["due_date_changed"]
    rendered = TemplateRenderer().render(department[0].template, department[0].context)
    assert "Nueva fecha límite" in rendered.text and "consola" in rendered.text
    assert TemplateRenderer().render_sms(citizen.template, citizen.context)


def test_a_case_the_citizen_reopened_alerts_the_supervisors_in_spanish() -> None:
    event = CaseReopened(
        case_id=CASE_ID, tracking_code=CODE, reopened_at=NOW, due_at=DUE, department="aseo"
    )
    plan = Planner(CONFIG, sms_gateway=True).plan(event, facts())
    assert {(p.template, p.recipient) for p in plan.notifications} == {
        ("case_reopened", "sup@alcaldia.example"),
        ("case_reopened", "jefe@alcaldia.example"),
    }
    message = TemplateRenderer().render("case_reopened", plan.notifications[0].context)
    assert CODE in message.subject and "no está resuelto" in message.subject
    assert "Aseo" in message.text and "Nuevo plazo legal" in message.text
    assert "ana@example.com" not in message.text  # nothing of the citizen's


def test_a_declined_petition_tells_the_citizen_the_reason_and_the_recourse() -> None:
    event = CaseClosed(
        case_id=CASE_ID,
        tracking_code=CODE,
        declined=True,
        reason="Ya existe el caso D311-2026-000100 por el mismo hueco.",
        decline_reason="duplicada",
        decline_label="Petición duplicada de otra ya presentada",
    )
    planner = Planner(CONFIG, sms_gateway=False)
    (mail,) = planner.plan(event, facts(notify={"email": "ana@example.com"})).notifications
    assert (mail.template, mail.recipient) == ("case_declined", "ana@example.com")
    text = TemplateRenderer().render(mail.template, mail.context).text
    assert "Petición duplicada" in text and "D311-2026-000100" in text
    assert "reconsideración" in text and "apelación" in text and "5 días hábiles" in text
    # A case closed after its resolution was notified is not a decline: nobody is told again.
    closed = CaseClosed(case_id=CASE_ID, tracking_code=CODE, declined=False)
    assert planner.plan(closed, facts(notify={"email": "ana@example.com"})).notifications == []


def test_a_forwarded_petition_goes_to_the_body_and_the_citizen_learns_where() -> None:
    event = CaseForwarded(
        case_id=CASE_ID,
        tracking_code=CODE,
        entity="idaan",
        entity_name="IDAAN",
        note="Falta de agua: competencia del IDAAN.",
        forwarded_at=NOW,
        forward_due_at=NOW + timedelta(days=7),
    )
    case = facts(notify={"email": "ana@example.com"}, description="No hay agua desde el lunes.")
    plan = Planner(CONFIG, sms_gateway=False).plan(event, case)
    assert sorted((p.template, p.channel, p.recipient) for p in plan.notifications) == [
        ("case_forwarded", "email", "ana@example.com"),
        ("case_forwarded_entity", "email", "atencion@idaan.example"),
        ("case_forwarded_entity", "webhook", "https://idaan.example/hook"),
    ]
    renderer = TemplateRenderer()
    by_template = {p.template: p for p in plan.notifications if p.channel == "email"}
    citizen = renderer.render("case_forwarded", by_template["case_forwarded"].context).text
    assert "IDAAN" in citizen and CODE in citizen
    body = renderer.render(
        "case_forwarded_entity", by_template["case_forwarded_entity"].context
    ).text
    assert "No hay agua desde el lunes." in body and "ana@example.com" in body


def test_a_recurso_is_acknowledged_and_its_decision_notified_to_the_citizen() -> None:
    filed = RecourseFiled(
        case_id=CASE_ID, tracking_code=CODE, recourse="appeal", filed_at=NOW, due_at=DUE
    )
    (mail,) = Planner(CONFIG, sms_gateway=True).plan(filed, facts()).notifications
    assert (mail.template, mail.recipient) == ("recourse_filed", "ana@example.com")
    assert mail.context["decider"] == "el superior jerárquico"
    decided = RecourseDecided(
        case_id=CASE_ID,
        tracking_code=CODE,
        recourse="reconsideration",
        outcome="confirmed",
        reasoning="Se verificó la reparación.",
        decided_at=NOW,
    )
    (mail,) = Planner(CONFIG, sms_gateway=True).plan(decided, facts()).notifications
    assert (mail.template, mail.recipient) == ("recourse_decided", "ana@example.com")
    # A confirmed reconsideración leaves the apelación: its last day is in the message.
    assert mail.context["appeal_days"] == 5 and mail.context["appeal_ends"]
    text = TemplateRenderer().render(mail.template, mail.context).text
    assert "Se verificó la reparación." in text and "apelación ante el superior" in text


def test_a_recurso_term_alerts_the_supervisors_not_the_department() -> None:
    near = DeadlineNear(
        case_id=CASE_ID, tracking_code=CODE, clock="recourse", due_at=DUE, days_before=3
    )
    plan = Planner(CONFIG, sms_gateway=True).plan(near, facts(department="aseo"))
    assert {p.recipient for p in plan.notifications} == {
        "sup@alcaldia.example",
        "jefe@alcaldia.example",
    }
    text = TemplateRenderer().render("deadline_near", plan.notifications[0].context).text
    assert "plazo para decidir el recurso" in text
