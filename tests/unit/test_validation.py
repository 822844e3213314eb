import math
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.validation import (
    CEDULA_EXAMPLES,
    PANAMA_BOUNDS,
    InvalidValue,
    SpanishValidationError,
    check_in_panama,
    clean_text,
    control_character,
    normalize_cedula,
    normalize_dv,
    normalize_email,
    normalize_identity,
    normalize_phone,
    normalize_ruc,
    ruc_check_digits,
    ruc_dv_matches,
    spanish_errors,
)

# --- cédula ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8-123-4567", "8-123-4567"),
        ("1-1-1", "1-1-1"),
        ("13-1234-12345", "13-1234-12345"),
        ("9-1234-123456", "9-1234-123456"),
        ("PE-1-123", "PE-1-123"),
        ("pe-1234-123456", "PE-1234-123456"),
        ("E-8-12345", "E-8-12345"),
        ("E-8-102017", "E-8-102017"),
        ("E-1234-12345", "E-1234-12345"),
        ("N-12-345", "N-12-345"),
        ("1AV-12-345", "1AV-12-345"),
        ("13av-1234-12345", "13AV-1234-12345"),
        ("4PI-12-1234", "4PI-12-1234"),
        ("10PI-1-1", "10PI-1-1"),
        (" 8 - 123 - 4567 ", "8-123-4567"),
        ("8–123–4567", "8-123-4567"),
    ],
)
def test_cedula_accepted(raw: str, expected: str) -> None:
    assert normalize_cedula(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "8",
        "8-123",
        "81234567",
        "8 123 4567",
        "0-123-4567",  # no province 0
        "SB-12-345",  # no source for an SB series
        "8SB-12-345",
        "14-123-4567",  # provinces go up to 13
        "08-123-4567",
        "8-12345-1",  # folio has at most 4 digits
        "8-123-1234567",  # asiento has at most 6 digits
        "8--4567",
        "8-123-",
        "P-123-456",
        "EE-12-345",
        "AV-12-345",  # AV needs the province
        "PI-12-1234",  # PI needs the province
        "14AV-12-345",
        "8PE-12-345",
        "8E-12-345",
        "8-AV-12-345",
        "8-123-4567-1",
        "X-123-456",
        "8/123/4567",
        "٨-١٢٣-٤٥٦٧",  # Arabic-Indic digits
    ],
)
def test_cedula_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="cédula panameña inválida") as info:
        normalize_cedula(raw)
    assert isinstance(info.value, InvalidValue)
    assert info.value.rule == "cedula"


def test_cedula_message_lists_the_formats() -> None:
    with pytest.raises(ValueError) as info:
        normalize_cedula("nope")
    for example in CEDULA_EXAMPLES:
        assert example in str(info.value)


@st.composite
def cedulas(draw: st.DrawFn) -> str:
    province = str(draw(st.integers(1, 13)))
    prefix = draw(st.sampled_from(["PE", "E", "N", province, province + "AV", province + "PI"]))
    folio = draw(st.from_regex(r"[0-9]{1,4}", fullmatch=True))
    asiento = draw(st.from_regex(r"[0-9]{1,6}", fullmatch=True))
    return f"{prefix}-{folio}-{asiento}"


@given(cedulas(), st.booleans(), st.sampled_from(["", " ", "  "]))
def test_cedula_round_trips(cedula: str, lower: bool, pad: str) -> None:
    typed = pad + (cedula.lower() if lower else cedula).replace("-", f"{pad}-{pad}") + pad
    assert normalize_cedula(typed) == cedula
    assert normalize_cedula(cedula) == cedula


@given(st.text(max_size=25))
def test_cedula_garbage_only_raises_value_error(text: str) -> None:
    try:
        result = normalize_cedula(text)
    except ValueError:
        return
    assert normalize_cedula(result) == result
    assert result.isascii()


# --- phone ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6123-4567", "+50761234567"),
        ("61234567", "+50761234567"),
        ("+507 6123 4567", "+50761234567"),
        ("+5076123 4567", "+50761234567"),
        ("507 6123-4567", "+50761234567"),
        ("00507 6123 4567", "+50761234567"),
        ("223-4567", "+5072234567"),
        ("(507) 223-4567", "+5072234567"),
        ("+507 223 4567", "+5072234567"),
        ("800-1234", "+5078001234"),
        ("+1 202 555 0143", "+12025550143"),
        ("+34 612 34 56 78", "+34612345678"),
        ("0034612345678", "+34612345678"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_phone_accepted(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "123",
        "7123-4567",  # 8 digits must start with 6
        "612-3456",  # no 7-digit numbers start with 6 since 2008
        "123-4567",  # landlines do not start with 1
        "023-4567",
        "6123-45678",
        "+507 7123 4567",
        "+507 123 4567",
        "+507",
        "+0123456789",  # no country code starts with 0
        "+1234567",  # too short
        "+1234567890123456",  # longer than E.164 allows
        "12025550143",  # foreign numbers need the +
        "6123-456a",
        "+507 6123 4567 ext 2",
        "６１２３４５６７",  # full-width digits
    ],
)
def test_phone_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="teléfono inválido"):
        normalize_phone(raw)


