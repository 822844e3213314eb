import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.tracking import (
    ALPHABET,
    TRACKING_CODE_PATTERN,
    is_valid_tracking_code,
    new_tracking_code,
    normalize_tracking_code,
)

KNOWN = "2025-7K3-M9Q-XD2"
years = st.integers(min_value=1000, max_value=9999)


def test_known_code_is_canonical() -> None:
    assert normalize_tracking_code(KNOWN) == KNOWN
    assert re.fullmatch(TRACKING_CODE_PATTERN, KNOWN)


@pytest.mark.parametrize(
    "typed",
    [
        "2025-7k3-m9q-xd2",
        "20257K3M9QXD2",
        " 2025 7K3 M9Q XD2 ",
        "2025–7K3—M9Q-XD2",
        "2O25-7K3-M9Q-XD2",  # letter O for zero
    ],
)
def test_tolerated_spellings(typed: str) -> None:
    assert normalize_tracking_code(typed) == KNOWN


def test_confusable_letters_map_to_digits() -> None:
    body = "2025" + "1" * 4 + "0" * 4
    code = next(c for c in (body + s for s in ALPHABET) if is_valid_tracking_code(c))
    typed = code[:4] + "IlLi" + "oOoO" + code[-1]
    assert normalize_tracking_code(typed) == normalize_tracking_code(code)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "2025",
        "2025-7K3-M9Q-XD",  # check symbol missing
        "2025-7K3-M9Q-XD23",  # one too many
        "2025-7K3-M9Q-XD3",  # wrong check symbol
        "2025-7U3-M9Q-XD2",  # U is not in the alphabet
        "ABCD-7K3-M9Q-XD2",  # year must be digits
        "2025-7K3-M9Q-XD2!",
        "2025_7K3_M9Q_XD2",
        "２０２５-7K3-M9Q-XD2",  # full-width digits
    ],
)
def test_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="código de seguimiento"):
        normalize_tracking_code(bad)
    assert not is_valid_tracking_code(bad)


@pytest.mark.parametrize("year", [0, 999, 10000, -2025])
def test_year_must_have_four_digits(year: int) -> None:
    with pytest.raises(ValueError, match="año"):
        new_tracking_code(year)


def test_codes_are_random() -> None:
    assert len({new_tracking_code(2025) for _ in range(1000)}) == 1000


@given(years)
def test_generated_codes_are_canonical(year: int) -> None:
    code = new_tracking_code(year)
    assert code.startswith(f"{year}-")
    assert re.fullmatch(TRACKING_CODE_PATTERN, code)
    assert normalize_tracking_code(code) == code
    assert normalize_tracking_code(code.lower().replace("-", "")) == code


@given(years, st.data())
def test_single_substitution_is_detected(year: int, data: st.DataObject) -> None:
    compact = new_tracking_code(year).replace("-", "")
    position = data.draw(st.integers(0, len(compact) - 1))
    choices = "0123456789" if position < 4 else ALPHABET
    replacement = data.draw(st.sampled_from([c for c in choices if c != compact[position]]))
    corrupted = compact[:position] + replacement + compact[position + 1 :]
    with pytest.raises(ValueError):
        normalize_tracking_code(corrupted)


@given(years, st.data())
def test_adjacent_swap_is_detected(year: int, data: st.DataObject) -> None:
    compact = new_tracking_code(year).replace("-", "")
    position = data.draw(st.integers(0, len(compact) - 2))
    a, b = compact[position], compact[position + 1]
    if a == b:
        return
    swapped = compact[:position] + b + a + compact[position + 2 :]
    with pytest.raises(ValueError):
        normalize_tracking_code(swapped)


@given(st.text(max_size=30))
def test_garbage_only_raises_value_error(text: str) -> None:
    try:
        result = normalize_tracking_code(text)
    except ValueError:
        return
    assert re.fullmatch(TRACKING_CODE_PATTERN, result)
    assert normalize_tracking_code(result) == result
