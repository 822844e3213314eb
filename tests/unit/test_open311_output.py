"""What Open311 GET requests shows of a case's place."""

from __future__ import annotations

import pytest

from services.intake.open311.catalog import build_catalog
from services.intake.open311.requests import public_coordinates
from shared.config import InstitutionConfig, Open311Output

PLACE = {"lat": 8.991234, "lon": -79.512345, "address": "Calle 73, casa 21"}


def test_coordinates_are_rounded_exact_or_omitted_as_the_service_says() -> None:
    assert public_coordinates(PLACE, "rounded") == (8.991, -79.512)
    assert public_coordinates(PLACE, "exact") == (8.991234, -79.512345)
    assert public_coordinates(PLACE, "none") == (None, None)
    assert public_coordinates({}, "exact") == (None, None)


def test_a_service_setting_overrides_the_rounded_default() -> None:
    output = Open311Output(public_location={"denuncia-conducta-de-funcionarios": "none"})
    assert output.location_mode("denuncia-conducta-de-funcionarios") == "none"
    assert output.location_mode("queja-basura") == "rounded"
    assert output.location_mode(None) == "rounded"


def test_an_unknown_service_in_public_location_is_a_configuration_error() -> None:
    config = InstitutionConfig.model_validate(
        {"open311": {"public_location": {"queja-inexistente": "exact"}}}
    )
    with pytest.raises(ValueError, match="queja-inexistente"):
        build_catalog(config)