@given(st.sampled_from(["6", "2", "3", "4", "5", "7", "8", "9"]), st.data())
def test_panamanian_phone_round_trips(first: str, data: st.DataObject) -> None:
    length = 7 if first == "6" else 6
    national = first + data.draw(st.from_regex(rf"[0-9]{{{length}}}", fullmatch=True))
    e164 = f"+507{national}"
    for typed in (national, f"507{national}", e164, f"+507 {national[:-4]}-{national[-4:]}"):
        assert normalize_phone(typed) == e164
    assert normalize_phone(e164) == e164


@given(st.text(max_size=20))
def test_phone_garbage_only_raises_value_error(text: str) -> None:
    try:
        result = normalize_phone(text)
    except ValueError:
        return
    assert result.startswith("+")
    assert result[1:].isascii() and result[1:].isdigit()
    assert normalize_phone(result) == result


# --- e-mail ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ana@example.com", "ana@example.com"),
        ("  Ana.Perez@Example.COM ", "Ana.Perez@example.com"),
        ("josé@correo.pa", "josé@correo.pa"),
    ],
)
def test_email_accepted(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "falta el símbolo @"),
        ("ana", "falta el símbolo @"),
        ("ana@", "falta el dominio"),
        ("@example.com", "falta el nombre"),
        ("ana@example", "punto"),
        ("ana@@example.com", ""),
        ("ana perez@example.com", "caracteres no permitidos"),
        ("ana..perez@example.com", "dos puntos seguidos"),
    ],
)
def test_email_rejected_in_spanish(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"^correo electrónico inválido: ") as info:
        normalize_email(raw)
    assert reason in str(info.value)
    assert "@-sign" not in str(info.value)


@given(st.text(max_size=40))
def test_email_garbage_only_raises_value_error(text: str) -> None:
    try:
        result = normalize_email(text)
    except ValueError:
        return
    assert normalize_email(result) == result


# --- location -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (8.9824, -79.5199),  # Ciudad de Panamá
        (9.3547, -79.9001),  # Colón
        (9.3403, -82.2420),  # Bocas del Toro
        (7.4500, -81.7500),  # Isla de Coiba
        (7.2000, -80.0300),  # Punta Mariato
        (9.5500, -78.9500),  # Guna Yala
        (8.4100, -77.2600),  # Darién
    ],
)
def test_points_in_panama(lat: float, lon: float) -> None:
    check_in_panama(lat, lon)


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (-79.5199, 8.9824),  # swapped
        (8.9824, 79.5199),  # sign lost
        (0.0, 0.0),
        (9.9281, -84.0907),  # San José, Costa Rica
        (4.7110, -74.0721),  # Bogotá
        (math.nan, -79.5),
        (8.9, math.inf),
    ],
)
def test_points_outside_panama(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match=r"Panamá|coordenadas"):
        check_in_panama(lat, lon)


def test_bounds_are_ordered() -> None:
    assert PANAMA_BOUNDS.min_lat < PANAMA_BOUNDS.max_lat
    assert PANAMA_BOUNDS.min_lon < PANAMA_BOUNDS.max_lon


@given(st.floats(allow_nan=True), st.floats(allow_nan=True))
def test_check_in_panama_agrees_with_bounds(lat: float, lon: float) -> None:
    b = PANAMA_BOUNDS
    inside = b.min_lat <= lat <= b.max_lat and b.min_lon <= lon <= b.max_lon
    if inside:
        check_in_panama(lat, lon)
    else:
        with pytest.raises(ValueError):
            check_in_panama(lat, lon)


# --- text -----------------------------------------------------------------------------------


def test_clean_text_strips_only_the_ends() -> None:
    assert clean_text("  hola  mundo \n", min_len=1, max_len=20) == "hola  mundo"


def test_clean_text_counts_after_trimming() -> None:
    with pytest.raises(ValueError) as info:
        clean_text("   corto   ", min_len=10, max_len=4000)
    assert str(info.value) == "debe tener entre 10 y 4000 caracteres (tiene 5)"


def test_clean_text_too_long() -> None:
    with pytest.raises(ValueError, match=r"entre 1 y 3 caracteres \(tiene 4\)"):
        clean_text("abcd", min_len=1, max_len=3)


