"""The lifecycle of DESIGN §3, checked exhaustively: every (state, action, kind) is either
one of the legal transitions written out below by hand, or refused naming the allowed ones."""

from __future__ import annotations

import itertools

import pytest

from shared.domain.actions import ACTIONS, new_lifecycle
from shared.lifecycle import (
    IllegalTransition,
    Lifecycle,
    State,
    UnknownAction,
    is_open,
)

KINDS: tuple[str | None, ...] = ("denuncia", "queja", "sugerencia", None)
ALL_KINDS = frozenset(KINDS)

# (state, action) -> (destination, kinds for which it is legal), straight from DESIGN §3.
LEGAL: dict[tuple[str, str], tuple[str, frozenset[str | None]]] = {
    ("received", "classify"): ("classified", ALL_KINDS),
    ("classified", "classify"): ("classified", ALL_KINDS),  # reclassify until routed
    ("classified", "start_inspection"): ("inspection", frozenset({"denuncia", "queja"})),
    ("classified", "remit"): ("remitted", frozenset({"denuncia"})),
    ("classified", "add_to_agenda"): ("on_agenda", frozenset({"sugerencia"})),
    ("inspection", "record_findings"): ("resolved", ALL_KINDS),
    ("remitted", "respond"): ("resolved", ALL_KINDS),
    ("on_agenda", "record_meeting_outcome"): ("resolved", ALL_KINDS),
    ("remitted", "return"): ("classified", ALL_KINDS),
    ("resolved", "close"): ("closed", ALL_KINDS),
    ("received", "decline"): ("closed", ALL_KINDS),
    ("classified", "decline"): ("closed", ALL_KINDS),
    ("received", "forward"): ("closed", ALL_KINDS),
    ("classified", "forward"): ("closed", ALL_KINDS),
    # The citizen's steps (with the clave): adding information keeps the state; "no está
    # resuelto" reopens a resolved or closed case for routing; the survey follows closure.
    **{
        (s, "add_information"): (s, ALL_KINDS)
        for s in ("received", "classified", "inspection", "remitted", "on_agenda")
    },
    ("resolved", "reopen"): ("classified", ALL_KINDS),
    # Duplicates: joined before routing, separated while open; the state stays.
    ("received", "join"): ("received", ALL_KINDS),
    ("classified", "join"): ("classified", ALL_KINDS),
    **{
        (s, "separate"): (s, ALL_KINDS)
        for s in ("received", "classified", "inspection", "remitted", "on_agenda")
    },
    ("closed", "reopen"): ("classified", ALL_KINDS),
    ("closed", "answer_survey"): ("closed", ALL_KINDS),
    # Recursos against the decision (Ley 38 de 2000): filed from a resolved or closed case;
    # the machine keeps a pending recurso where it is, and the decision's outcome (the verb)
    # moves it: confirmed back to resolved/closed, revoked to classified.
    ("resolved", "file_reconsideration"): ("reconsideration", ALL_KINDS),
    ("closed", "file_reconsideration"): ("reconsideration", ALL_KINDS),
    ("resolved", "file_appeal"): ("appeal", ALL_KINDS),
    ("closed", "file_appeal"): ("appeal", ALL_KINDS),
    ("reconsideration", "decide_reconsideration"): ("reconsideration", ALL_KINDS),
    ("appeal", "decide_appeal"): ("appeal", ALL_KINDS),
}

EXPECTED_ACTIONS = {
    "classify",
    "start_inspection",
    "remit",
    "add_to_agenda",
    "record_findings",
    "respond",
    "record_meeting_outcome",
    "return",
    "close",
    "decline",
    "forward",
    "join",
    "separate",
    "add_information",
    "reopen",
    "answer_survey",
    "file_reconsideration",
    "file_appeal",
    "decide_reconsideration",
    "decide_appeal",
}

STATES = [s.value for s in State]
CASES = list(itertools.product(STATES, sorted(EXPECTED_ACTIONS), KINDS))


def legal(state: str, action: str, kind: str | None) -> str | None:
    entry = LEGAL.get((state, action))
    if entry is None or kind not in entry[1]:
        return None
    return entry[0]


@pytest.fixture(scope="module")
def lifecycle() -> Lifecycle:
    return new_lifecycle()


def test_the_state_names_are_the_public_contract() -> None:
    assert STATES == [
        "received",
        "classified",
        "inspection",
        "remitted",
        "on_agenda",
        "resolved",
        "closed",
        "reconsideration",
        "appeal",
    ]


