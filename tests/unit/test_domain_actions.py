"""The action registry: one spec per action, who may take it, and the Spanish a person reads."""

from __future__ import annotations

import pytest

from shared.domain.actions import (
    ACTIONS,
    REGISTRY,
    TRANSITIONS,
    actions_of,
    allowed_for,
    may_take,
    new_lifecycle,
    refusal,
)
from shared.domain.case import Case
from shared.domain.labels import action_label, actor_label, timeline_text
from shared.lifecycle import IllegalTransition
from tests.factories import VALID_BODIES

OFFICE = [
    "classify",
    "start_inspection",
    "remit",
    "add_to_agenda",
    "record_findings",
    "record_meeting_outcome",
    "close",
    "decline",
    "forward",
    "join",
    "separate",
]
# Role → the actions it may take; the API and the console both ask the registry.
# A recurso is filed at the front desk (or by the citizen); the office decides the
# reconsideración, the superior (or the supervisor) the apelación.
RECURSOS = ["file_reconsideration", "file_appeal", "decide_reconsideration"]
ROLES: dict[str | None, list[str]] = {
    "staff": [*OFFICE, *RECURSOS],
    "supervisor": [*OFFICE, *RECURSOS, "decide_appeal"],
    "superior": ["decide_appeal"],
    "citizen": [
        "add_information",
        "reopen",
        "answer_survey",
        "file_reconsideration",
        "file_appeal",
    ],
    "department:vias": ["respond", "return"],
    "platform311": [],
    None: [],
}


def names(department: str) -> str:
    return {"vias": "Dirección de Mantenimiento Vial"}.get(department, department)


def test_every_action_has_one_complete_spec() -> None:
    assert list(REGISTRY) == list(ACTIONS) == [t.action for t in TRANSITIONS]
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.label and spec.button and spec.takers
        assert spec.body.model_validate(VALID_BODIES[name])  # its body accepts a valid one
        assert set(spec.field_names) <= set(spec.body.model_fields), name


def test_a_verb_exists_for_every_action() -> None:
    verbs = {name for name in vars(Case) if not name.startswith("_")}
    assert {name.rstrip("_") for name in verbs} >= set(ACTIONS)


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_may_take_exactly_its_actions(role: str | None) -> None:
    assert actions_of(role) == ROLES[role]
    for action in ACTIONS:
        assert may_take(role, action) == (action in ROLES[role])
    assert not may_take(role, "escalate")


def test_a_refusal_says_in_spanish_what_the_role_may_do() -> None:
    assert refusal("department:vias", "close") == (
        "un departamento solo puede enviar respuesta o devolver el caso, no «close»"
    )
    assert refusal("platform311", "classify") == "su rol (platform311) no puede aplicar «classify»"
    assert refusal(None, "classify") == "su rol (anónimo) no puede aplicar «classify»"


def test_allowed_actions_are_the_states_and_the_callers() -> None:
    lifecycle = new_lifecycle()
    assert allowed_for(lifecycle, "staff", "remitted", "denuncia") == ["separate"]
    assert allowed_for(lifecycle, "department:vias", "remitted", "denuncia") == [
        "respond",
        "return",
    ]
    assert allowed_for(lifecycle, "staff", "classified", "queja") == [
        "classify",
        "start_inspection",
        "decline",
        "forward",
        "join",
        "separate",
    ]


def test_a_conflict_names_only_what_the_caller_may_do() -> None:
    lifecycle = new_lifecycle()
    with pytest.raises(IllegalTransition) as refused:
        lifecycle.apply("resolved", "respond", "denuncia")
    # the citizen may reopen it; the citizen or the front desk may file a recurso
    assert refused.value.allowed == ["close", "reopen", "file_reconsideration", "file_appeal"]
    mine = refused.value.only(actions_of("department:vias"))
    assert mine.allowed == [] and str(mine).endswith("permitidas: ninguna")
    assert refused.value.only(actions_of("staff")).allowed == [
        "close",
        "file_reconsideration",
        "file_appeal",
    ]


def test_the_timeline_reads_in_spanish() -> None:
    queued = {
        "notification_id": 25,
        "event_type": "CaseReceived",
        "template": "case_received",
        "channel": "sms",
        "recipient": "6***-**67",
        "status": "task",
    }
    text = timeline_text("notification_queued", queued, names)
    assert text == (
        "Notificación programada (acuse de recibo) por mensaje de texto (SMS) a 6***-**67: "
        "tarea: llamar por teléfono al ciudadano"
    )
    for english in ("notification", "event_type", "CaseReceived", "task", "25"):
        assert english not in text
    in_person = timeline_text("notification_queued", {**queued, "channel": "in_person"}, names)
    assert in_person.endswith("por entrega en persona a 6***-**67: tarea: entregar en persona")
    remitted = timeline_text("remit", {"department": "vias", "events": ["x"]}, names)
    assert (
        remitted
        == "Remitido a la dependencia responsable (dependencia: Dirección de Mantenimiento Vial)"
    )
    assert (
        timeline_text("file", {"channel": "311"}, names)
        == "Caso registrado (canal: Plataforma 311)"
    )
    assert action_label("answer_refused") == "Respuesta de dependencia rechazada"


@pytest.mark.parametrize(
    ("actor", "label"),
    [
        ("staff", "Personal"),
        ("staff:ana", "Personal (ana)"),
        ("supervisor", "Supervisión"),
        ("router", "Enrutador automático"),
        ("notifier", "Servicio de notificaciones"),
        ("department:vias", "Dirección de Mantenimiento Vial"),
        ("platform311", "Plataforma 311"),
    ],
)
def test_actors_are_named_in_spanish(actor: str, label: str) -> None:
    assert actor_label(actor, names) == label
