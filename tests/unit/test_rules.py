"""Unit tests of the routing rules engine (services/router/rules.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.rules import (
    Classification,
    Rule,
    RuleSet,
    RuleSetError,
    normalize,
    parse_route,
    tokenize,
)

DEPARTMENTS = {"aseo", "vias", "obras", "ambiente", "tesoreria", "policia", "salud", "rrhh"}


def rule(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "basura",
        "priority": 10,
        "keywords": ["basura"],
        "kind": "queja",
        "category": "Recolección de basura",
        "route": "inspect",
    }
    base.update(overrides)
    return base


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    return RuleSet.from_config(list(rules), DEPARTMENTS)


def classify(
    rs: RuleSet, description: str, *, kind: str | None = None, category: str | None = None
) -> Classification:
    return rs.classify(kind=kind, category=category, description=description)


# --- normalization ---------------------------------------------------------------------------


def test_normalize_lowercases_and_strips_accents() -> None:
    assert normalize("Recolección ÁRBOL Ñandú") == "recoleccion arbol nandu"


def test_tokenize_splits_on_non_letters() -> None:
    assert tokenize("¡No pasan!¿Basura?...paz-y-salvo 311") == [
        "no",
        "pasan",
        "basura",
        "paz",
        "y",
        "salvo",
        "311",
    ]


# --- keyword matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["la BASURA no la recogen", "Basúra por todos lados", "¡basura!", "basura"]
)
def test_keyword_is_case_and_accent_insensitive(text: str) -> None:
    assert classify(ruleset(rule()), text).rule == "basura"


def test_keyword_with_accent_matches_text_without() -> None:
    rs = ruleset(rule(keywords=["recolección"]))
    assert classify(rs, "la recoleccion es pesima").rule == "basura"


def test_keyword_matches_whole_words_only() -> None:
    rs = ruleset(rule())
    result = classify(rs, "el basurero de la esquina está lleno")
    assert result.rule is None
    assert result.route == "triage"


def test_listed_variant_matches() -> None:
    rs = ruleset(rule(keywords=["basura", "basurero"]))
    assert classify(rs, "el basurero de la esquina").rule == "basura"


def test_prefix_wildcard_matches_word_starts() -> None:
    rs = ruleset(rule(keywords=["recog*"]))
    assert classify(rs, "no recogen nada").rule == "basura"
    assert classify(rs, "nunca la recogieron").rule == "basura"
    assert classify(rs, "el recorrido").rule is None


def test_prefix_wildcard_needs_three_letters() -> None:
    with pytest.raises(RuleSetError, match="at least 3 letters"):
        ruleset(rule(keywords=["re*"]))


def test_wildcard_only_at_end_of_word() -> None:
    with pytest.raises(RuleSetError, match="only allowed at the end"):
        ruleset(rule(keywords=["re*coger"]))


# --- phrases ---------------------------------------------------------------------------------


def test_phrase_allows_up_to_two_words_between() -> None:
    rs = ruleset(rule(keywords=["recoleccion basura"]))
    assert classify(rs, "la recolección de la basura es mala").rule == "basura"
    assert classify(rs, "recolección basura").rule == "basura"


def test_phrase_refuses_words_too_far_apart() -> None:
    rs = ruleset(rule(keywords=["recoleccion basura"]))
    assert classify(rs, "la recolección de la calle y la basura").rule is None


def test_phrase_words_must_be_in_order() -> None:
    rs = ruleset(rule(keywords=["recoleccion basura"]))
    assert classify(rs, "la basura y la recolección").rule is None
    assert classify(rs, "no pasan a recoger la basura").rule is None


def test_phrase_finds_a_later_occurrence() -> None:
    rs = ruleset(rule(keywords=["carro basura"]))
    text = "el carro rojo del vecino y otro carro de la basura"
    assert classify(rs, text).rule == "basura"


def test_phrase_backtracks_over_a_nearer_candidate() -> None:
    # "a b c" with max_gap=1: the first "b" (position 1) is too far from "c"; the second works.
    rs = ruleset(rule(keywords=["aa bb cc"], max_gap=1))
    assert classify(rs, "aa bb bb x cc").rule == "basura"
    assert classify(rs, "aa bb x x cc").rule is None


def test_max_gap_is_configurable() -> None:
    text = "construcción de un segundo piso sin permiso"
    assert classify(ruleset(rule(keywords=["construccion permiso"], max_gap=5)), text).rule
    assert not classify(ruleset(rule(keywords=["construccion permiso"], max_gap=4)), text).rule
    rs0 = ruleset(rule(keywords=["paz salvo"], max_gap=0))
    assert classify(rs0, "el paz y salvo").rule is None
    assert classify(rs0, "el paz-salvo").rule == "basura"


# --- priorities ------------------------------------------------------------------------------


def test_higher_priority_wins_regardless_of_order() -> None:
    low = rule(name="low", priority=1, keywords=["basura"])
    high = rule(
        name="high", priority=9, keywords=["quema"], kind="denuncia", route="remit:ambiente"
    )
    rs = ruleset(low, high)
    result = classify(rs, "el vecino quema basura")
    assert result.rule == "high"
    assert result.route == "remit:ambiente"
    assert result.department == "ambiente"


def test_equal_priority_goes_to_first_written() -> None:
    first = rule(name="first", keywords=["basura"])
    second = rule(name="second", keywords=["basura"], kind="denuncia", route="remit:aseo")
    assert classify(ruleset(first, second), "basura").rule == "first"
    assert classify(ruleset(second, first), "basura").rule == "second"


def test_rules_property_lists_the_try_order() -> None:
    rs = ruleset(rule(name="a", priority=1), rule(name="b", priority=5), rule(name="c", priority=1))
    assert [r.name for r in rs.rules] == ["b", "a", "c"]


# --- categories ------------------------------------------------------------------------------


def test_category_matches_exactly_ignoring_case_and_accents() -> None:
    rs = ruleset(rule(keywords=[], categories=["Vías", "calles y aceras"]))
    assert classify(rs, "frente a mi casa", category="VIAS").rule == "basura"
    assert classify(rs, "frente a mi casa", category=" Calles  y Aceras ").rule == "basura"
    assert classify(rs, "frente a mi casa", category="vías públicas").rule is None
    assert classify(rs, "vias", category=None).rule is None


def test_categories_or_keywords() -> None:
    rs = ruleset(rule(categories=["aseo"], keywords=["basura"]))
    assert classify(rs, "nada que ver", category="Aseo").rule == "basura"
    assert classify(rs, "la basura", category="Otros").rule == "basura"
    assert classify(rs, "nada", category="Otros").rule is None


def test_rule_sets_its_category() -> None:
    result = classify(ruleset(rule()), "basura", category="otra cosa")
    assert result.category == "Recolección de basura"


def test_rule_without_category_keeps_the_given_one() -> None:
    rs = ruleset(rule(category=None))
    assert classify(rs, "basura", category="Aseo").category == "Aseo"


# --- kinds -----------------------------------------------------------------------------------


def test_rule_kind_used_when_submission_has_none() -> None:
    result = classify(ruleset(rule()), "basura")
    assert result == Classification(
        kind="queja",
        category="Recolección de basura",
        route="inspect",
        department=None,
        rule="basura",
        note=None,
    )


def test_given_kind_is_kept() -> None:
    rs = ruleset(rule(kind="queja", route="inspect"))
    result = classify(rs, "basura", kind="denuncia")
    assert result.kind == "denuncia"
    assert result.route == "inspect"
    assert result.note is None


def test_given_kind_is_normalized() -> None:
    assert classify(ruleset(rule()), "basura", kind=" Queja ").kind == "queja"


def test_kinds_filter() -> None:
    sugerencia = rule(
        name="deberian",
        priority=50,
        kinds=["sugerencia"],
        keywords=["deberian"],
        kind="sugerencia",
        route="agenda",
    )
    rs = ruleset(sugerencia, rule(priority=1))
    assert classify(rs, "deberían recoger la basura").rule == "deberian"
    assert classify(rs, "deberían recoger la basura", kind="sugerencia").rule == "deberian"
    skipped = classify(rs, "deberían recoger la basura", kind="queja")
    assert skipped.rule == "basura"
    assert skipped.route == "inspect"


@pytest.mark.parametrize(
    ("given", "rule_route", "rule_kind", "expected_route"),
    [
        ("queja", "remit:obras", "denuncia", "inspect"),
        ("sugerencia", "remit:obras", "denuncia", "agenda"),
        ("sugerencia", "inspect", "queja", "agenda"),
        ("queja", "agenda", "sugerencia", "inspect"),
        ("denuncia", "agenda", "sugerencia", "inspect"),
    ],
)
def test_conflicting_kind_downgrades_route(
    given: str, rule_route: str, rule_kind: str, expected_route: str
) -> None:
    rs = ruleset(rule(route=rule_route, kind=rule_kind))
    result = classify(rs, "basura", kind=given)
    assert result.kind == given
    assert result.route == expected_route
    assert result.department is None
    assert result.rule == "basura"
    assert result.note is not None
    assert rule_route in result.note
    assert expected_route in result.note


def test_consistent_kind_is_not_downgraded() -> None:
    rs = ruleset(rule(route="remit:obras", kind="denuncia"))
    result = classify(rs, "basura", kind="denuncia")
    assert result.route == "remit:obras"
    assert result.department == "obras"
    assert result.note is None


def test_unknown_kind_goes_to_triage_with_note() -> None:
    rs = ruleset(rule(route="remit:aseo", kind="denuncia"))
    result = classify(rs, "basura", kind="reclamo")
    assert result.kind is None
    assert result.route == "triage"
    assert result.rule == "basura"
    assert result.note is not None
    assert "reclamo" in result.note


def test_triage_rule_may_leave_kind_unset() -> None:
    rs = ruleset(rule(kind=None, route="triage", keywords=["idaan"]))
    result = classify(rs, "el IDAAN no manda agua")
    assert result.kind is None
    assert result.route == "triage"
    assert result.rule == "basura"


def test_remit_and_agenda_rules_default_their_kind() -> None:
    assert Rule.model_validate(rule(kind=None, route="remit:aseo")).kind == "denuncia"
    assert Rule.model_validate(rule(kind=None, route="agenda")).kind == "sugerencia"


# --- no match --------------------------------------------------------------------------------


def test_no_match_goes_to_triage_keeping_what_was_given() -> None:
    result = classify(ruleset(rule()), "hola, buenas tardes", kind="queja", category="Otros")
    assert result == Classification(
        kind="queja", category="Otros", route="triage", department=None, rule=None, note=None
    )


def test_empty_rule_set_triages_everything() -> None:
    rs = RuleSet.from_config([], DEPARTMENTS)
    assert classify(rs, "basura").route == "triage"


# --- construction errors ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ["remit", "remit:", "send", "REMIT:aseo", "remit:a b", ""])
def test_invalid_route_refused(route: str) -> None:
    with pytest.raises(RuleSetError, match=r"rule 'basura': route: .*invalid route"):
        ruleset(rule(route=route, kind="denuncia"))


def test_unknown_department_refused() -> None:
    with pytest.raises(RuleSetError, match=r"rule 'basura'.*unknown department 'bomberos'"):
        ruleset(rule(route="remit:bomberos", kind="denuncia"))


def test_unknown_department_allowed_without_department_list() -> None:
    rs = RuleSet([Rule.model_validate(rule(route="remit:bomberos", kind="denuncia"))])
    assert classify(rs, "basura").department == "bomberos"


def test_duplicate_name_refused() -> None:
    with pytest.raises(RuleSetError, match="duplicate rule name"):
        ruleset(rule(), rule())


@pytest.mark.parametrize(
    ("kind", "route"),
    [("queja", "remit:aseo"), ("queja", "agenda"), ("sugerencia", "inspect"), (None, "inspect")],
)
def test_kind_inconsistent_with_route_refused(kind: str | None, route: str) -> None:
    with pytest.raises(RuleSetError, match="rule 'basura'"):
        ruleset(rule(kind=kind, route=route))


def test_rule_needs_something_to_match_on() -> None:
    with pytest.raises(RuleSetError, match="needs 'categories' or 'keywords'"):
        ruleset(rule(keywords=[]))


def test_unknown_field_refused() -> None:
    with pytest.raises(RuleSetError, match="keyword"):
        ruleset(rule(keyword=["basura"]))


def test_bad_kind_in_rule_refused() -> None:
    with pytest.raises(RuleSetError, match="kinds"):
        ruleset(rule(kinds=["reclamo"]))


def test_keyword_without_letters_refused() -> None:
    with pytest.raises(RuleSetError, match="no letters"):
        ruleset(rule(keywords=["¡!"]))


def test_parse_route() -> None:
    assert parse_route("inspect") == ("inspect", None)
    assert parse_route("remit:aseo") == ("remit", "aseo")
    with pytest.raises(ValueError, match="invalid route"):
        parse_route("remit:")


# --- properties ------------------------------------------------------------------------------

_PROPERTY_RULES = ruleset(
    rule(name="a", keywords=["basura", "recog* basura"]),
    rule(name="b", priority=5, keywords=["hueco*"], kind="denuncia", route="remit:vias"),
    rule(name="c", priority=7, keywords=["sugiero"], kind="sugerencia", route="agenda"),
)


@settings(max_examples=300, deadline=None)
@given(
    description=st.text(max_size=300),
    kind=st.one_of(st.none(), st.sampled_from(["denuncia", "queja", "sugerencia", "otro", ""])),
    category=st.one_of(st.none(), st.text(max_size=30)),
)
def test_classify_never_fails_and_is_consistent(
    description: str, kind: str | None, category: str | None
) -> None:
    result = _PROPERTY_RULES.classify(kind=kind, category=category, description=description)
    if result.route.startswith("remit:"):
        assert result.kind == "denuncia"
        assert result.department == result.route.removeprefix("remit:")
    else:
        assert result.department is None
    if result.route == "agenda":
        assert result.kind == "sugerencia"
    if result.route == "inspect":
        assert result.kind in ("denuncia", "queja")
    if kind in ("denuncia", "queja", "sugerencia"):
        assert result.kind == kind