def test_the_actions_are_the_http_api_names() -> None:
    assert set(ACTIONS) == EXPECTED_ACTIONS


@pytest.mark.parametrize(
    ("state", "action", "kind"),
    [c for c in CASES if legal(*c) is not None],
)
def test_every_legal_transition(
    lifecycle: Lifecycle, state: str, action: str, kind: str | None
) -> None:
    assert lifecycle.apply(state, action, kind) == legal(state, action, kind)
    assert action in lifecycle.allowed(state, kind)


@pytest.mark.parametrize(
    ("state", "action", "kind"),
    [c for c in CASES if legal(*c) is None],
)
def test_every_illegal_transition_is_refused_naming_the_allowed_ones(
    lifecycle: Lifecycle, state: str, action: str, kind: str | None
) -> None:
    with pytest.raises(IllegalTransition) as refused:
        lifecycle.apply(state, action, kind)
    allowed = sorted(a for a in EXPECTED_ACTIONS if legal(state, a, kind) is not None)
    assert sorted(refused.value.allowed) == allowed
    assert refused.value.state == state and refused.value.action == action
    message = str(refused.value)
    assert f"«{action}»" in message and f"«{state}»" in message
    assert ("ninguna" in message) == (not allowed)
    for name in allowed:
        assert name in message


def test_the_table_has_as_many_legal_moves_as_the_design() -> None:
    legal_moves = [c for c in CASES if legal(*c) is not None]
    # 11 kind-free transitions x 4 kinds + inspection (2 kinds) + remit (1) + agenda (1),
    # the citizen's 8 kind-free steps (information in 5 open states, 2 reopenings, survey)
    # the 7 of duplicates (join in 2 states, separate in 5) and the 6 of recursos (two filings
    # from 2 states, two decisions).
    assert len(legal_moves) == 11 * 4 + 2 + 1 + 1 + 8 * 4 + 7 * 4 + 6 * 4
    assert len(CASES) == 9 * 20 * 4


@pytest.mark.parametrize(
    ("action", "only"),
    [
        ("start_inspection", {"denuncia", "queja"}),
        ("remit", {"denuncia"}),
        ("add_to_agenda", {"sugerencia"}),
    ],
)
def test_kind_guards(lifecycle: Lifecycle, action: str, only: set[str]) -> None:
    for kind in KINDS:
        if kind in only:
            lifecycle.apply("classified", action, kind)
            continue
        with pytest.raises(IllegalTransition) as refused:
            lifecycle.apply("classified", action, kind)
        assert action not in refused.value.allowed
        if kind is not None:
            assert f"para una {kind}" in str(refused.value)


def test_a_queja_cannot_be_remitted_but_may_be_inspected(lifecycle: Lifecycle) -> None:
    with pytest.raises(IllegalTransition) as refused:
        lifecycle.apply("classified", "remit", "queja")
    assert refused.value.allowed == [
        "classify",
        "start_inspection",
        "decline",
        "forward",
        "join",
        "separate",
        "add_information",
    ]


def test_a_closed_case_allows_only_the_citizens_reopening_survey_and_the_recursos(
    lifecycle: Lifecycle,
) -> None:
    for kind in KINDS:
        assert lifecycle.allowed("closed", kind) == [
            "reopen",
            "answer_survey",
            "file_reconsideration",
            "file_appeal",
        ]
        assert lifecycle.allowed("reconsideration", kind) == ["decide_reconsideration"]
        assert lifecycle.allowed("appeal", kind) == ["decide_appeal"]
    assert not is_open("closed") and not is_open("resolved")
    # A pending recurso runs its own term, not the legal term of the handling.
    assert not is_open("reconsideration") and not is_open("appeal")
    assert all(
        is_open(s) for s in ("received", "classified", "inspection", "remitted", "on_agenda")
    )


def test_unknown_action(lifecycle: Lifecycle) -> None:
    with pytest.raises(UnknownAction, match="acción desconocida: fly"):
        lifecycle.apply("received", "fly", None)


def test_the_shared_machine_keeps_no_case_state(lifecycle: Lifecycle) -> None:
    assert lifecycle.apply("classified", "remit", "denuncia") == State.REMITTED
    # A second case evaluated on the same machine starts from its own stored state.
    assert lifecycle.apply("classified", "add_to_agenda", "sugerencia") == State.ON_AGENDA
    with pytest.raises(IllegalTransition):
        lifecycle.apply("remitted", "add_to_agenda", "sugerencia")
