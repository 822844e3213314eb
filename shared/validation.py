"""Input validators and the Spanish rendering of validation errors.

Pure functions, no I/O. Each ``normalize_*`` takes the raw string, returns the canonical value
and raises :class:`InvalidValue` (a :class:`ValueError`) whose message is Spanish and names the
rule; the caller (a pydantic model) attaches the field name. :func:`spanish_errors` turns a
pydantic ``ValidationError`` into ``[{"field", "rule", "message"}]`` for API responses and for
``SubmissionRejected`` events.

Panamanian cédula formats (what :func:`normalize_cedula` accepts), from the format validator
widely reused in Panama, github.com/merlos/cedula-panama (README "Patrones aceptados", its regex,
issue #1 on the newer ``E-<provincia>-<asiento>`` numbering and PR #4 "Soporte para 6 digitos en
el tomo", example ``E-8-102017``):

* ``<provincia>-<folio>-<asiento>``: province 1–13, e.g. ``8-123-4567``, ``13-1234-123456``;
* ``PE-<folio>-<asiento>``: Panamanian born abroad;
* ``E-<folio>-<asiento>``: foreigner with cédula (also the newer ``E-8-123456``);
* ``N-<folio>-<asiento>``: naturalized;
* ``<provincia>AV-<folio>-<asiento>``: Panamanian registered before the current system
  ("antes de la vigencia");
* ``<provincia>PI-<folio>-<asiento>``: indigenous population.

``folio`` (also called libro/tomo/imagen) has 1–4 digits, ``asiento`` (ficha) 1–6 digits. No other
prefix is accepted (``SB``, listed by some third-party validators, has no source and is refused).

Other identity documents (:func:`normalize_identity`, one entry for every door): a **passport**
(foreigners without cédula): 5–20 letters and digits, as printed; the **RUC** of a juridical person
(``<número>-<tomo o rollo>-<asiento o año>``, e.g. ``155587169-2-2014`` or ``253-92-57027``, the
shapes the DGI publishes) with its **DV** (dígito verificador, 1–2 digits) given apart. The pair
is checked arithmetically (:func:`ruc_dv_matches`): the DGI's modulus-11 algorithm for a juridical
person's RUC, as implemented by python-stdnum (``stdnum/pa/ruc.py``, which cites the DGI's
"Algoritmo para el cálculo del dígito verificador de la RUC") and by
github.com/apple314159/panama-dv (``ruc.py``, citing the DGI's ``DV_RUC.pdf``); both agree, and
the valid pairs in ``tests/unit/test_validation.py`` come from python-stdnum's test data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError

__all__ = [
    "CEDULA_EXAMPLES",
    "ID_TYPES",
    "PANAMA_BOUNDS",
    "Bounds",
    "InvalidValue",
    "SpanishValidationError",
    "check_in_panama",
    "clean_text",
    "control_character",
    "normalize_cedula",
    "normalize_dv",
    "normalize_email",
    "normalize_identity",
    "normalize_passport",
    "normalize_phone",
    "normalize_ruc",
    "ruc_check_digits",
    "ruc_dv_matches",
    "spanish_errors",
]


class InvalidValue(ValueError):
    """A ``ValueError`` that also carries a short machine-readable rule name (e.g. ``cedula``).

    pydantic wraps it as a ``value_error`` and keeps the instance in ``ctx["error"]``, which is
    how :func:`spanish_errors` recovers the rule.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


# Hyphen look-alikes that word processors and phone keyboards produce.
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))
_WHITESPACE = re.compile(r"\s+")

# --- cédula ---------------------------------------------------------------------------------

_PROVINCE = r"(?:1[0-3]|[1-9])"
_CEDULA_RE = re.compile(
    rf"""
    (?:
        (?:PE|E|N)                     # letter series without province
      | {_PROVINCE}(?:AV|PI)?          # province 1-13, optionally AV / PI
    )
    -\d{{1,4}}                         # folio (libro, tomo)
    -\d{{1,6}}                         # asiento (ficha)
    """,
    re.VERBOSE | re.ASCII,
)

