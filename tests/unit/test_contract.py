"""Contract round-trips and the law's validation rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from shared.contract import (
    EVENT_TYPES,
    CaseReceived,
    CaseRemitted,
    CaseRemittedToDepartment,
    CaseSubmitted,
    CitizenContact,
    DeadlineNear,
    FieldError,
    SubmissionInvalid,
    SubmissionRejected,
    parse_event,
    validate_submission,
)

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

SAMPLES = {
    "CaseSubmitted": {
        "external_ref": "311-0001",
        "kind": "denuncia",
        "description": "Construcción sin permiso frente a mi casa",
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
    },
    "CaseReceived": {
        "case_id": str(uuid4()),
        "tracking_code": "2026-AAA-BBB-CCC",
        "channel": "311",
        "received_at": NOW.isoformat(),
        "due_at": NOW.isoformat(),
    },
}


def test_every_event_type_is_registered_with_its_name() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.model_fields["event_type"].default == name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_through_json(name: str) -> None:
    event = EVENT_TYPES[name].model_validate(SAMPLES[name])
    again = parse_event(event.model_dump_json())
    assert again == event
    body = json.loads(event.model_dump_json())
    assert {"event_id", "event_type", "occurred_at", "schema_version"} <= body.keys()
    assert body["occurred_at"].endswith("Z") or "+" in body["occurred_at"]


def test_routing_keys() -> None:
    ids = {"case_id": uuid4(), "tracking_code": "2026-AAA-BBB-CCC"}
    remitted = CaseRemitted(
        **ids,
        department="obras",
        kind="denuncia",
        category=None,
        remitted_at=NOW,
        due_at=NOW,
    )
    assert remitted.routing_key() == "case.remitted.obras"
    copy = CaseRemittedToDepartment(
        **ids,
        department="obras",
        kind="denuncia",
        category=None,
        description="x" * 20,
        citizen=CitizenContact(),
        remitted_at=NOW,
        due_at=NOW,
    )
    assert copy.routing_key() == "department.obras.remitted"
    assert CaseReceived(**ids, channel="web", received_at=NOW, due_at=NOW).routing_key() == (
        "case.received"
    )
    near = DeadlineNear(**ids, clock="legal", due_at=NOW, days_before=3)
    assert near.routing_key() == "deadline.near"
    reasons = [FieldError(field="department", rule="x", message="y")]
    assert SubmissionRejected(reasons=reasons).routing_key() == "case.rejected"
    assert SubmissionRejected(reasons=reasons, department="aseo").routing_key() == (
        "case.rejected.aseo"
    )


def test_naive_occurred_at_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_event(
            json.dumps(
                {
                    **SAMPLES["CaseReceived"],
                    "event_type": "CaseReceived",
                    "event_id": str(uuid4()),
                    "occurred_at": "2026-11-27T10:00:00",
                }
            )
        )


def _fields(exc: SubmissionInvalid) -> dict[str, str]:
    return {e.field: e.rule for e in exc.errors}


def test_denuncia_needs_name_cedula_and_notification_address() -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(
            {"external_ref": "r1", "kind": "denuncia", "description": "una denuncia larga"},
            CaseSubmitted,
        )
    fields = _fields(caught.value)
    assert fields["citizen.full_name"] == "required_for_kind"
    assert fields["citizen.id_number"] == "required_for_kind"
    assert fields["notify"] == "notification_address_required"
    assert all(e.message for e in caught.value.errors)


def test_anonymous_sugerencia_is_accepted() -> None:
    submission = validate_submission(
        {"kind": "sugerencia", "description": "Más bancas en el parque", "anonymous": True}
    )
    assert submission.anonymous


def test_anonymous_queja_is_refused() -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(
            {"kind": "queja", "description": "Mala atención en caja", "anonymous": True}
        )
    assert _fields(caught.value)["anonymous"] == "anonymous_only_sugerencia"


def test_every_failing_field_is_named_with_its_rule() -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(
            {
                "external_ref": "r2",
                "kind": "reclamo",
                "description": "corta",
                "citizen": {"id_number": "99-1-1", "email": "no-es-correo"},
                "location": {"lat": 40.7, "lon": -74.0},
            },
            CaseSubmitted,
        )
    fields = _fields(caught.value)
    assert {"kind", "description", "citizen.id_number", "citizen.email", "location"} <= set(fields)
    messages = " ".join(e.message for e in caught.value.errors)
    assert "denuncia" in messages  # the allowed kinds are named, in Spanish


def test_description_length_counts_after_trimming() -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission({"kind": "sugerencia", "anonymous": True, "description": "   corto   "})
    assert "description" in _fields(caught.value)
    long_enough = validate_submission(
        {"kind": "sugerencia", "anonymous": True, "description": "  " + "a" * 10 + "  "}
    )
    assert long_enough.description == "a" * 10


def _denuncia(citizen: dict[str, object]) -> dict[str, object]:
    return {
        "kind": "denuncia",
        "description": "Denuncia de prueba con la descripción suficiente.",
        "citizen": citizen,
        "notify": {"email": "ana@example.com"},
    }


def test_a_foreigner_may_file_a_denuncia_with_a_passport() -> None:
    submission = validate_submission(
        _denuncia({"full_name": "Ann Lee", "id_type": "pasaporte", "id_number": "x123 4567"})
    )
    assert submission.citizen is not None and submission.citizen.id_number == "X1234567"


def test_a_juridical_person_files_with_its_ruc_dv_and_legal_representative() -> None:
    citizen = {
        "full_name": "Comercial Ejemplo, S.A.",
        "id_type": "ruc",
        "id_number": "155587169-2-2014",
        "ruc_dv": "09",
        "representative": {"full_name": "Ana Ruiz", "id_number": "8-123-4567"},
    }
    submission = validate_submission(_denuncia(citizen))
    assert submission.citizen is not None and submission.citizen.representative is not None
    missing = {k: v for k, v in citizen.items() if k not in ("ruc_dv", "representative")}
    with pytest.raises(SubmissionInvalid) as info:
        validate_submission(_denuncia(missing))
    assert {(e.field, e.rule) for e in info.value.errors} == {
        ("citizen.ruc_dv", "required_for_ruc"),
        ("citizen.representative", "required_for_ruc"),
    }


def test_a_denuncia_without_a_document_cites_the_duty_to_identify_oneself() -> None:
    with pytest.raises(SubmissionInvalid) as info:
        validate_submission(_denuncia({"full_name": "Ana Ruiz"}))
    (error,) = info.value.errors
    assert error.field == "citizen.id_number"
    assert "identifíquese debidamente" in error.message and "art. 65" in error.message


def test_a_ruc_whose_dv_is_not_its_own_is_refused_naming_the_dv() -> None:
    citizen = {
        "full_name": "Comercial Ejemplo, S.A.",
        "id_type": "ruc",
        "id_number": "253-92-57027",
        "ruc_dv": "23",
        "representative": {"full_name": "Ana Ruiz", "id_number": "8-123-4567"},
    }
    with pytest.raises(SubmissionInvalid) as info:
        validate_submission(_denuncia(citizen))
    assert {(e.field, e.rule) for e in info.value.errors} == {("citizen.ruc_dv", "ruc_dv_mismatch")}
    assert validate_submission(_denuncia(citizen | {"ruc_dv": "76"})).citizen is not None
