"""Joined cases follow their main case (issue 20, duplicates): the rules, pure (no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.handlers import case_facts
from services.notifier.planning import Planner
from shared.contract import CaseFollowedMain, CaseJoined, CaseSeparated
from shared.db.models import CaseRow
from shared.domain.actions import REGISTRY, STAFF, check_follows, offered_to
from shared.domain.case import FollowsMain, InvalidActionInput
from shared.lifecycle import State
from shared.routing import route_of
from tests.factories import NOW, aggregate, case_in, config, services


def joined_pair(main_state: str = State.CLASSIFIED.value) -> tuple[CaseRow, CaseRow]:
    main = case_in(main_state, tracking_code="2026-MAIN-0001")
    joined = case_in(State.RECEIVED.value, tracking_code="2026-JOIN-0002", kind="queja")
    aggregate(joined).join(main, NOW)
    return main, joined


def test_joining_takes_the_main_cases_state_and_legal_term_but_never_its_department() -> None:
    main = case_in(State.REMITTED.value, due_at=NOW + timedelta(days=9))
    joined = case_in(State.RECEIVED.value, due_at=NOW + timedelta(days=40))
    (event,) = aggregate(joined).join(main, NOW)
    assert isinstance(event, CaseJoined)
    assert (event.state, event.due_at, event.main_case_id.hex) == (
        "remitted",
        main.due_at,
        main.id.replace("-", ""),
    )
    assert joined.state == "remitted" and joined.due_at == main.due_at
    # One remittance: the department holds the main case alone.
    assert joined.department is None and joined.department_due_at is None
    assert joined.kind == "denuncia"  # its own kind and category stay


def test_a_joined_case_mirrors_each_step_of_its_main_case() -> None:
    main, joined = joined_pair()
    aggregate(main).remit("vias", NOW)
    (step,) = aggregate(joined).follow(main, "remit", NOW)
    assert isinstance(step, CaseFollowedMain)
    assert (step.step, step.state, joined.state) == ("remit", "remitted", "remitted")
    assert step.resolution is None
    aggregate(main).respond("Se rellenó el hueco.", NOW, department="vias")
    (step,) = aggregate(joined).follow(main, "respond", NOW)
    assert (joined.state, joined.resolution, joined.resolved_at) == (
        "resolved",
        "Se rellenó el hueco.",
        NOW,
    )
    assert step.resolution == "Se rellenó el hueco."
    with pytest.raises(InvalidActionInput) as refused:
        aggregate(case_in(State.RECEIVED.value)).follow(main, "respond", NOW)
    assert refused.value.rule == "not_its_main"


def test_a_main_case_is_not_joined_to_another() -> None:
    with pytest.raises(InvalidActionInput) as refused:
        aggregate(case_in(State.RECEIVED.value)).join(
            case_in(State.CLASSIFIED.value), NOW, followers=2
        )
    assert refused.value.rule == "has_joined_cases"


def test_separating_starts_the_case_over_from_received_with_a_fresh_legal_term() -> None:
    main, joined = joined_pair(State.REMITTED.value)
    later = NOW + timedelta(days=20)
    (event,) = aggregate(joined).separate(main, later)
    assert isinstance(event, CaseSeparated)
    fresh = services().terms.legal_due(later)
    assert (joined.state, joined.due_at, event.due_at) == ("received", fresh, fresh)
    assert event.main_tracking_code == "2026-MAIN-0001"
    assert joined.duplicate_of is None and joined.resolution is None


def test_a_joined_case_takes_only_separation_information_and_the_survey() -> None:
    main, joined = joined_pair()
    allowed = {name for name, spec in REGISTRY.items() if spec.while_joined}
    assert allowed == {"separate", "add_information", "answer_survey"}
    for name in ("remit", "respond", "reopen", "file_reconsideration", "file_appeal"):
        with pytest.raises(FollowsMain) as refused:
            check_follows(REGISTRY[name], joined, main)
        assert "2026-MAIN-0001" in refused.value.message
        assert refused.value.field == "case" and refused.value.rule == "follows_main"
    check_follows(REGISTRY["separate"], joined, main)
    check_follows(REGISTRY["remit"], main, None)  # the main case acts freely
    assert offered_to(services().lifecycle, STAFF, joined) == ["separate"]


def test_information_added_to_a_joined_case_goes_to_the_office_not_the_department() -> None:
    _main, joined = joined_pair(State.REMITTED.value)
    joined.department = "vias"  # even if a department were set, it never holds a joined case
    (event,) = aggregate(joined).add_information("Hay otro hueco al lado.", 0, NOW)
    assert event.routing_key() == "case.information.office"


def test_the_new_events_have_their_own_keys_in_the_routing_table() -> None:
    for key, name in (
        ("case.joined", "CaseJoined"),
        ("case.followed", "CaseFollowedMain"),
        ("case.separated", "CaseSeparated"),
    ):
        route = route_of(key)
        assert route is not None and route.event_types == (name,)


def test_the_joined_citizen_is_told_each_step_but_not_the_offices_sorting() -> None:
    planner = Planner(config(), sms_gateway=False)
    main, joined = joined_pair()
    facts = case_facts(joined)
    (joined_event,) = aggregate(joined).follow(main, "classify", NOW)
    assert planner.plan(joined_event, facts).notifications == []
    aggregate(main).remit("vias", NOW)
    (step,) = aggregate(joined).follow(main, "remit", NOW)
    (told,) = planner.plan(step, facts).notifications
    assert (told.template, told.recipient) == ("case_followed", "ana@example.com")
    assert told.context["step_label"] == "Remitido a la dependencia responsable"
    assert told.context["main_tracking_code"] == "2026-MAIN-0001"