CEDULA_EXAMPLES = (
    "8-123-4567",
    "13-1234-123456",
    "PE-1-123",
    "E-8-12345",
    "N-12-345",
    "1AV-12-345",
    "4PI-12-1234",
)


def normalize_cedula(value: str) -> str:
    """Return the cédula uppercased, without spaces, hyphens kept (``8-123-4567``)."""
    candidate = _WHITESPACE.sub("", value.translate(_DASHES)).upper()
    if not _CEDULA_RE.fullmatch(candidate):
        raise InvalidValue(
            "cedula",
            "cédula panameña inválida: use provincia (1 a 13)-folio-asiento o un prefijo "
            f"especial; formatos aceptados {', '.join(CEDULA_EXAMPLES)}",
        )
    return candidate


# --- other identity documents ---------------------------------------------------------------

#: The identity documents a petitioner may give (``id_type``); the cédula is the default.
ID_TYPES: tuple[str, ...] = ("cedula", "pasaporte", "ruc")

_PASSPORT_RE = re.compile(r"[A-Z0-9]{5,20}", re.ASCII)
# A juridical person's RUC; 1–2 digits before the first hyphen is a natural person's cédula.
_RUC_RE = re.compile(r"\d{3,10}-\d{1,4}-\d{1,6}", re.ASCII)
_DV_RE = re.compile(r"\d{1,2}", re.ASCII)


def normalize_passport(value: str) -> str:
    """Return the passport number uppercased, without spaces or hyphens."""
    candidate = re.sub(r"[\s-]", "", value.translate(_DASHES)).upper()
    if not _PASSPORT_RE.fullmatch(candidate):
        raise InvalidValue(
            "pasaporte",
            "número de pasaporte inválido: use de 5 a 20 letras y dígitos, como figura en el "
            "pasaporte (ej. PA1234567)",
        )
    return candidate


def normalize_ruc(value: str) -> str:
    """Return a juridical person's RUC without spaces, hyphens kept (``155587169-2-2014``)."""
    candidate = _WHITESPACE.sub("", value.translate(_DASHES))
    if not _RUC_RE.fullmatch(candidate):
        raise InvalidValue(
            "ruc",
            "RUC de persona jurídica inválido: use número (3 a 10 dígitos)-tomo-asiento, "
            "sin el DV (ej. 155587169-2-2014 o 253-92-57027); el DV va en su propio campo",
        )
    return candidate


def normalize_dv(value: str) -> str:
    """Return the RUC's dígito verificador (1 or 2 digits)."""
    candidate = _WHITESPACE.sub("", value).upper().removeprefix("DV").removeprefix(".")
    if not _DV_RE.fullmatch(candidate):
        raise InvalidValue("dv", "dígito verificador (DV) inválido: uno o dos dígitos (ej. 09)")
    return candidate


# The DGI's cross-reference for an "old" juridical RUC (digits 4–6 of the padded number are
# 000–004): digits 6–7 are replaced by this value before weighting.
_RUC_OLD_CROSS_REFERENCE: dict[str, str] = {
    "00": "00", "10": "01", "11": "02", "12": "03", "13": "04", "14": "05", "15": "06",
    "16": "07", "17": "08", "18": "09", "19": "01", "20": "02", "21": "03", "22": "04",
    "23": "07", "24": "08", "25": "09", "26": "02", "27": "03", "28": "04", "29": "05",
    "30": "06", "31": "07", "32": "08", "33": "09", "34": "01", "35": "02", "36": "03",
    "37": "04", "38": "05", "39": "06", "40": "07", "41": "08", "42": "09", "43": "01",
    "44": "02", "45": "03", "46": "04", "47": "05", "48": "06", "49": "07",
}  # fmt: skip


