"""The citizen's follow-up rules (issue 20): the clave, adding information, "no está
resuelto" within its term, and the survey once after closure. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.calendar import TZ
from shared.contract import CaseJoined, CaseReopened, CaseSeparated, CitizenAddedInformation
from shared.domain.actions import CITIZEN, REGISTRY, actions_of, may_take
from shared.domain.case import AlreadyAnswered, InvalidActionInput, TermEnded
from shared.domain.citizen_key import MalformedKey, hash_key, key_matches, new_key, normalize_key
from shared.domain.duplicates import bounding_box, haversine_m, similarity, trigrams
from shared.lifecycle import IllegalTransition, State
from tests.factories import NOW, aggregate, case_in, services


def test_a_new_clave_reads_as_three_groups_of_four_from_the_tracking_alphabet() -> None:
    key = new_key()
    assert len(key) == 14 and key.count("-") == 2
    assert set(key.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert new_key() != key


def test_the_clave_is_stored_only_as_a_salted_scrypt_hash() -> None:
    key = new_key()
    stored = hash_key(key)
    assert stored.startswith("scrypt$")
    assert key not in stored and key.replace("-", "") not in stored
    assert hash_key(key) != stored  # a fresh salt each time
    assert key_matches(key, stored)


def test_a_typed_clave_is_forgiven_case_spaces_and_look_alike_letters() -> None:
    stored = hash_key("0A1B-2C3D-4E5F")
    assert key_matches("oa1b 2c3d 4e5f", stored)
    assert key_matches("OAlB2C3D4E5F", stored)


def test_a_wrong_malformed_or_missing_clave_never_matches() -> None:
    stored = hash_key(new_key())
    assert not key_matches(new_key(), stored)
    assert not key_matches("corta", stored)
    assert not key_matches(new_key(), None)
    assert not key_matches(new_key(), "md5$abc")
    with pytest.raises(MalformedKey, match="12 letras o dígitos"):
        normalize_key("ABC")


def test_only_the_citizen_takes_the_citizens_steps_and_never_from_the_console() -> None:
    mine = {"add_information", "reopen", "answer_survey"}
    # The recursos are the citizen's too, and the front desk files them for a citizen.
    assert set(actions_of(CITIZEN)) == mine | {"file_reconsideration", "file_appeal"}
    for role in ("staff", "supervisor", "department:vias", "platform311", None):
        assert not any(may_take(role, action) for action in mine)


def test_information_added_to_a_remitted_case_is_routed_to_its_department() -> None:
    row = case_in(State.REMITTED.value)
    (event,) = aggregate(row).add_information("Ya hay un carro dañado.", 0, NOW)
    assert isinstance(event, CitizenAddedInformation)
    assert event.routing_key() == "case.information.vias"
    assert row.state == State.REMITTED  # the state does not change
    assert "carro" not in event.model_dump_json()  # what the citizen wrote stays off the bus


def test_information_added_to_a_case_the_office_holds_goes_to_the_office() -> None:
    (event,) = aggregate(case_in(State.INSPECTION.value)).add_information("Más datos.", 0, NOW)
    assert event.routing_key() == "case.information.office"


def test_information_cannot_be_added_to_a_resolved_case() -> None:
    with pytest.raises(IllegalTransition):
        aggregate(case_in(State.RESOLVED.value)).add_information("Más datos.", 0, NOW)


def test_not_resolved_within_the_term_reopens_the_case_for_routing_with_a_new_legal_term() -> None:
    row = case_in(State.CLOSED.value, resolved_at=NOW - timedelta(days=3), department="vias")
    row.closed_at = NOW - timedelta(days=2)
    case_services = services()
    (event,) = aggregate(row, case_services).reopen(NOW)
    assert isinstance(event, CaseReopened)
    assert row.state == State.CLASSIFIED
    assert row.due_at == case_services.terms.legal_due(NOW) == event.due_at
    assert row.resolved_at is None and row.closed_at is None and row.department is None
    assert row.flagged and row.reopen_count == 1
    assert event.department == "vias" and event.routing_key() == "case.reopened"


def test_the_reopening_term_is_ten_business_days_after_the_resolution() -> None:
    # Resolved on Monday 2 March 2026: ten business days end on Monday 16 March.
    resolved = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)
    row = case_in(State.RESOLVED.value, resolved_at=resolved)
    ends = aggregate(row).reopen_ends()
    assert ends is not None and ends.astimezone(TZ).date().isoformat() == "2026-03-16"
    aggregate(row).reopen(ends)  # the last instant still counts


def test_not_resolved_after_the_term_is_refused_naming_the_day_it_ended() -> None:
    resolved = datetime(2026, 3, 2, 10, 0, tzinfo=TZ)
    row = case_in(State.RESOLVED.value, resolved_at=resolved)
    late = datetime(2026, 3, 17, 8, 0, tzinfo=TZ)
    with pytest.raises(TermEnded) as refused:
        aggregate(row).reopen(late)
    assert "terminó el 16 de marzo de 2026" in refused.value.message
    assert row.state == State.RESOLVED and row.resolved_at == resolved  # nothing changed


def test_the_survey_is_answered_once_after_closure() -> None:
    row = case_in(State.CLOSED.value)
    assert aggregate(row).answer_survey(5, "Rápido y claro.", NOW) == []
    assert (row.survey_score, row.survey_comment, row.survey_at) == (5, "Rápido y claro.", NOW)
    with pytest.raises(AlreadyAnswered):
        aggregate(row).answer_survey(1, None, NOW)
    assert row.survey_score == 5


def test_the_survey_waits_for_the_closure() -> None:
    with pytest.raises(IllegalTransition):
        aggregate(case_in(State.RESOLVED.value)).answer_survey(4, None, NOW)


@pytest.mark.parametrize("score", [0, 6])
def test_a_survey_score_outside_one_to_five_is_refused_naming_the_field(score: int) -> None:
    body = REGISTRY["answer_survey"].body
    with pytest.raises(ValueError, match="score"):
        body.model_validate({"score": score})
    with pytest.raises(InvalidActionInput) as refused:
        aggregate(case_in(State.CLOSED.value)).answer_survey(score, None, NOW)
    assert refused.value.field == "score"


# ------------------------------------------------------------------------------ duplicates


def test_the_haversine_distance_is_exact_enough_for_fifty_metres() -> None:
    # 0.00045° of latitude is about 50 m anywhere.
    assert haversine_m(8.98, -79.52, 8.98045, -79.52) == pytest.approx(50.0, abs=0.2)
    assert haversine_m(8.98, -79.52, 8.98, -79.52) == 0


def test_the_bounding_box_holds_every_point_within_the_distance() -> None:
    min_lat, max_lat, min_lon, max_lon = bounding_box(8.98, -79.52, 50)
    assert haversine_m(8.98, -79.52, max_lat, -79.52) == pytest.approx(50, abs=0.01)
    assert haversine_m(8.98, -79.52, 8.98, max_lon) == pytest.approx(50, abs=0.01)
    assert min_lat < 8.98 < max_lat and min_lon < -79.52 < max_lon


def test_text_similarity_is_trigram_overlap_and_ignores_case_and_accents() -> None:
    a = "Hay un hueco enorme en la Calle 50 frente a la escuela"
    assert similarity(a, a.upper().replace("e", "é")) == 1.0
    assert similarity(a, "Hay un hueco enorme en la calle 50, frente a la escuela.") == 1.0
    assert similarity(a, "La basura no se recoge desde hace semanas en mi barrio") < 0.2
    assert similarity("", a) == 0.0
    assert trigrams("Sí") == frozenset({"  s", " si", "si "})


def test_a_case_is_joined_to_an_open_main_case_and_separated_again() -> None:
    main, joined = case_in(State.CLASSIFIED.value), case_in(State.RECEIVED.value)
    (event,) = aggregate(joined).join(main, NOW)
    assert isinstance(event, CaseJoined) and event.main_tracking_code == main.tracking_code
    assert joined.duplicate_of == main.id
    with pytest.raises(InvalidActionInput, match="ya está unido"):
        aggregate(case_in(State.RECEIVED.value)).join(joined, NOW)  # join to the main instead
    (separated,) = aggregate(joined).separate(main, NOW)
    assert isinstance(separated, CaseSeparated)
    assert joined.duplicate_of is None
    with pytest.raises(InvalidActionInput) as refused:
        aggregate(joined).separate(main, NOW)
    assert refused.value.rule == "not_joined"


def test_a_case_is_not_joined_to_itself_a_closed_case_or_a_missing_one() -> None:
    row = case_in(State.RECEIVED.value)
    for main, rule in (
        (row, "not_itself"),
        (case_in(State.CLOSED.value), "main_not_open"),
        (None, "unknown_case"),
    ):
        with pytest.raises(InvalidActionInput) as refused:
            aggregate(row).join(main, NOW)
        assert refused.value.rule == rule and refused.value.field == "main"
    with pytest.raises(IllegalTransition):  # once routed, it is not joined any more
        aggregate(case_in(State.REMITTED.value)).join(case_in(State.CLASSIFIED.value), NOW)