def test_clean_text_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        clean_text("abc", min_len=5, max_len=2)


@given(st.text(max_size=50), st.integers(0, 20), st.integers(0, 40))
def test_clean_text_property(text: str, min_len: int, extra: int) -> None:
    max_len = min_len + extra
    try:
        result = clean_text(text, min_len=min_len, max_len=max_len)
    except ValueError:
        clean = control_character(text.strip()) is None
        assert not clean or not min_len <= len(text.strip()) <= max_len
        return
    assert result == text.strip()
    assert clean_text(result, min_len=min_len, max_len=max_len) == result


# --- spanish_errors -------------------------------------------------------------------------

Cedula = Annotated[str, AfterValidator(normalize_cedula)]


class Citizen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=2, max_length=5)
    id_number: Cedula


class Item(BaseModel):
    name: str
    qty: int = Field(gt=0, le=10)


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["denuncia", "queja", "sugerencia"]
    citizen: Citizen
    items: list[Item] = Field(default_factory=list, max_length=2)
    anonymous: bool = False
    score: float = 0.0


def _errors(payload: object) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        Submission.model_validate(payload)
    return spanish_errors(info.value)


def _by_field(errors: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {e["field"]: e for e in errors}


def test_missing_and_literal() -> None:
    errors = _by_field(_errors({"kind": "reclamo"}))
    assert errors["kind"] == {
        "field": "kind",
        "rule": "literal_error",
        "message": "debe ser uno de: 'denuncia', 'queja', 'sugerencia'",
    }
    assert errors["citizen"]["rule"] == "missing"
    assert errors["citizen"]["message"] == "campo obligatorio"


def test_nested_fields_and_custom_rule() -> None:
    errors = _by_field(
        _errors(
            {
                "kind": "queja",
                "citizen": {"name": "A", "id_number": "99-1-1", "phone": "x"},
                "items": [{"name": "ok", "qty": 0}, {"qty": "many"}],
                "anonymous": "quizás",
                "score": "alto",
                "extra": 1,
            }
        )
    )
    assert errors["citizen.name"]["message"] == "debe tener al menos 2 caracteres"
    assert errors["citizen.name"]["rule"] == "string_too_short"
    assert errors["citizen.id_number"]["rule"] == "cedula"
    assert errors["citizen.id_number"]["message"].startswith("cédula panameña inválida")
    assert errors["citizen.phone"]["message"] == "campo no permitido"
    assert errors["items.0.qty"]["message"] == "debe ser mayor que 0"
    assert errors["items.1.name"]["message"] == "campo obligatorio"
    assert errors["items.1.qty"]["message"] == "debe ser un número entero"
    assert errors["anonymous"]["message"] == "debe ser verdadero o falso"
    assert errors["score"]["message"] == "debe ser un número"
    assert errors["extra"]["rule"] == "extra_forbidden"


def test_lengths_and_bounds() -> None:
    errors = _by_field(
        _errors(
            {
                "kind": "queja",
                "citizen": {"name": "Demasiado", "id_number": "8-1-1"},
                "items": [{"name": "a", "qty": 11}] * 3,
            }
        )
    )
    assert errors["citizen.name"]["message"] == "debe tener como máximo 5 caracteres"
    assert errors["items"]["message"] == "debe tener como máximo 2 elementos"


def test_object_type() -> None:
    errors = _by_field(_errors({"kind": "queja", "citizen": "8-1-1"}))
    assert errors["citizen"]["message"] == "debe ser un objeto"
    errors = _by_field(_errors({"kind": "queja", "citizen": {"name": "Ana", "id_number": 8}}))
    assert errors["citizen.id_number"]["message"] == "debe ser texto"


def test_plain_value_error_loses_pydantic_prefix() -> None:
    def no_x(value: str) -> str:
        if "x" in value:
            raise ValueError("no puede contener x")
        return value

    class M(BaseModel):
        text: Annotated[str, AfterValidator(no_x)]

    with pytest.raises(ValidationError) as info:
        M.model_validate({"text": "xx"})
    assert spanish_errors(info.value) == [
        {"field": "text", "rule": "value_error", "message": "no puede contener x"}
    ]


def test_json_invalid() -> None:
    with pytest.raises(ValidationError) as info:
        Submission.model_validate_json("{not json")
    [error] = spanish_errors(info.value)
    assert error == {
        "field": "",
        "rule": "json_invalid",
        "message": "el contenido no es JSON válido",
    }


def test_fastapi_style_error_list() -> None:
    raw = [
        {"type": "missing", "loc": ("body", "citizen", "id_number"), "msg": "Field required"},
        {"type": "int_parsing", "loc": ("query", "page"), "msg": "x", "input": "a"},
        {"type": "some_future_type", "loc": ("body", "x"), "msg": "Something odd"},
        {"type": "greater_than_equal", "loc": ("body", "n"), "msg": "m", "ctx": {"ge": 1}},
        {"type": "enum", "loc": ("body", "k"), "msg": "m", "ctx": {"expected": "'a' or 'b'"}},
    ]
    assert spanish_errors(raw) == [
        {"field": "citizen.id_number", "rule": "missing", "message": "campo obligatorio"},
        {"field": "page", "rule": "int_parsing", "message": "debe ser un número entero"},
        {"field": "x", "rule": "some_future_type", "message": "Something odd"},
        {"field": "n", "rule": "greater_than_equal", "message": "debe ser mayor o igual que 1"},
        {"field": "k", "rule": "enum", "message": "debe ser uno de: 'a', 'b'"},
    ]


def test_personal_data_is_not_echoed() -> None:
    errors = _errors({"kind": "queja", "citizen": {"name": "Ana", "id_number": "secreto-123"}})
    assert "secreto" not in repr(errors)


def test_spanish_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        Submission.model_validate({"kind": "queja"})
    exc = SpanishValidationError.from_pydantic(info.value)
    assert exc.errors == spanish_errors(info.value)
    assert "citizen: campo obligatorio" in str(exc)


# --- other identity documents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_type", "raw", "expected"),
    [
        ("cedula", "8-123-4567", "8-123-4567"),
        ("pasaporte", "pa 123-4567", "PA1234567"),
        ("pasaporte", "X1234567", "X1234567"),
        ("ruc", "155587169-2-2014", "155587169-2-2014"),
        ("ruc", " 253-92-57027 ", "253-92-57027"),
    ],
)
def test_each_identity_document_is_checked_by_its_own_rule(
    id_type: str, raw: str, expected: str
) -> None:
    assert normalize_identity(id_type, raw) == expected