def _ruc_mod11_digit(digits: str, *, old: bool) -> str:
    """One DV digit: weights 2, 3, … from the right (an old RUC repeats 11), modulus 11."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        weight = position + 1 if old and position >= 10 else position + 2
        total += weight * int(char)
    remainder = total % 11
    return str(11 - remainder) if remainder > 1 else "0"


def ruc_check_digits(ruc: str) -> str:
    """The two-digit DV the DGI's algorithm gives a juridical RUC (``253-92-57027`` → ``76``)."""
    number, tomo, asiento = normalize_ruc(ruc).split("-")
    digits = number.zfill(10) + tomo.zfill(4) + asiento.zfill(6)
    old = digits[3:5] == "00" and digits[5] in "01234"
    if old:
        digits = digits[:5] + _RUC_OLD_CROSS_REFERENCE.get(digits[5:7], digits[5:7]) + digits[7:]
    first = _ruc_mod11_digit(digits, old=old)
    return first + _ruc_mod11_digit(digits + first, old=old)


def ruc_dv_matches(ruc: str, dv: str) -> bool:
    """Whether ``dv`` (as printed: ``9``, ``09``, ``DV 76``) is the juridical RUC's DV."""
    try:
        return normalize_dv(dv).zfill(2) == ruc_check_digits(ruc)
    except InvalidValue:
        return False


def normalize_identity(id_type: str, value: str) -> str:
    """The document number checked by its type's rule (the one place every door uses)."""
    if id_type == "pasaporte":
        return normalize_passport(value)
    if id_type == "ruc":
        return normalize_ruc(value)
    return normalize_cedula(value)


# --- phone ----------------------------------------------------------------------------------

_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
_PANAMA_CODE = "507"
# Fixed lines have 7 digits; since 2008 mobiles have 8 and start with 6, so no 7-digit 6xx.
_PANAMA_LANDLINE = re.compile(r"[2-57-9]\d{6}", re.ASCII)
_PANAMA_MOBILE = re.compile(r"6\d{7}", re.ASCII)
_E164 = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)
_PHONE_MESSAGE = (
    "teléfono inválido: use un número panameño de 7 dígitos (fijo, ej. 223-4567) u 8 dígitos "
    "que empiece por 6 (celular, ej. 6123-4567), con o sin +507, o un número internacional "
    "con + y código de país (ej. +50761234567)"
)


def _is_panamanian_national(digits: str) -> bool:
    return bool(_PANAMA_LANDLINE.fullmatch(digits) or _PANAMA_MOBILE.fullmatch(digits))


def normalize_phone(value: str) -> str:
    """Return the number in E.164 (``+50761234567``).

    Accepts a Panamanian landline (7 digits) or mobile (8 digits starting with 6) with an
    optional ``+507``/``507``/``00507`` prefix, or any other number in international form
    (``+`` or ``00``, then the country code). Spaces, hyphens, dots and parentheses are ignored.
    """
    compact = _PHONE_SEPARATORS.sub("", value.translate(_DASHES))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+"):
        if compact.startswith("+" + _PANAMA_CODE):
            national = compact[1 + len(_PANAMA_CODE) :]
            if national.isascii() and national.isdigit() and _is_panamanian_national(national):
                return compact
            raise InvalidValue("phone", _PHONE_MESSAGE)
        if _E164.fullmatch(compact) and compact.isascii():
            return compact
        raise InvalidValue("phone", _PHONE_MESSAGE)
    if not (compact.isascii() and compact.isdigit()):
        raise InvalidValue("phone", _PHONE_MESSAGE)
    if _is_panamanian_national(compact):
        return f"+{_PANAMA_CODE}{compact}"
    national = compact.removeprefix(_PANAMA_CODE)
    if national != compact and _is_panamanian_national(national):
        return f"+{_PANAMA_CODE}{national}"
    raise InvalidValue("phone", _PHONE_MESSAGE)


# --- e-mail ---------------------------------------------------------------------------------

