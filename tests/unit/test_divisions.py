"""The shipped list of Panama's provinces, comarcas, districts and corregimientos."""

import json
import unicodedata

from services.intake.web.filing import DIVISIONS, divisions


def _plain(name: str) -> str:
    """Uppercase without accents, the spelling of the catalogues the list was checked against."""
    decomposed = unicodedata.normalize("NFD", name.upper())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def test_the_list_has_every_province_and_comarca_and_states_its_source() -> None:
    raw = json.loads(DIVISIONS.read_text(encoding="utf-8"))
    assert set(raw["_source"]) >= {"checked", "provinces", "districts", "corregimientos"}
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


def test_the_capital_districts_list_their_corregimientos() -> None:
    panama = next(p for p in divisions() if p.name == "Panamá")
    corregimientos = {d.name: d.corregimientos for d in panama.districts}
    assert len(corregimientos["Panamá"]) == 26 and len(corregimientos["San Miguelito"]) == 9
    assert {"Bella Vista", "Betania", "Ancón", "24 de Diciembre"} <= set(corregimientos["Panamá"])
    assert "Belisario Porras" in corregimientos["San Miguelito"]
    assert corregimientos["Chepo"] == ()  # free text on the page
