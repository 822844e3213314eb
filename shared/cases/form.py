"""A filing form's fields as the filing body: the one reading every web door uses (the public
page ``/presentar`` and the console's presencial form), so a field means the same on both and
the same :func:`~shared.contract.validate_submission` judges it.

Field names are the body's paths with dots (``citizen.id_number``,
``citizen.representative.full_name``, ``location.lat``); a blank field is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KIND_FIELDS = ("kind", "category")
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "citizen": ("full_name", "id_type", "id_number", "ruc_dv", "phone", "email"),
    "notify": ("email", "phone", "address"),
    "location": ("province", "district", "corregimiento", "address"),
}
#: The legal representative of a juridical person, under ``citizen.representative.``.
REPRESENTATIVE_FIELDS = ("full_name", "id_type", "id_number")


def without_lone_document_type(person: dict[str, Any]) -> dict[str, Any]:
    """A document's type only beside a document: a type alone (a form's select, or the
    model's default ``cedula``) says nothing about the person and is dropped."""
    if not person.get("id_number"):
        person.pop("id_type", None)
    return person


def submission_data(form: Mapping[str, str]) -> dict[str, Any]:
    """The form's fields as the filing body (blank fields absent, coordinates as numbers)."""
    data: dict[str, Any] = {
        "description": form.get("description", ""),
        "anonymous": form.get("anonymous") == "si",
    }
    for name in KIND_FIELDS:
        if form.get(name, "").strip():
            data[name] = form[name].strip()
    for group, names in GROUP_FIELDS.items():
        values = _filled(form, group, names)
        if values:
            data[group] = values
    representative = without_lone_document_type(
        _filled(form, "citizen.representative", REPRESENTATIVE_FIELDS)
    )
    if representative:
        data.setdefault("citizen", {})["representative"] = representative
    if "citizen" in data and not without_lone_document_type(data["citizen"]):
        del data["citizen"]
    lat, lon = form.get("location.lat", "").strip(), form.get("location.lon", "").strip()
    if lat or lon:
        location = data.setdefault("location", {})
        location["lat"], location["lon"] = _number(lat), _number(lon)
    return data


def _filled(form: Mapping[str, str], prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: form[f"{prefix}.{name}"].strip()
        for name in names
        if form.get(f"{prefix}.{name}", "").strip()
    }


def _number(raw: str) -> float | str | None:
    """A coordinate as a number where it is one; else as given, for the model to refuse."""
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return raw
