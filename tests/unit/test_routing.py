"""The routing-key table: every event's key admits it, every queue binds keys of the contract,
and a delivery is refused for a type its key does not admit or a publisher it does not trust."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.contract import EVENT_TYPES, CaseResolved, DepartmentResponded
from shared.messaging import system_topology
from shared.routing import ROUTES, Identities, Refused, account_of, check, route_of, routes_of

IDS = Identities(system="defensa311", department_prefix="")
NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def answer(department: str = "obras") -> bytes:
    return (
        DepartmentResponded(
            case_id=uuid.uuid4(),
            tracking_code="D311-2026-000101",
            department=department,
            response="Respuesta del departamento.",
            occurred_at=NOW,
        )
        .model_dump_json()
        .encode()
    )


def test_every_event_type_has_a_key_and_its_own_key_admits_it() -> None:
    for name, model in EVENT_TYPES.items():
        assert routes_of(model), name
        for route in routes_of(model):
            key = route.pattern.replace("*", "obras")
            found = route_of(key)
            assert found is not None and name in found.event_types


def test_every_queue_binds_only_keys_of_the_table() -> None:
    patterns = {route.pattern for route in ROUTES}
    for spec in system_topology(["obras", "salud"]):
        for binding in spec.bindings:
            generic = ".".join("*" if w in ("obras", "salud") else w for w in binding.split("."))
            assert binding == "case.#" or generic in patterns, (spec.name, binding)


def test_a_pattern_word_matches_exactly_one_word() -> None:
    assert route_of("case.responded.obras") is not None
    assert route_of("case.responded") is None
    assert route_of("case.responded.obras.extra") is None
    assert route_of("case.responded.") is None
    assert route_of("case.unknown") is None


def test_a_department_answer_from_its_own_account_or_the_system_is_admitted() -> None:
    assert check("case.responded.obras", answer(), "dept-obras", IDS) == "DepartmentResponded"
    assert check("case.responded.obras", answer(), "defensa311", IDS) == "DepartmentResponded"
    prefixed = Identities(system="defensa311", department_prefix="t1-")
    assert check("case.responded.obras", answer(), "t1-dept-obras", prefixed)


@pytest.mark.parametrize(
    ("key", "user_id", "reason"),
    [
        ("case.responded.obras", None, "falta user_id: 'case.responded.obras' exige la cuenta"),
        ("case.responded.obras", "dept-salud", "user_id 'dept-salud' no es la cuenta 'dept-obras'"),
        ("case.returned.obras", "dept-obras", "event_type 'DepartmentResponded' no admitido"),
        ("case.resolved", "defensa311", "event_type 'DepartmentResponded' no admitido"),
        ("case.nothing", "defensa311", "clave de enrutamiento fuera del contrato"),
    ],
)
def test_a_delivery_the_table_does_not_admit_is_refused_with_its_reason(
    key: str, user_id: str | None, reason: str
) -> None:
    with pytest.raises(Refused) as refused:
        check(key, answer(), user_id, IDS)
    assert refused.value.reason.startswith(reason)


def test_a_resolution_on_a_departments_key_is_refused_whoever_sends_it() -> None:
    forged = CaseResolved(
        case_id=uuid.uuid4(),
        tracking_code="D311-2026-000101",
        path="department",
        resolution="Resuelto.",
        resolved_at=NOW,
        occurred_at=NOW,
    )
    body = forged.model_dump_json().encode()
    for user_id in ("dept-obras", "defensa311"):
        with pytest.raises(Refused, match=r"no admitido en 'case\.responded\.obras'"):
            check("case.responded.obras", body, user_id, IDS)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{no", "el cuerpo no es JSON válido"),
        (b"[1]", "el cuerpo debe ser un objeto JSON"),
        (b'{"event_type": 3}', "falta event_type o no es un texto"),
    ],
)
def test_a_body_without_a_readable_event_type_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        check("case.received", body, None, IDS)
    assert refused.value.reason == reason


def test_a_consumer_narrows_what_its_queue_admits() -> None:
    with pytest.raises(Refused, match="no es de este consumidor"):
        check("case.responded.obras", answer(), "dept-obras", IDS, consumes=("CaseReceived",))


def test_the_system_account_is_the_url_s_user() -> None:
    assert account_of("amqp://defensa311:secreto@rabbitmq:5672/defensa311") == "defensa311"
    assert account_of("amqp://a%40b:x@host/") == "a@b"
    assert account_of("amqp://host/") == "guest"
