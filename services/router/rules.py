"""Rule-based classification of submissions (kind, category, route).

Pure and I/O-free: the router builds a :class:`RuleSet` once from the ``[[rules]]`` tables of the
institution's TOML file and calls :meth:`RuleSet.classify` for each case.

Rule schema (one ``[[rules]]`` table each)::

    name       = "basura-no-recogida"        # unique, required
    priority   = 50                          # int, required; the highest matching priority wins
    categories = ["aseo", "recoleccion"]     # optional; exact match on the submitted category
    keywords   = ["basura", "no recog*"]     # optional; any one matching the description is enough
    kinds      = ["queja"]                   # optional; rule applies only when the submitted kind
                                             #   is one of these, or when no kind was submitted
    kind       = "queja"                     # kind to set when the submission has none
    category   = "Recolección de basura"     # category to set
    route      = "inspect"                   # inspect | agenda | triage | remit:<department>
    max_gap    = 2                           # optional; words allowed between a phrase's words

Matching (all of it accent- and case-insensitive):

* A rule matches when its ``categories`` (or the ``category`` it assigns) match the submitted
  category **or** any of its
  ``keywords`` matches the description (either is enough). A rule needs at least one of the two.
* Text is lowercased, accents are stripped (NFKD) and it is split on anything that is not a
  letter or digit, so keywords match whole words only: ``basura`` does not match ``basurero``.
* A keyword of several words (a phrase) matches when its words appear in that order with at most
  ``max_gap`` other words between consecutive ones: ``recoleccion basura`` matches
  "recolección de la basura".
* A word ending in ``*`` matches any word starting with it (``recog*`` matches "recogen",
  "recogieron"); the prefix must have at least three letters.
* Rules are tried by descending ``priority``; ties go to the rule written first in the file.

Kinds and routes: ``remit:`` is only for a ``denuncia``, ``agenda`` only for a ``sugerencia`` and
``inspect`` for a ``denuncia`` or ``queja``. A rule's own ``kind`` must agree with its ``route``
(checked at construction; ``remit:`` defaults ``kind`` to ``denuncia`` and ``agenda`` to
``sugerencia``). The submitted kind always wins over the rule's ``kind``; when it conflicts with the
rule's route the route is downgraded (``queja`` → ``inspect``, ``sugerencia`` → ``agenda``,
``denuncia`` → ``inspect``; an unrecognised kind → ``triage``) and the result's ``note`` says so.
No matching rule → ``triage`` with the submitted kind and category kept.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "KINDS",
    "Classification",
    "Kind",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "normalize",
    "parse_route",
    "tokenize",
]

Kind = Literal["denuncia", "queja", "sugerencia"]
KINDS: frozenset[str] = frozenset(get_args(Kind))
_KIND_BY_NAME: dict[str, Kind] = {
    "denuncia": "denuncia",
    "queja": "queja",
    "sugerencia": "sugerencia",
}

ROUTE_INSPECT = "inspect"
ROUTE_AGENDA = "agenda"
ROUTE_TRIAGE = "triage"
REMIT_PREFIX = "remit:"

# Which kinds each route accepts (remit is keyed by its prefix).
_ROUTE_KINDS: dict[str, frozenset[str]] = {
    ROUTE_INSPECT: frozenset({"denuncia", "queja"}),
    ROUTE_AGENDA: frozenset({"sugerencia"}),
    REMIT_PREFIX: frozenset({"denuncia"}),
    ROUTE_TRIAGE: KINDS,
}
# Where a submitted kind goes when the matched rule's route does not accept it.
_DOWNGRADE: dict[str, str] = {
    "queja": ROUTE_INSPECT,
    "sugerencia": ROUTE_AGENDA,
    "denuncia": ROUTE_INSPECT,
}

_DEPARTMENT_RE = re.compile(r"[a-z0-9_-]+")
_SPLIT_RE = re.compile(r"[^a-z0-9]+")
_MIN_PREFIX = 3


class RuleSetError(ValueError):
    """A rule set that cannot be built (bad rule, duplicate name, unknown department)."""


def normalize(text: str) -> str:
    """Lowercase ``text`` and strip its accents (NFKD, combining marks removed)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokenize(text: str) -> list[str]:
    """Normalized words of ``text`` (split on anything that is not a letter or a digit)."""
    return [tok for tok in _SPLIT_RE.split(normalize(text)) if tok]


def _normalize_label(text: str) -> str:
    """Category labels compare on their normalized words joined by single spaces."""
    return " ".join(tokenize(text))


