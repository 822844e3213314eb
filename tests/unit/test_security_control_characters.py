"""Control characters are refused by the one text rule every door reads, and never reach XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.intake.open311.format import to_xml
from shared.contract import SubmissionInvalid, validate_submission
from shared.validation import InvalidValue, clean_text, control_character

ATTACK = "Calle 50\x01 casa\x0b 12\x1f, Bella Vista"


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85"])
def test_clean_text_refuses_a_control_character_naming_it(bad: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        clean_text(f"antes{bad}después", min_len=1, max_len=100)
    assert raised.value.rule == "control_characters"
    assert f"U+{ord(bad):04X}" in raised.value.message


def test_tab_and_line_breaks_are_text_where_the_field_has_several_lines() -> None:
    text = "primera línea\r\nsegunda\tcolumna\núltima"
    assert clean_text(text, min_len=1, max_len=100) == text
    with pytest.raises(InvalidValue):
        clean_text(text, min_len=1, max_len=100, multiline=False)


def test_a_lone_surrogate_is_refused_like_a_control_character() -> None:
    assert control_character("a\ud800b") == "U+D800"


def test_a_submission_with_control_characters_in_its_address_is_refused() -> None:
    data = {
        "kind": "queja",
        "description": "La basura no se recoge desde hace dos semanas en la calle.",
        "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
        "notify": {"email": "ana@example.com"},
        "location": {"address": ATTACK},
    }
    with pytest.raises(SubmissionInvalid) as raised:
        validate_submission(data)
    assert [(e.field, e.rule) for e in raised.value.errors] == [
        ("location.address", "control_characters")
    ]


def test_a_name_may_not_hold_a_line_break() -> None:
    data = {
        "kind": "sugerencia",
        "description": "Sugiero más bancas en el parque central del barrio.",
        "citizen": {"full_name": "Ana\nPérez"},
        "notify": {"email": "ana@example.com"},
    }
    with pytest.raises(SubmissionInvalid) as raised:
        validate_submission(data)
    assert [(e.field, e.rule) for e in raised.value.errors] == [
        ("citizen.full_name", "control_characters")
    ]


def test_xml_output_drops_what_xml_cannot_carry_and_stays_well_formed() -> None:
    body = to_xml("service_requests", [{"address": ATTACK + "\x00\ufffe", "note": "a < b & c"}])
    root = ET.fromstring(body)
    request = root.find("request")
    assert request is not None
    assert request.findtext("address") == "Calle 50 casa 12, Bella Vista"
    assert request.findtext("note") == "a < b & c"