# email_validator explains in English; the citizen reads Spanish. Known reasons are translated,
# anything else gets a generic hint (its English text is never shown).
_EMAIL_REASONS: tuple[tuple[str, str], ...] = (
    ("must have an @-sign", "falta el símbolo @"),
    ("something after the @-sign", "falta el dominio después de @"),
    ("something before the @-sign", "falta el nombre antes de @"),
    ("should have a period", "el dominio debe tener un punto (ej. correo.com)"),
    ("two periods in a row", "no puede tener dos puntos seguidos"),
    ("invalid characters", "contiene caracteres no permitidos"),
    ("too long", "es demasiado largo"),
    ("hyphen", "el dominio no puede empezar ni terminar con guion"),
    ("cannot start with a period", "no puede empezar con un punto"),
    ("cannot end with a period", "no puede terminar con un punto"),
    ("special-use or reserved name", "el dominio no es válido para recibir correo"),
)


def normalize_email(value: str) -> str:
    """Return the normalized address (domain lowercased, Unicode normalized); no DNS lookup."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        english = str(exc)
        reason = next(
            (spanish for needle, spanish in _EMAIL_REASONS if needle in english),
            "revise el formato (ej. nombre@correo.com)",
        )
        raise InvalidValue("email", f"correo electrónico inválido: {reason}") from None


# --- location -------------------------------------------------------------------------------


class Bounds(NamedTuple):
    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float


# Panama spans about 7°12'N–9°39'N and 77°09'W–83°03'W, islands included (Coiba, Jicarita,
# Montuosa, Bocas del Toro, Guna Yala); rounded outwards. A box, so it also admits border strips
# of Costa Rica and Colombia: it catches swapped or mistyped coordinates, not the exact border.
PANAMA_BOUNDS = Bounds(min_lat=7.0, max_lat=9.7, min_lon=-83.1, max_lon=-77.1)


def check_in_panama(lat: float, lon: float) -> None:
    """Raise when the point falls outside Panama's bounding box (:data:`PANAMA_BOUNDS`)."""
    b = PANAMA_BOUNDS
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidValue("in_panama", "coordenadas inválidas: deben ser números finitos")
    if not (b.min_lat <= lat <= b.max_lat and b.min_lon <= lon <= b.max_lon):
        raise InvalidValue(
            "in_panama",
            "la ubicación está fuera de Panamá: la latitud debe estar entre "
            f"{b.min_lat} y {b.max_lat} y la longitud entre {b.min_lon} y {b.max_lon}",
        )


# --- free text ------------------------------------------------------------------------------


# Control characters (C0, DEL, C1), UTF-16 surrogates and the two non-characters XML 1.0
# forbids: none belongs in a citizen's or an official's text, several cannot be stored
# (PostgreSQL refuses U+0000) and none can be written in an XML document.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_CONTROL_OR_LINE_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def control_character(value: str, *, multiline: bool = True) -> str | None:
    """The first character ``value`` may not contain, as ``U+XXXX``; ``None`` if it is clean.

    Tab, line feed and carriage return are text where ``multiline`` (a description, a
    reason); a one-line field (a name, a category, a query parameter) admits none of them.
    """
    found = (_CONTROL if multiline else _CONTROL_OR_LINE_BREAK).search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def clean_text(value: str, *, min_len: int, max_len: int, multiline: bool = True) -> str:
    """Strip surrounding whitespace, refuse control characters (:func:`control_character`)
    and enforce ``min_len <= len <= max_len`` on the result."""
    if min_len < 0 or min_len > max_len:
        raise ValueError(f"invalid bounds: min_len={min_len}, max_len={max_len}")
    text = value.strip()
    bad = control_character(text, multiline=multiline)
    if bad is not None:
        allowed = "; se admiten tabulador y saltos de línea" if multiline else ""
        raise InvalidValue(
            "control_characters",
            f"contiene un carácter de control no permitido ({bad}){allowed}",
        )
    if not min_len <= len(text) <= max_len:
        raise InvalidValue(
            "text_length",
            f"debe tener entre {min_len} y {max_len} caracteres (tiene {len(text)})",
        )
    return text


