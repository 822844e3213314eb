"""The Open311 service catalogue: one service per (kind, category) the institution handles.

Derived from the institution's ``[[rules]]``: every rule that sets a ``kind`` and a
``category`` names something the department handles. Service codes are slugs of the kind
and the category (``denuncia-calles-y-huecos``), so they stay stable while the config's
category names do. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from shared.config import InstitutionConfig

KIND_GROUPS = {"denuncia": "Denuncias", "queja": "Quejas", "sugerencia": "Sugerencias"}
KIND_DESCRIPTIONS = {
    "denuncia": "Denuncia",
    "queja": "Queja",
    "sugerencia": "Sugerencia",
}


@dataclass(frozen=True)
class Attribute:
    """One Open311 attribute: what the law needs that GeoReport v2 lacks."""

    code: str
    datatype: str
    required: bool
    order: int
    description: str
    datatype_description: str = ""
    values: tuple[tuple[str, str], ...] = ()


@dataclass
class Service:
    code: str
    kind: str
    category: str
    name: str
    description: str
    group: str
    keywords: list[str] = field(default_factory=list)
    department: str | None = None

    @property
    def attributes(self) -> list[Attribute]:
        return attributes_for(self.kind)


def slug(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def service_code(kind: str, category: str) -> str:
    return f"{kind}-{slug(category)}"


def build_catalog(config: InstitutionConfig) -> dict[str, Service]:
    """The services, keyed by code, in the order the rules are written."""
    catalog: dict[str, Service] = {}
    for rule in config.rules:
        kind, category = rule.get("kind"), rule.get("category")
        if not isinstance(kind, str) or not isinstance(category, str):
            continue  # a rule without both decides nothing the citizen can ask for
        code = service_code(kind, category)
        service = catalog.get(code)
        if service is None:
            department = _department_of(config, rule.get("route"))
            description = f"{KIND_DESCRIPTIONS.get(kind, kind)}: {category}"
            if department is not None:
                description += f" (atiende: {department})"
            service = Service(
                code=code,
                kind=kind,
                category=category,
                name=category,
                description=description,
                group=KIND_GROUPS.get(kind, kind),
                keywords=[kind],
                department=department,
            )
            catalog[code] = service
        for word in rule.get("categories") or []:
            if isinstance(word, str) and word not in service.keywords:
                service.keywords.append(word)
    unknown = sorted(set(config.open311.public_location) - set(catalog))
    if unknown:
        raise ValueError(
            f"[open311.public_location]: servicio desconocido {', '.join(unknown)}; "
            f"use uno de {', '.join(catalog)}"
        )
    return catalog


def _department_of(config: InstitutionConfig, route: Any) -> str | None:
    if isinstance(route, str) and route.startswith("remit:"):
        department = config.department(route.removeprefix("remit:"))
        return department.name if department is not None else None
    return None


def find_service(
    catalog: dict[str, Service], kind: str | None, category: str | None
) -> Service | None:
    """The service a stored case belongs to (its category may have been reclassified)."""
    if kind is None or category is None:
        return None
    return catalog.get(service_code(kind, category))


_NOTIFY_NOTE = (
    "Indique al menos uno de notify_email, notify_phone o notify_address (si no, cuentan el "
    "email y el phone estándar de la solicitud): la ley exige "
    "señalar dónde recibir notificaciones"
)


def attributes_for(kind: str) -> list[Attribute]:
    identified = kind in ("denuncia", "queja")
    attributes = [
        Attribute(
            code="id_number",
            datatype="string",
            required=identified,
            order=1,
            description=(
                "Documento de identidad del ciudadano (ver id_type)"
                + (
                    " (obligatorio: el denunciante debe identificarse debidamente, Ley 38 de "
                    "2000, art. 65)"
                    if kind == "denuncia"
                    else " (obligatorio para una queja)"
                    if identified
                    else ""
                )
            ),
            datatype_description=(
                "Cédula panameña (8-123-4567, E-8-12345, PE-1-123), pasaporte (5 a 20 letras y "
                "dígitos) o RUC de persona jurídica (155587169-2-2014)"
            ),
        ),
        Attribute(
            code="notify_email",
            datatype="string",
            required=False,
            order=2,
            description="Correo electrónico donde recibir notificaciones",
            datatype_description=_NOTIFY_NOTE,
        ),
        Attribute(
            code="notify_phone",
            datatype="string",
            required=False,
            order=3,
            description="Teléfono donde recibir notificaciones",
            datatype_description=_NOTIFY_NOTE,
        ),
        Attribute(
            code="notify_address",
            datatype="text",
            required=False,
            order=4,
            description="Dirección física donde recibir notificaciones",
            datatype_description=_NOTIFY_NOTE,
        ),
        Attribute(
            code="external_ref",
            datatype="string",
            required=False,
            order=5,
            description=(
                "Referencia del caso en la plataforma 311 (si se repite, se devuelve el mismo caso)"
            ),
        ),
        Attribute(
            code="province",
            datatype="string",
            required=False,
            order=6,
            description="Provincia del lugar de los hechos",
        ),
        Attribute(
            code="district",
            datatype="string",
            required=False,
            order=7,
            description="Distrito del lugar de los hechos",
        ),
        Attribute(
            code="corregimiento",
            datatype="string",
            required=False,
            order=8,
            description="Corregimiento del lugar de los hechos",
        ),
    ]
    attributes += [
        Attribute(
            code="id_type",
            datatype="singlevaluelist",
            required=False,
            order=10,
            description="Tipo de documento de id_number (por defecto, cédula)",
            values=(("cedula", "Cédula"), ("pasaporte", "Pasaporte"), ("ruc", "RUC")),
        ),
        Attribute(
            code="ruc_dv",
            datatype="string",
            required=False,
            order=11,
            description="Dígito verificador del RUC (persona jurídica)",
        ),
        Attribute(
            code="representative_name",
            datatype="string",
            required=False,
            order=12,
            description="Nombre del representante legal (persona jurídica)",
        ),
        Attribute(
            code="representative_id_number",
            datatype="string",
            required=False,
            order=13,
            description="Cédula del representante legal (persona jurídica)",
        ),
    ]
    if kind == "sugerencia":
        attributes.append(
            Attribute(
                code="anonymous",
                datatype="singlevaluelist",
                required=False,
                order=9,
                description=(
                    "Presentar la sugerencia de forma anónima (solo las sugerencias pueden "
                    "ser anónimas; entonces no se requiere dirección de notificación)"
                ),
                values=(("false", "No"), ("true", "Sí")),
            )
        )
    return attributes
