"""The case aggregate, in memory: every transition, every guard and the events each verb emits."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shared.calendar import TZ
from shared.contract import CaseForwarded
from shared.db.models import CaseRow
from shared.domain.actions import ACTIONS, REGISTRY, Acting
from shared.domain.case import InvalidActionInput, NotYourCase
from shared.lifecycle import IllegalTransition, State
from tests.factories import NOW, aggregate, body, case_in, case_row, services

KINDS: tuple[str | None, ...] = ("denuncia", "queja", "sugerencia", None)
STATES = [s.value for s in State]

# What each action emits when it is taken, and where it leads (DESIGN §3).
EMITS = {
    "classify": (["CaseClassified"], "classified"),
    "start_inspection": (["InspectionStarted"], "inspection"),
    "remit": (["CaseRemitted", "CaseRemittedToDepartment"], "remitted"),
    "add_to_agenda": (["CaseAddedToAgenda"], "on_agenda"),
    "record_findings": (["CaseResolved"], "resolved"),
    "respond": (["DepartmentResponded", "CaseResolved"], "resolved"),
    "record_meeting_outcome": (["CaseResolved"], "resolved"),
    "return": (["CaseReturned", "CaseReturnAccepted"], "classified"),
    "close": (["CaseClosed"], "closed"),
    "decline": (["CaseClosed"], "closed"),
    "forward": (["CaseForwarded"], "closed"),
    # The citizen's steps; None: the state stays as it was.
    # A joined case takes its main case's state (here: classified); a separated one starts over.
    "join": (["CaseJoined"], "classified"),
    "separate": (["CaseSeparated"], "received"),
    "add_information": (["CitizenAddedInformation"], None),
    "reopen": (["CaseReopened"], "classified"),
    "answer_survey": ([], None),
    # Recursos: filed into their state; decided (confirm, the valid body) back to resolved.
    "file_reconsideration": (["RecourseFiled"], "reconsideration"),
    "file_appeal": (["RecourseFiled"], "appeal"),
    "decide_reconsideration": (["RecourseDecided"], "resolved"),
    "decide_appeal": (["RecourseDecided"], "resolved"),
}
COLUMNS = [c.key for c in CaseRow.__table__.columns]


def snapshot(row: CaseRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in COLUMNS}


def take(row: CaseRow, action: str, by: str | None = None, **fields: Any) -> list[str]:
    """Take ``action`` with a valid body (``fields`` override it); ``by``: the department."""
    spec = REGISTRY[action]
    main = case_in("classified", id="00000000-0000-4000-8000-00000000000a")  # a join's main case
    events = spec.take(aggregate(row), body(action, **fields), Acting(NOW, by, main))
    return [e.event_type for e in events]


@pytest.mark.parametrize(
    ("state", "action", "kind"), list(itertools.product(STATES, ACTIONS, KINDS))
)
def test_every_action_in_every_state_moves_and_emits_or_refuses_changing_nothing(
    state: str, action: str, kind: str | None
) -> None:
    lifecycle = services().lifecycle
    row = case_in(state, kind)
    if action == "separate":
        row.duplicate_of = "00000000-0000-4000-8000-00000000000a"  # joined, to be separated
    before = snapshot(row)
    fields = {"kind": kind or "sugerencia"} if action == "classify" else {}
    if action not in lifecycle.allowed(state, fields.get("kind", kind)):
        with pytest.raises(IllegalTransition) as refused:
            take(row, action, **fields)
        assert refused.value.state == state and action not in refused.value.allowed
        assert snapshot(row) == before
        return
    emitted = take(row, action, **fields)
    events, destination = EMITS[action]
    assert emitted == events
    assert row.state == (destination or state)
    assert row.updated_at == NOW


def test_classify_sets_kind_and_category_and_says_who_classified() -> None:
    row = case_row(kind=None, category=None)
    spec = REGISTRY["classify"]
    (event,) = spec.take(aggregate(row), body("classify", kind="queja"), Acting(NOW))
    assert (row.kind, row.category, row.state) == ("queja", "Calles y huecos", "classified")
    assert event.model_dump(include={"kind", "category", "by"}) == {
        "kind": "queja",
        "category": "Calles y huecos",
        "by": "staff",
    }


def test_the_router_classification_keeps_the_kind_it_could_not_decide_and_names_its_rule() -> None:
    row = case_row(kind="queja")
    events = aggregate(row).classify(None, None, NOW, by="router", rule="r1", route="triage")
    assert row.kind == "queja" and row.matched_rule == "r1"
    assert events[0].model_dump(include={"rule", "route", "by"}) == {
        "rule": "r1",
        "route": "triage",
        "by": "router",
    }


def test_an_anonymous_case_can_only_become_a_sugerencia() -> None:
    row = case_row(anonymous=True, kind="sugerencia", citizen=None)
    for kind in ("denuncia", "queja"):
        with pytest.raises(InvalidActionInput) as refused:
            take(row, "classify", kind=kind)
        assert (refused.value.field, refused.value.rule) == ("kind", "anonymous_only_sugerencia")
    assert row.state == "received"
    assert take(row, "classify", kind="sugerencia") == ["CaseClassified"]


def test_an_unknown_kind_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidActionInput) as refused:
        aggregate(case_row()).classify("reclamo", None, NOW)
    assert (refused.value.field, refused.value.rule) == ("kind", "unknown_kind")


def test_remit_to_an_unknown_department_is_refused() -> None:
    row = case_in("classified")
    with pytest.raises(InvalidActionInput) as refused:
        take(row, "remit", department="marte")
    assert (refused.value.field, refused.value.rule) == ("department", "unknown_department")
    assert row.state == "classified" and row.department is None


def test_remit_starts_the_department_term_and_carries_the_citizen_to_the_department() -> None:
    row = case_in("classified")
    public, copy = REGISTRY["remit"].take(aggregate(row), body("remit"), Acting(NOW))
    assert (row.department, row.remitted_at) == ("vias", NOW)
    assert row.department_due_at is not None and NOW < row.department_due_at <= row.due_at
    # The public fact on case.remitted.<code>; the contact only on the department's own key.
    assert public.routing_key() == "case.remitted.vias"
    assert "citizen" not in public.model_dump() and "description" not in public.model_dump()
    assert copy.routing_key() == "department.vias.remitted"
    assert copy.model_dump()["citizen"]["full_name"] == "Ana Pérez"
    assert not row.flagged


def test_a_remittance_with_no_time_left_is_flagged_for_a_supervisor() -> None:
    row = case_in("classified", due_at=NOW + timedelta(hours=1))
    take(row, "remit")
    assert row.flagged


def test_only_the_department_the_case_is_remitted_to_may_answer_or_return_it() -> None:
    row = case_in("remitted")
    before = snapshot(row)
    for action in ("respond", "return"):
        with pytest.raises(NotYourCase):
            take(row, action, by="aseo")
    assert snapshot(row) == before
    assert take(row, "respond", by="vias") == ["DepartmentResponded", "CaseResolved"]
    assert (row.resolution_path, row.resolution) == (
        "department",
        "Se rellenó el hueco el 5 de marzo.",
    )


def test_a_case_returned_twice_is_flagged_and_leaves_the_department() -> None:
    row = case_in("remitted")
    first, accepted = REGISTRY["return"].take(aggregate(row), body("return"), Acting(NOW, "vias"))
    assert (row.return_count, row.flagged, row.department, row.department_due_at) == (
        1,
        False,
        None,
        None,
    )
    assert first.model_dump(include={"department", "flagged"}) == {
        "department": "vias",
        "flagged": False,
    }
    assert accepted.model_dump(include={"event_type", "department", "flagged"}) == {
        "event_type": "CaseReturnAccepted",
        "department": "vias",
        "flagged": False,
    }
    take(row, "remit")
    returned = REGISTRY["return"].take(aggregate(row), body("return"), Acting(NOW, "vias"))
    assert row.return_count == 2 and row.flagged
    assert [e.model_dump()["flagged"] for e in returned] == [True, True]


def test_the_meeting_date_is_neither_future_nor_before_filing() -> None:
    row = case_in("on_agenda", "sugerencia")
    for day, rule in (("2026-03-03", "not_in_future"), ("2026-03-01", "not_before_filing")):
        with pytest.raises(InvalidActionInput) as refused:
            take(row, "record_meeting_outcome", meeting_date=day)
        assert (refused.value.field, refused.value.rule) == ("meeting_date", rule)
    assert row.state == "on_agenda"
    take(row, "record_meeting_outcome", decision="partially_accepted", notes="Se harán jornadas.")
    assert row.decision == "partially_accepted" and row.resolution_path == "meeting"
    assert row.resolution == (
        f"Reunión del {date(2026, 3, 2):%d/%m/%Y}: sugerencia aceptada en parte. Se harán jornadas."
    )


def test_findings_resolve_an_inspection_and_close_then_ends_the_case() -> None:
    row = case_in("inspection", "queja")
    take(row, "record_findings")
    assert (row.resolution_path, row.resolved_at) == ("inspection", NOW)
    events = REGISTRY["close"].take(aggregate(row), body("close"), Acting(NOW))
    assert row.closed_at == NOW and events[0].model_dump()["declined"] is False


def test_decline_closes_with_the_configured_reason_and_the_text_as_the_resolution() -> None:
    row = case_in("classified")
    (event,) = REGISTRY["decline"].take(aggregate(row), body("decline"), Acting(NOW))
    assert row.resolution == "Petición duplicada de otra ya presentada. Duplicado de otro caso."
    assert event.model_dump(include={"declined", "reason", "decline_reason"}) == {
        "declined": True,
        "reason": "Duplicado de otro caso.",
        "decline_reason": "duplicada",
    }


def test_forward_sends_the_petition_to_a_configured_body_and_closes_it_here() -> None:
    row = case_in("classified")
    with pytest.raises(InvalidActionInput) as refused:
        REGISTRY["forward"].take(aggregate(row), body("forward", entity="ensa"), Acting(NOW))
    assert (refused.value.field, refused.value.rule) == ("entity", "unknown_entity")
    assert row.state == "classified"

    (event,) = REGISTRY["forward"].take(aggregate(row), body("forward"), Acting(NOW))
    assert isinstance(event, CaseForwarded)
    assert (event.entity, event.entity_name, event.late) == ("idaan", "IDAAN", False)
    assert row.state == "closed" and row.resolution_path == "forwarded"
    assert (
        row.resolution == "Enviada por competencia a IDAAN. Falta de agua: competencia del IDAAN."
    )
    # Filed Monday 2 March 2026: five working days later is Monday 9 March, end of day.
    assert event.forward_due_at == datetime(2026, 3, 9, 23, 59, 59, tzinfo=TZ)


def test_a_forward_after_its_term_is_marked_late() -> None:
    row = case_in("received")
    later = Acting(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    (event,) = REGISTRY["forward"].take(aggregate(row), body("forward"), later)
    assert isinstance(event, CaseForwarded) and event.late