# --- pydantic errors in Spanish -------------------------------------------------------------

# Prefixes FastAPI puts before the field path; they say where the value came from, not which
# field it is.
_LOCATION_PREFIXES = frozenset({"body", "query", "path", "header", "cookie"})

_DATETIME_MESSAGE = "debe ser una fecha y hora (RFC 3339, ej. 2025-01-31T14:30:00-05:00)"

_FIXED_MESSAGES: dict[str, str] = {
    "missing": "campo obligatorio",
    "missing_argument": "campo obligatorio",
    "missing_keyword_only_argument": "campo obligatorio",
    "missing_positional_only_argument": "campo obligatorio",
    "extra_forbidden": "campo no permitido",
    "unexpected_keyword_argument": "campo no permitido",
    "unexpected_positional_argument": "campo no permitido",
    "string_type": "debe ser texto",
    "string_unicode": "debe ser texto Unicode válido",
    "string_not_ascii": "debe contener solo caracteres ASCII",
    "int_type": "debe ser un número entero",
    "int_parsing": "debe ser un número entero",
    "int_parsing_size": "el número entero es demasiado grande",
    "int_from_float": "debe ser un número entero, sin decimales",
    "float_type": "debe ser un número",
    "float_parsing": "debe ser un número",
    "finite_number": "debe ser un número finito",
    "decimal_type": "debe ser un número decimal",
    "decimal_parsing": "debe ser un número decimal",
    "bool_type": "debe ser verdadero o falso",
    "bool_parsing": "debe ser verdadero o falso",
    "json_invalid": "el contenido no es JSON válido",
    "json_type": "debe ser un texto JSON",
    "model_type": "debe ser un objeto",
    "model_attributes_type": "debe ser un objeto",
    "dict_type": "debe ser un objeto",
    "mapping_type": "debe ser un objeto",
    "dataclass_type": "debe ser un objeto",
    "list_type": "debe ser una lista",
    "tuple_type": "debe ser una lista",
    "set_type": "debe ser una lista sin repetidos",
    "iterable_type": "debe ser una lista",
    "none_required": "debe estar vacío (null)",
    "uuid_type": "debe ser un UUID válido",
    "uuid_parsing": "debe ser un UUID válido",
    "uuid_version": "debe ser un UUID de la versión esperada",
    "date_type": "debe ser una fecha (AAAA-MM-DD)",
    "date_parsing": "debe ser una fecha (AAAA-MM-DD)",
    "date_from_datetime_parsing": "debe ser una fecha (AAAA-MM-DD)",
    "date_from_datetime_inexact": "debe ser una fecha sin hora",
    "date_past": "debe ser una fecha pasada",
    "date_future": "debe ser una fecha futura",
    "datetime_type": _DATETIME_MESSAGE,
    "datetime_parsing": _DATETIME_MESSAGE,
    "datetime_from_date_parsing": _DATETIME_MESSAGE,
    "datetime_object_invalid": "fecha y hora inválida",
    "datetime_past": "debe ser una fecha y hora pasada",
    "datetime_future": "debe ser una fecha y hora futura",
    "timezone_aware": "debe incluir la zona horaria (ej. -05:00)",
    "timezone_naive": "no debe incluir zona horaria",
    "time_type": "debe ser una hora (HH:MM:SS)",
    "time_parsing": "debe ser una hora (HH:MM:SS)",
    "url_type": "debe ser una URL válida",
    "url_parsing": "debe ser una URL válida",
    "url_syntax_violation": "debe ser una URL válida",
    "url_scheme": "la URL debe usar un esquema permitido (ej. https)",
    "url_too_long": "la URL es demasiado larga",
    "string_pattern_mismatch": "no tiene el formato esperado",
    "frozen_field": "no se puede modificar",
    "frozen_instance": "no se puede modificar",
    "is_instance_of": "tipo de dato no válido",
    "bytes_type": "debe ser texto",
    "callable_type": "tipo de dato no válido",
}