@pytest.mark.parametrize(
    ("id_type", "raw", "rule"),
    [
        ("pasaporte", "12", "pasaporte"),
        ("pasaporte", "PA#123456", "pasaporte"),
        ("ruc", "155587169", "ruc"),
        ("ruc", "155587169-2-2014 DV 9", "ruc"),  # the DV goes in its own field
        ("cedula", "PA1234567", "cedula"),
    ],
)
def test_a_document_that_breaks_its_rule_is_refused_naming_the_rule(
    id_type: str, raw: str, rule: str
) -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_identity(id_type, raw)
    assert info.value.rule == rule


def test_the_dv_is_one_or_two_digits() -> None:
    assert normalize_dv("DV 9") == "9"
    assert normalize_dv("09") == "09"
    with pytest.raises(InvalidValue, match="DV"):
        normalize_dv("123")


# Valid juridical RUC / DV pairs from python-stdnum's test data (github.com/arthurdejong/
# python-stdnum, tests/test_pa_ruc.doctest, "found online and should all be valid numbers"),
# new-style (nine-digit número) and old-style (cross-referenced) RUCs alike.
STDNUM_VALID_RUC_DV = [
    ("155587169-2-2014", "9"),
    ("253-92-57027", "76"),
    ("32812-2-249262", "63"),
    ("155625946-2-2016", "00"),
    ("130-377-34706", "2"),
    ("58223-2-855", "04"),
    ("410-0018-001604", "26"),
    ("2251567-0001-781630", "00"),
    ("1897412-1-722027", "1"),
    ("4265-60-58061", "00"),
    ("36101-76-262338", "11"),
    ("155698228-2-2020", "68"),
    ("85253 -1-376213", "18"),
    ("196-8-47222", "21"),
    ("3724-0103-053659", "43"),
]


@pytest.mark.parametrize(("ruc", "dv"), STDNUM_VALID_RUC_DV)
def test_the_dgi_check_digits_of_published_rucs_match(ruc: str, dv: str) -> None:
    assert ruc_check_digits(ruc) == dv.zfill(2)
    assert ruc_dv_matches(ruc, dv)
    assert ruc_dv_matches(ruc, f"DV {dv}")


@pytest.mark.parametrize(
    ("ruc", "dv"),
    [
        ("253-92-57027", "23"),
        ("253-92-57027", "26"),
        ("155587169-2-2014", "90"),
        ("155587169-2-2014", "abc"),
    ],
)
def test_a_dv_that_is_not_the_rucs_does_not_match(ruc: str, dv: str) -> None:
    assert not ruc_dv_matches(ruc, dv)


def test_a_natural_persons_cedula_is_not_a_juridical_ruc() -> None:
    with pytest.raises(InvalidValue) as info:
        normalize_ruc("8-123-4567")
    assert info.value.rule == "ruc"
