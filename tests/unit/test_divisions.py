"""The shipped list of Panama's provinces, comarcas, districts and corregimientos."""

import json
import unicodedata

from services.intake.web.filing import DIVISIONS, corregimiento_names, divisions
from shared.search import fold


def _plain(name: str) -> str:
    """Uppercase without accents, the spelling of the catalogues the list was checked against."""
    decomposed = unicodedata.normalize("NFD", name.upper())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def test_the_list_has_every_province_and_comarca_and_states_its_source() -> None:
    raw = json.loads(DIVISIONS.read_text(encoding="utf-8"))
    assert set(raw["_source"]) >= {"checked", "dataset", "date", "transformation", "counts"}
    assert "INEC" in raw["_source"]["dataset"] and "Censo" in raw["_source"]["dataset"]
    names = [p.name for p in divisions()]
    assert len(names) == len(set(names)) == 14
    assert {"Panamá Oeste", "Comarca Naso Tjër Di", "Comarca Guna Yala"} <= set(names)


def test_there_are_81_districts_besides_the_comarcas_without_districts() -> None:
    by_province = {p.name: [d.name for d in p.districts] for p in divisions()}
    for districts in by_province.values():
        assert districts and len(districts) == len(set(districts))
    without = ("Comarca Guna Yala", "Comarca Naso Tjër Di")
    assert sum(len(d) for name, d in by_province.items() if name not in without) == 81
    oeste = ["Arraiján", "Capira", "Chame", "La Chorrera", "San Carlos"]
    assert by_province["Panamá Oeste"] == oeste
    assert "Omar Torrijos Herrera" in by_province["Colón"]
    assert "Tierras Altas" in by_province["Chiriquí"]
    # Checked against the DGI e-invoice location catalogue (github.com/iSolpa/isfehka).
    assert {_plain(d) for d in by_province["Veraguas"]} >= {"RIO DE JESUS", "SONA", "MONTIJO"}
    assert len(by_province["Comarca Ngäbe-Buglé"]) == 9
    assert "Santa Catalina o Calovébora" in by_province["Comarca Ngäbe-Buglé"]


def test_every_district_lists_its_corregimientos_as_in_the_2023_census() -> None:
    by_district = {(p.name, d.name): d.corregimientos for p in divisions() for d in p.districts}
    # Naso Tjër Di is not a unit of INEC's 2023 table: its corregimiento is free text.
    assert by_district.pop(("Comarca Naso Tjër Di", "Naso Tjër Di")) == ()
    assert all(by_district.values())
    assert sum(len(c) for c in by_district.values()) == 699
    for corregimientos in by_district.values():
        assert len(corregimientos) == len(set(corregimientos))
        assert list(corregimientos) == sorted(corregimientos, key=fold)
        assert not any("(" in c and "Muakwata" not in c for c in corregimientos)  # no footnotes
    assert len(by_district[("Panamá", "Panamá")]) == 26
    assert len(by_district[("Panamá", "San Miguelito")]) == 9
    assert {"Bella Vista", "Betania", "Ancón", "24 de Diciembre"} <= set(
        by_district[("Panamá", "Panamá")]
    )
    assert "Belisario Porras" in by_district[("Panamá", "San Miguelito")]
    assert "Tortí" in by_district[("Panamá", "Chepo")]
    assert "Vacamonte" in by_district[("Panamá Oeste", "Arraiján")]
    assert "Zapallal" in by_district[("Darién", "Santa Fe")]
    assert set(by_district[("Comarca Guna Yala", "Guna Yala")]) == {
        "Ailigandí",
        "Narganá",
        "Puerto Obaldía",
        "Tubualá",
    }


def test_the_page_suggests_each_corregimiento_name_once_in_alphabetical_order() -> None:
    names = corregimiento_names()
    assert len(names) == len(set(names)) == 629
    assert [fold(n) for n in names] == sorted(fold(n) for n in names)
    assert names.count("San José") == 1