def parse_route(route: str) -> tuple[str, str | None]:
    """Split a route string into (route kind, department).

    ``"inspect"`` → ``("inspect", None)``; ``"remit:aseo"`` → ``("remit", "aseo")``.
    Raises ``ValueError`` with the accepted forms when the syntax is wrong.
    """
    value = route.strip()
    if value in (ROUTE_INSPECT, ROUTE_AGENDA, ROUTE_TRIAGE):
        return value, None
    if value.startswith(REMIT_PREFIX):
        department = value[len(REMIT_PREFIX) :].strip()
        if _DEPARTMENT_RE.fullmatch(department):
            return "remit", department
    raise ValueError(
        f"invalid route {route!r}: expected 'inspect', 'agenda', 'triage' or "
        "'remit:<department code>'"
    )


def _route_key(route: str) -> str:
    return REMIT_PREFIX if route.startswith(REMIT_PREFIX) else route


class Rule(BaseModel):
    """One routing rule, as written in a ``[[rules]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: str = Field(min_length=1)
    priority: int
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    kinds: tuple[Kind, ...] = ()
    kind: Kind | None = None
    category: str | None = None
    route: str
    max_gap: int = Field(default=2, ge=0, le=10)

    @field_validator("route")
    @classmethod
    def _check_route(cls, value: str) -> str:
        kind, department = parse_route(value)
        return kind if department is None else f"{REMIT_PREFIX}{department}"

    @field_validator("categories", "keywords")
    @classmethod
    def _check_terms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for term in value:
            if not tokenize(term):
                raise ValueError(f"{term!r} has no letters or digits to match on")
        return value

    @field_validator("keywords")
    @classmethod
    def _check_wildcards(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for term in value:
            for word in term.split():
                if "*" in word[:-1]:
                    raise ValueError(f"keyword {term!r}: '*' is only allowed at the end of a word")
                stem = tokenize(word[:-1])
                if word.endswith("*") and (not stem or len(stem[-1]) < _MIN_PREFIX):
                    raise ValueError(
                        f"keyword {term!r}: a prefix before '*' needs at least "
                        f"{_MIN_PREFIX} letters"
                    )
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Rule:
        if not self.categories and not self.keywords:
            raise ValueError("a rule needs 'categories' or 'keywords' (or both) to match on")
        key = _route_key(self.route)
        accepted = _ROUTE_KINDS[key]
        if self.kind is None:
            if key == REMIT_PREFIX:
                object.__setattr__(self, "kind", "denuncia")
            elif key == ROUTE_AGENDA:
                object.__setattr__(self, "kind", "sugerencia")
            elif key == ROUTE_INSPECT:
                raise ValueError("route 'inspect' needs 'kind' = 'denuncia' or 'queja'")
        elif self.kind not in accepted:
            raise ValueError(
                f"kind {self.kind!r} cannot take route {self.route!r} "
                f"(that route accepts: {', '.join(sorted(accepted))})"
            )
        return self

    @property
    def department(self) -> str | None:
        return parse_route(self.route)[1]


class Classification(BaseModel):
    """What the rules decided for one submission."""

    model_config = ConfigDict(frozen=True)

    kind: Kind | None
    category: str | None
    route: str
    department: str | None = None
    rule: str | None = None
    note: str | None = None


# --- compiled matching -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    prefix: bool

    def positions(self, text: _Text) -> list[int]:
        if not self.prefix:
            return text.index.get(self.text, [])
        cached = text.prefix_cache.get(self.text)
        if cached is None:
            # The tokens starting with the prefix sit together in the sorted token list.
            tokens = text.tokens
            found: list[int] = []
            i = bisect.bisect_left(tokens, self.text)
            while i < len(tokens) and tokens[i].startswith(self.text):
                found.extend(text.index[tokens[i]])
                i += 1
            cached = sorted(found)
            text.prefix_cache[self.text] = cached
        return cached


@dataclass(slots=True)
class _Text:
    """A description prepared once per classification: word → positions, prefix lookups cached."""

    index: dict[str, list[int]]
    tokens: list[str]  # the distinct tokens, sorted
    prefix_cache: dict[str, list[int]]

    @classmethod
    def of(cls, description: str) -> _Text:
        index: dict[str, list[int]] = {}
        for pos, token in enumerate(tokenize(description)):
            index.setdefault(token, []).append(pos)
        return cls(index, sorted(index), {})


@dataclass(frozen=True, slots=True)
class _Phrase:
    words: tuple[_Word, ...]
    max_gap: int

    def matches(self, text: _Text) -> bool:
        candidates: list[list[int]] = []
        for word in self.words:
            found = word.positions(text)
            if not found:
                return False
            candidates.append(found)
        return any(self._chain(candidates, 1, start) for start in candidates[0])

    def _chain(self, candidates: Sequence[list[int]], i: int, previous: int) -> bool:
        if i == len(candidates):
            return True
        limit = previous + self.max_gap + 1
        for pos in candidates[i]:
            if pos <= previous:
                continue
            if pos > limit:
                break
            if self._chain(candidates, i + 1, pos):
                return True
        return False


def _compile_keyword(keyword: str, max_gap: int) -> _Phrase:
    words: list[_Word] = []
    for raw in keyword.split():
        prefix = raw.endswith("*")
        tokens = tokenize(raw[:-1] if prefix else raw)
        # "paz-y-salvo" tokenizes into several words: all but the last are exact.
        for j, tok in enumerate(tokens):
            words.append(_Word(tok, prefix and j == len(tokens) - 1))
    return _Phrase(tuple(words), max_gap)


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    categories: frozenset[str]
    phrases: tuple[_Phrase, ...]

    def matches(self, category: str | None, text: _Text) -> bool:
        if category is not None and category in self.categories:
            return True
        return any(phrase.matches(text) for phrase in self.phrases)


class RuleSet:
    """An ordered, precompiled set of rules. Build it once; ``classify`` is pure and fast."""

    def __init__(self, rules: Iterable[Rule], departments: Iterable[str] | None = None) -> None:
        rule_list = list(rules)
        known = None if departments is None else frozenset(departments)
        seen: set[str] = set()
        for rule in rule_list:
            if rule.name in seen:
                raise RuleSetError(f"rule {rule.name!r}: duplicate rule name")
            seen.add(rule.name)
            department = rule.department
            if known is not None and department is not None and department not in known:
                raise RuleSetError(
                    f"rule {rule.name!r}: route {rule.route!r} names unknown department "
                    f"{department!r} (known: {', '.join(sorted(known))})"
                )
        ordered = sorted(enumerate(rule_list), key=lambda item: (-item[1].priority, item[0]))
        self._rules: tuple[_CompiledRule, ...] = tuple(
            _CompiledRule(
                rule=rule,
                # A rule also matches the category it assigns: a filing that chose that
                # category (an Open311 service, a staff form) follows the rule's route.
                categories=frozenset(
                    _normalize_label(c)
                    for c in (*rule.categories, *([rule.category] if rule.category else []))
                ),
                phrases=tuple(_compile_keyword(k, rule.max_gap) for k in rule.keywords),
            )
            for _, rule in ordered
        )
        self.departments = known

    @classmethod
    def from_config(cls, rules: list[dict[str, Any]], departments: set[str]) -> RuleSet:
        """Build from the raw ``[[rules]]`` tables; errors name the rule and the field."""
        parsed: list[Rule] = []
        for position, raw in enumerate(rules, start=1):
            label = raw.get("name", f"#{position}") if isinstance(raw, dict) else f"#{position}"
            try:
                parsed.append(Rule.model_validate(raw))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}"
                    for err in exc.errors()
                )
                raise RuleSetError(f"rule {label!r}: {problems}") from exc
        return cls(parsed, departments)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules in the order they are tried."""
        return tuple(compiled.rule for compiled in self._rules)

    def match(self, *, category: str | None, description: str) -> Rule | None:
        """The winning rule for a category/description, ignoring kinds filters."""
        return self._first(None, category, description)

    def _first(self, kind: str | None, category: str | None, description: str) -> Rule | None:
        label = _normalize_label(category) if category else None
        text = _Text.of(description)
        for compiled in self._rules:
            rule = compiled.rule
            if kind is not None and rule.kinds and kind not in rule.kinds:
                continue
            if compiled.matches(label, text):
                return rule
        return None

    def classify(
        self, *, kind: str | None, category: str | None, description: str
    ) -> Classification:
        """Classify one submission. ``kind`` and ``category`` are what the citizen gave, if any."""
        given: Kind | None = None
        unknown_kind: str | None = None
        if kind is not None and kind.strip():
            given = _KIND_BY_NAME.get(normalize(kind.strip()))
            if given is None:
                unknown_kind = kind
        category = category.strip() if category and category.strip() else None

        rule = self._first(unknown_kind or given, category, description)
        if rule is None:
            return Classification(
                kind=given,
                category=category,
                route=ROUTE_TRIAGE,
                rule=None,
                note=f"tipo desconocido {unknown_kind!r}" if unknown_kind else None,
            )

        new_category = rule.category or category
        if unknown_kind is not None:
            return Classification(
                kind=None,
                category=new_category,
                route=ROUTE_TRIAGE,
                rule=rule.name,
                note=f"tipo desconocido {unknown_kind!r}: la regla proponía {rule.route!r}; "
                "se envía a triaje",
            )

        final_kind = given if given is not None else rule.kind
        route = rule.route
        note: str | None = None
        if final_kind is not None and final_kind not in _ROUTE_KINDS[_route_key(route)]:
            downgraded = _DOWNGRADE[final_kind]
            note = (
                f"la regla {rule.name!r} proponía {route!r}, que no corresponde a una "
                f"{final_kind}; se cambia a {downgraded!r}"
            )
            route = downgraded
        department = parse_route(route)[1]
        return Classification(
            kind=final_kind,
            category=new_category,
            route=route,
            department=department,
            rule=rule.name,
            note=note,
        )
