"""Staff search over cases: one rule read by the API (``GET /api/v1/cases?q=``) and the console.

A query is split into words; a case matches when every word is found in its searchable
text: tracking code, 311 ticket, description, the citizen's name, identity number, e-mail
and phone, the notification and location addresses. Case and accents are ignored, and a
word with digits also matches its digits alone (``6123-4567`` finds ``+50761234567``).

On PostgreSQL the text is the generated column ``cases.search_text`` (migration 0004:
``unaccent``, and a ``pg_trgm`` GIN index, so ``LIKE '%word%'`` is an index scan). SQLite,
the embedded store, compares lower-cased text with ``LIKE``: accents there must be typed as
stored.

The words are personal data: nothing here logs them, and callers must not either.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Text, and_, func, literal, literal_column, or_

from shared.contract import FieldError
from shared.db.models import CaseRow

MIN_LENGTH = 3
MAX_LENGTH = 200
MAX_WORDS = 8
TRIGRAM = 3  # pg_trgm indexes words of at least this many characters
_DIGITS = re.compile(r"\D+")


def fold(text: str) -> str:
    """Lower case without accents (what ``d311_fold`` does in PostgreSQL)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


class InvalidSearch(ValueError):
    """A search that cannot be run; ``error`` names the field and the rule (Spanish)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.error = FieldError(field="q", rule=rule, message=message)


def search_words(query: str) -> list[str]:
    """The words of a search, folded; raise :class:`InvalidSearch` when unusable."""
    text = " ".join(query.split())
    if len(text) < MIN_LENGTH:
        raise InvalidSearch("min_length", f"escriba al menos {MIN_LENGTH} caracteres para buscar")
    if len(text) > MAX_LENGTH:
        raise InvalidSearch("max_length", f"como máximo {MAX_LENGTH} caracteres")
    words = [w for w in dict.fromkeys(fold(w) for w in text.split(" ")) if len(w) >= 2]
    if not words:
        words = [fold(text)]
    if len(words) > MAX_WORDS:
        raise InvalidSearch("max_words", f"como máximo {MAX_WORDS} palabras")
    return words


def _pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _variants(word: str) -> list[str]:
    digits = _DIGITS.sub("", word)
    if len(digits) >= 4 and digits != word:
        return [word, digits]
    return [word]


def _searchable_postgresql() -> ColumnElement[str]:
    # A generated column (migration 0004), not mapped: nothing writes it but PostgreSQL.
    return literal_column("cases.search_text", Text)


def _searchable_sqlite() -> ColumnElement[str]:
    parts: list[ColumnElement[str]] = [
        func.coalesce(CaseRow.tracking_code, ""),
        func.coalesce(CaseRow.external_ref, ""),
        func.coalesce(CaseRow.description, ""),
    ]
    for column, keys in (
        (CaseRow.citizen, ("full_name", "id_number", "email", "phone")),
        (CaseRow.notify, ("email", "phone", "address")),
        (CaseRow.location, ("address", "corregimiento", "district")),
    ):
        parts += [func.coalesce(func.json_extract(column, f"$.{key}"), "") for key in keys]
    joined: ColumnElement[str] = literal("")
    for part in parts:
        joined = joined + " " + part
    return func.lower(joined)


def _contains(text: ColumnElement[str], value: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql" and len(value) < TRIGRAM:
        # Too short for a trigram: the index cannot serve it, and as a LIKE it would make
        # the planner gather every case the other words match before sorting them. A plain
        # substring test keeps it a filter on the rows the list walks.
        return func.strpos(text, value) > 0
    return text.like(_pattern(value), escape="\\")


def search_clause(words: Sequence[str], dialect: str) -> ColumnElement[bool]:
    """Every word (or its digits) somewhere in the case's searchable text."""
    text: ColumnElement[str] = (
        _searchable_postgresql() if dialect == "postgresql" else _searchable_sqlite()
    )
    return and_(*(or_(*(_contains(text, v, dialect) for v in _variants(word))) for word in words))
