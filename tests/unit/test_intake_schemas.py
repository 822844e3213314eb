"""Property tests over the validators, through the API's own request schemas."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.api.schemas import FilingRequest, filing_errors
from shared.domain.actions import REGISTRY, ClassifyBody, MeetingOutcomeBody
from shared.validation import PANAMA_BOUNDS, control_character, spanish_errors

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

provinces = st.integers(1, 13).map(str)
folio = st.integers(1, 9999).map(str)
asiento = st.integers(1, 999999).map(str)
cedulas = st.one_of(
    st.tuples(provinces, folio, asiento).map("-".join),
    st.tuples(st.sampled_from(["PE", "E", "N"]), folio, asiento).map("-".join),
    st.tuples(provinces, st.sampled_from(["AV", "PI"]), folio, asiento).map(
        lambda t: f"{t[0]}{t[1]}-{t[2]}-{t[3]}"
    ),
)
mobile = st.integers(6000_0000, 6999_9999).map(lambda n: f"{str(n)[:4]}-{str(n)[4:]}")
emails = st.tuples(
    st.from_regex(r"[a-z][a-z0-9.]{0,15}[a-z0-9]", fullmatch=True),
    st.sampled_from(["example.com", "correo.pa", "alcaldia.gob.pa"]),
).map(lambda t: f"{re.sub(r'[.]+', '.', t[0])}@{t[1]}")
descriptions = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=10,
    max_size=300,
).filter(lambda s: len(s.strip()) >= 10)
inside = st.tuples(
    st.floats(PANAMA_BOUNDS.min_lat, PANAMA_BOUNDS.max_lat),
    st.floats(PANAMA_BOUNDS.min_lon, PANAMA_BOUNDS.max_lon),
)


def fields_and_rules(exc: ValidationError) -> set[tuple[str, str]]:
    return {(e["field"], e["rule"]) for e in spanish_errors(exc)}


def assert_spanish(errors: list[dict[str, str]], *secrets: str) -> None:
    for error in errors:
        assert set(error) == {"field", "rule", "message"}
        assert error["rule"] and error["message"]
        assert not error["message"].startswith(("Field", "Input", "Value error", "String"))
        for secret in secrets:
            if len(secret) >= 4:
                assert secret not in error["message"]


@FAST
@given(
    kind=st.sampled_from(["denuncia", "queja"]),
    cedula=cedulas,
    phone=mobile,
    email=emails,
    description=descriptions,
    point=inside,
    channel=st.sampled_from(["web", "presencial"]),
)
def test_valid_identified_filings_pass_every_rule(
    kind: str,
    cedula: str,
    phone: str,
    email: str,
    description: str,
    point: tuple[float, float],
    channel: str,
) -> None:
    request = FilingRequest.model_validate(
        {
            "channel": channel,
            "kind": kind,
            "description": description,
            "citizen": {"full_name": "Ana Pérez", "id_number": cedula},
            "notify": {"email": email, "phone": phone},
            "location": {"lat": point[0], "lon": point[1]},
        }
    )
    assert filing_errors(request) == []
    assert request.description == description.strip()
    assert request.citizen is not None and request.citizen.id_number == cedula
    assert request.notify is not None and request.notify.phone == "+507" + phone.replace("-", "")
    assert request.submission().model_dump() == {
        k: v for k, v in request.model_dump().items() if k not in ("channel", "external_ref")
    }


@FAST
@given(text=st.text(max_size=60))
def test_any_id_number_is_accepted_or_refused_by_name_and_rule(text: str) -> None:
    body = {
        "channel": "web",
        "kind": "denuncia",
        "description": "Una descripción suficientemente larga.",
        "citizen": {"full_name": "Ana Pérez", "id_number": text},
        "notify": {"address": "Calle 1, casa 2, San Francisco"},
    }
    try:
        request = FilingRequest.model_validate(body)
    except ValidationError as exc:
        errors = spanish_errors(exc)
        assert {(e["field"], e["rule"]) for e in errors} <= {
            ("citizen.id_number", "cedula"),
            ("citizen.id_number", "string_type"),
        }
        assert_spanish(errors, text)
    else:
        assert request.citizen is not None and request.citizen.id_number


@FAST
@given(text=st.text(max_size=4100))
def test_description_length_is_counted_after_trimming(text: str) -> None:
    body = {"channel": "web", "kind": "sugerencia", "description": text, "anonymous": True}
    clean = control_character(text.strip()) is None
    ok = clean and 10 <= len(text.strip()) <= 4000
    try:
        FilingRequest.model_validate(body)
    except ValidationError as exc:
        assert not ok
        rule = "text_length" if clean else "control_characters"
        assert fields_and_rules(exc) == {("description", rule)}
        assert_spanish(spanish_errors(exc))
    else:
        assert ok


@FAST
@given(
    lat=st.floats(-90, 90, allow_nan=False),
    lon=st.floats(-180, 180, allow_nan=False),
)
def test_coordinates_must_fall_inside_panama(lat: float, lon: float) -> None:
    body = {
        "channel": "web",
        "kind": "sugerencia",
        "anonymous": True,
        "description": "Más árboles en el parque, por favor.",
        "location": {"lat": lat, "lon": lon},
    }
    b = PANAMA_BOUNDS
    inside_box = b.min_lat <= lat <= b.max_lat and b.min_lon <= lon <= b.max_lon
    try:
        FilingRequest.model_validate(body)
    except ValidationError as exc:
        assert not inside_box
        assert fields_and_rules(exc) == {("location", "in_panama")}
    else:
        assert inside_box


@FAST
@given(
    kind=st.sampled_from(["denuncia", "queja", "sugerencia", None]),
    name=st.sampled_from([None, "Ana Pérez"]),
    cedula=st.one_of(st.none(), cedulas),
    notify=st.sampled_from([None, {}, {"email": "ana@example.com"}, {"phone": "+50760001111"}]),
    anonymous=st.booleans(),
)
def test_the_law_on_identification_and_notification(
    kind: str | None,
    name: str | None,
    cedula: str | None,
    notify: dict[str, str] | None,
    anonymous: bool,
) -> None:
    citizen = {k: v for k, v in (("full_name", name), ("id_number", cedula)) if v}
    request = FilingRequest.model_validate(
        {
            "channel": "web",
            "kind": kind,
            "description": "Una descripción suficientemente larga.",
            "citizen": citizen or None,
            "notify": notify,
            "anonymous": anonymous,
        }
    )
    rules = {(e.field, e.rule) for e in filing_errors(request)}
    identified = kind in ("denuncia", "queja")
    assert (("citizen.full_name", "required_for_kind") in rules) == (identified and not name)
    assert (("citizen.id_number", "required_for_kind") in rules) == (identified and not cedula)
    assert (("anonymous", "anonymous_only_sugerencia") in rules) == (identified and anonymous)
    assert (("notify", "notification_address_required") in rules) == (not anonymous and not notify)
    # Only a sugerencia (or an unclassified filing) may be anonymous and unreachable.
    if not rules:
        assert not identified or (name and cedula and notify and not anonymous)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


@FAST
@given(
    action=st.sampled_from(sorted(REGISTRY)),
    data=st.dictionaries(
        st.sampled_from(
            ["kind", "category", "department", "findings", "response", "decision", "notes",
             "reason", "inspector", "scheduled_for", "otro"]
        ),
        json_values,
        max_size=4,
    ),
)  # fmt: skip
def test_any_action_body_is_accepted_or_refused_in_spanish(
    action: str, data: dict[str, Any]
) -> None:
    model = REGISTRY[action].body
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        errors = spanish_errors(exc)
        assert errors
        assert_spanish(errors)
        assert all(e["field"] for e in errors)
    else:
        assert set(body.model_dump(exclude_none=True)) <= set(data)


def test_action_bodies_name_their_rules() -> None:
    try:
        MeetingOutcomeBody.model_validate(
            {"decision": "tal vez", "meeting_date": "ayer", "notes": "  "}
        )
    except ValidationError as exc:
        assert fields_and_rules(exc) == {
            ("decision", "literal_error"),
            ("meeting_date", "date_from_datetime_parsing"),
            ("notes", "text_length"),
        }
        messages = {e["field"]: e["message"] for e in spanish_errors(exc)}
        assert messages["decision"] == (
            "debe ser uno de: 'accepted', 'rejected', 'partially_accepted'"
        )
    else:
        raise AssertionError("accepted an invalid meeting outcome")
    assert ClassifyBody.model_validate({"kind": "queja"}).category is None