_TEMPLATES: dict[str, str] = {
    "string_too_short": "debe tener al menos {min_length} caracteres",
    "string_too_long": "debe tener como máximo {max_length} caracteres",
    "too_short": "debe tener al menos {min_length} elementos",
    "too_long": "debe tener como máximo {max_length} elementos",
    "greater_than": "debe ser mayor que {gt}",
    "greater_than_equal": "debe ser mayor o igual que {ge}",
    "less_than": "debe ser menor que {lt}",
    "less_than_equal": "debe ser menor o igual que {le}",
    "multiple_of": "debe ser múltiplo de {multiple_of}",
    "decimal_max_digits": "debe tener como máximo {max_digits} dígitos",
    "decimal_max_places": "debe tener como máximo {decimal_places} decimales",
    "decimal_whole_digits": "debe tener como máximo {whole_digits} dígitos antes del punto decimal",
    "literal_error": "debe ser uno de: {expected}",
    "enum": "debe ser uno de: {expected}",
    "union_tag_invalid": "debe ser uno de: {expected_tags}",
    "union_tag_not_found": "falta el campo '{discriminator}' que indica el tipo",
}

_VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion failed, ")


def _field_path(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in _LOCATION_PREFIXES:
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


def _spanish_list(expected: str) -> str:
    """``"'a', 'b' or 'c'"`` (pydantic's wording) → ``"'a', 'b', 'c'"``."""
    head, sep, last = expected.rpartition(" or ")
    return f"{head}, {last}" if sep else expected


def _translate(error_type: str, ctx: Mapping[str, Any], msg: str) -> tuple[str, str]:
    """Return ``(rule, Spanish message)`` for one pydantic error."""
    if error_type in {"value_error", "assertion_error"}:
        cause = ctx.get("error")
        if isinstance(cause, InvalidValue):
            return cause.rule, cause.message
        text = str(cause) if cause is not None else msg
        for prefix in _VALUE_ERROR_PREFIXES:
            text = text.removeprefix(prefix)
        return error_type, text
    if error_type in _FIXED_MESSAGES:
        return error_type, _FIXED_MESSAGES[error_type]
    template = _TEMPLATES.get(error_type)
    if template is not None:
        values = {key: str(value) for key, value in ctx.items()}
        for key in ("expected", "expected_tags"):
            if key in values:
                values[key] = _spanish_list(values[key])
        try:
            return error_type, template.format_map(values)
        except KeyError:
            pass
    return error_type, msg


def spanish_errors(
    exc: ValidationError | Sequence[Mapping[str, Any]],
) -> list[dict[str, str]]:
    """Render validation errors as ``[{"field", "rule", "message"}]`` in Spanish.

    Takes a pydantic ``ValidationError`` or its ``errors()`` list (FastAPI's
    ``RequestValidationError.errors()`` has the same shape). ``field`` is the dotted location
    without FastAPI's ``body``/``query``/… prefix (``citizen.id_number``, ``items.0.name``;
    empty for an error about the whole document). The rejected input is never copied out: it
    may be personal data.
    """
    errors: Sequence[Mapping[str, Any]] = (
        exc.errors(include_url=False, include_input=False)
        if isinstance(exc, ValidationError)
        else exc
    )
    rendered: list[dict[str, str]] = []
    for error in errors:
        error_type = str(error.get("type", "value_error"))
        ctx = error.get("ctx") or {}
        rule, message = _translate(error_type, ctx, str(error.get("msg", "")))
        field = "" if error_type == "json_invalid" else _field_path(error.get("loc", ()))
        rendered.append({"field": field, "rule": rule, "message": message})
    return rendered


class SpanishValidationError(Exception):
    """Rejected input, rendered for the caller: ``errors`` as :func:`spanish_errors` returns."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        summary = "; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
        )
        super().__init__(summary or "datos inválidos")
        self.errors = errors

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> SpanishValidationError:
        return cls(spanish_errors(exc))
