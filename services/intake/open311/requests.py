"""Open311 service requests: from a POSTed form to a :class:`Submission`, and from a stored
case to a GeoReport ``request`` element. Pure: no I/O.

The form goes through the same :func:`shared.contract.validate_submission` as every other
door; its errors are reported under the Open311 parameter names the client sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from services.intake.open311.catalog import Service, find_service
from services.intake.open311.format import Open311Error, w3c
from shared.config import InstitutionConfig, PublicLocation
from shared.contract import FieldError
from shared.db.models import CaseRow
from shared.lifecycle import is_open
from shared.tracking import normalize_tracking_code

MAX_RANGE = timedelta(days=90)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Without an api_key: one small page at a time, and only the first pages.
ANONYMOUS_MAX_PAGE_SIZE = 20
ANONYMOUS_MAX_PAGE = 5
# Beyond these a page number or a date is a probe, not a question: refused before any
# arithmetic or query could overflow on it.
MAX_PAGE = 100_000
EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2199, 12, 31)
# Codes one batch lookup may name (each also counts against the client's lookup budget).
MAX_IDS = 50
_ATTRIBUTE = re.compile(r"^attribute\[([^\]]+)\]$")

# Submission field path → the Open311 parameter a client sent it as.
_PARAMETERS = {
    "kind": "service_code",
    "category": "service_code",
    "description": "description",
    "citizen": "first_name, last_name, email, phone, attribute[id_number]",
    "citizen.full_name": "first_name, last_name",
    "citizen.id_number": "attribute[id_number]",
    "citizen.id_type": "attribute[id_type]",
    "citizen.ruc_dv": "attribute[ruc_dv]",
    "citizen.representative": "attribute[representative_name], attribute[representative_id_number]",
    "citizen.representative.full_name": "attribute[representative_name]",
    "citizen.representative.id_number": "attribute[representative_id_number]",
    "citizen.phone": "phone",
    "citizen.email": "email",
    "notify": (
        "email, phone, attribute[notify_email], attribute[notify_phone], attribute[notify_address]"
    ),
    "notify.email": "attribute[notify_email]",
    "notify.phone": "attribute[notify_phone]",
    "notify.address": "attribute[notify_address]",
    "location": "lat, long",
    "location.lat": "lat",
    "location.lon": "long",
    "location.address": "address_string",
    "location.province": "attribute[province]",
    "location.district": "attribute[district]",
    "location.corregimiento": "attribute[corregimiento]",
    "anonymous": "attribute[anonymous]",
}

_STATUS_NOTES = {
    "received": "Recibido; pendiente de clasificación por el Departamento Defensa del Usuario.",
    "classified": "Clasificado; pendiente de asignar el trámite.",
    "inspection": "En inspección por el Departamento Defensa del Usuario.",
    "remitted": "Remitido a {department}, que debe responder a más tardar el {department_due}.",
    "on_agenda": "Incluido en la agenda de la próxima reunión para su consideración.",
    "resolved": "Resuelto; pendiente de notificar la resolución al ciudadano.",
    "closed": "Cerrado: la resolución fue notificada al ciudadano.",
    "reconsideration": "Decidido; recurso de reconsideración en trámite ante el Departamento.",
    "appeal": "Decidido; recurso de apelación en trámite ante el superior jerárquico.",
    "declined": "Cerrado sin trámite (duplicado o fuera de la competencia de la institución).",
}


def parameter_for(field: str) -> str:
    if field in _PARAMETERS:
        return _PARAMETERS[field]
    head = field.split(".", 1)[0]
    return _PARAMETERS.get(head, field)


def describe(error: FieldError) -> str:
    return f"{parameter_for(error.field)}: {error.message} (regla: {error.rule})"


# ------------------------------------------------------------------------- filing


@dataclass(frozen=True)
class Filing:
    """What a POSTed form asks for, before validation."""

    data: dict[str, Any]
    external_ref: str | None


def _single(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Open311Error(400, f"{name}: debe ser texto, no un archivo (regla: text)")
    value = value.strip()
    return value or None


def _coordinate(form: Mapping[str, Any], name: str) -> float | None:
    raw = _single(form, name)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise Open311Error(400, f"{name}: debe ser un número decimal, ej. 8.9824 (regla: number)")
    return number


def read_filing(form: Mapping[str, Any], service: Service) -> Filing:
    """Build the submission data from the form; raise :class:`Open311Error` on protocol faults."""
    known = {a.code for a in service.attributes}
    attributes: dict[str, str] = {}
    problems: list[str] = []
    for key in form:
        match = _ATTRIBUTE.match(key)
        if match is None:
            continue
        code = match.group(1)
        if code not in known:
            problems.append(
                f"attribute[{code}]: atributo desconocido para el servicio {service.code}; "
                f"use {', '.join(sorted(known))} (regla: unknown_attribute)"
            )
            continue
        value = _single(form, key)
        if value is not None:
            attributes[code] = value
    if problems:
        raise Open311Error(400, *problems)

    lat, lon = _coordinate(form, "lat"), _coordinate(form, "long")
    address = _single(form, "address_string")
    address_id = _single(form, "address_id")
    if lat is None and lon is None and address is None and address_id is None:
        raise Open311Error(
            400,
            "lat, long, address_string, address_id: indique la ubicación con lat y long, "
            "address_string o address_id (regla: location_required)",
        )
    if address is None and address_id is not None:
        address = f"Referencia de dirección 311: {address_id}"

    description = _single(form, "description") or ""
    media_url = _single(form, "media_url")
    if media_url is not None:
        parts = urlsplit(media_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(media_url) > 2000:
            raise Open311Error(400, "media_url: debe ser una dirección http(s) válida (regla: url)")
        # Submission has no media field: the link travels with the description for staff.
        description = f"{description}\n\nImagen adjunta: {media_url}"

    anonymous = attributes.get("anonymous", "false").lower()
    if anonymous not in ("true", "false"):
        raise Open311Error(400, "attribute[anonymous]: use true o false (regla: singlevaluelist)")

    full_name = " ".join(
        part for part in (_single(form, "first_name"), _single(form, "last_name")) if part
    )
    citizen = _compact(
        {
            "full_name": full_name or None,
            "id_type": attributes.get("id_type") if attributes.get("id_number") else None,
            "id_number": attributes.get("id_number"),
            "ruc_dv": attributes.get("ruc_dv"),
            "representative": _compact(
                {
                    "full_name": attributes.get("representative_name"),
                    "id_number": attributes.get("representative_id_number"),
                }
            )
            or None,
            "email": _single(form, "email"),
            "phone": _single(form, "phone"),
        }
    )
    notify = _compact(
        {
            "email": attributes.get("notify_email"),
            "phone": attributes.get("notify_phone"),
            "address": attributes.get("notify_address"),
        }
    )
    if not notify:
        # A standard GeoReport client sends only email/phone: where the citizen can be reached.
        notify = _compact({"email": citizen.get("email"), "phone": citizen.get("phone")})
    location = _compact(
        {
            "lat": lat,
            "lon": lon,
            "address": address,
            "province": attributes.get("province"),
            "district": attributes.get("district"),
            "corregimiento": attributes.get("corregimiento"),
        }
    )
    data: dict[str, Any] = {
        "kind": service.kind,
        "category": service.category,
        "description": description,
        "anonymous": anonymous == "true",
    }
    if citizen:
        data["citizen"] = citizen
    if notify:
        data["notify"] = notify
    if location:
        data["location"] = location
    return Filing(data=data, external_ref=attributes.get("external_ref"))


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# ------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RequestQuery:
    """``GET requests`` filters, checked."""

    ids: list[str] | None
    service_codes: list[str] | None
    start: datetime
    end: datetime
    statuses: set[str] | None
    page: int
    page_size: int


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_datetime(name: str, raw: str, tz: ZoneInfo) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise Open311Error(
            400,
            f"{name}: fecha W3C inválida; use por ejemplo 2025-03-01T00:00:00-05:00 "
            "(regla: w3c_datetime)",
        ) from None
    if not EARLIEST.year <= value.year <= LATEST.year:
        raise Open311Error(
            400,
            f"{name}: la fecha debe estar entre los años {EARLIEST.year} y {LATEST.year} "
            "(regla: date_range)",
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def _positive(name: str, raw: str | None, default: int, maximum: int) -> int:
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise Open311Error(
            400, f"{name}: debe ser un entero positivo y como máximo {maximum} (regla: integer)"
        )
    return value


def parse_query(
    params: Mapping[str, str], now: datetime, tz: ZoneInfo, *, anonymous: bool = False
) -> RequestQuery:
    max_page = ANONYMOUS_MAX_PAGE if anonymous else MAX_PAGE
    max_size = ANONYMOUS_MAX_PAGE_SIZE if anonymous else MAX_PAGE_SIZE
    page = _positive("page", params.get("page"), 1, max_page)
    page_size = _positive(
        "page_size", params.get("page_size"), min(DEFAULT_PAGE_SIZE, max_size), max_size
    )
    raw_ids = _split(params.get("service_request_id"))
    if len(raw_ids) > MAX_IDS:
        raise Open311Error(
            400,
            f"service_request_id: como máximo {MAX_IDS} códigos por consulta (regla: max_ids)",
        )
    if raw_ids:
        ids: list[str] = []
        for raw in raw_ids:
            try:
                ids.append(normalize_tracking_code(raw))
            except ValueError as exc:
                raise Open311Error(
                    400, f"service_request_id: {exc} (regla: tracking_code)"
                ) from None
        # The ids override every other filter (GeoReport v2).
        return RequestQuery(ids, None, now, now, None, page, page_size)

    start_raw, end_raw = params.get("start_date"), params.get("end_date")
    start = parse_datetime("start_date", start_raw, tz) if start_raw else None
    end = parse_datetime("end_date", end_raw, tz) if end_raw else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - MAX_RANGE
    if end is None:
        end = start + MAX_RANGE
    if end < start:
        raise Open311Error(
            400, "start_date, end_date: start_date debe ser anterior a end_date (regla: date_order)"
        )
    if end - start > MAX_RANGE:
        raise Open311Error(
            400, "start_date, end_date: el intervalo no puede superar 90 días (regla: max_90_days)"
        )
    statuses = set(_split(params.get("status"))) or None
    if statuses is not None and not statuses <= {"open", "closed"}:
        raise Open311Error(400, "status: use open o closed, separados por comas (regla: status)")
    codes = _split(params.get("service_code")) or None
    return RequestQuery(None, codes, start, end, statuses, page, page_size)


def open311_status(state: str) -> str:
    return "open" if is_open(state) else "closed"


def request_element(
    case: CaseRow,
    catalog: dict[str, Service],
    config: InstitutionConfig,
    tz: ZoneInfo,
    *,
    media_url: str | None = None,
) -> dict[str, Any]:
    """The GeoReport ``request`` element of a case; no personal data of the citizen.

    The free-text address is never shown (citizens type their own home into it); the
    coordinates follow the service's ``public_location`` (:class:`shared.config.Open311Output`).
    ``media_url``: an attachment staff made public, if any.
    """
    service = find_service(catalog, case.kind, case.category)
    department = config.department(case.department) if case.department else None
    lat, lon = public_coordinates(
        case.location or {}, config.open311.location_mode(service.code if service else None)
    )
    return {
        "service_request_id": case.tracking_code,
        "status": open311_status(case.state),
        "status_notes": status_notes(case, department.name if department else None, tz),
        "service_name": service.name if service else case.category,
        "service_code": service.code if service else None,
        "agency_responsible": department.name if department else config.institution.office,
        "service_notice": None,
        "requested_datetime": w3c(case.received_at, tz),
        "updated_datetime": w3c(case.updated_at, tz),
        "expected_datetime": w3c(case.due_at, tz),
        "address": None,
        "address_id": None,
        "zipcode": None,
        "lat": lat,
        "long": lon,
        "media_url": media_url,
    }


#: Three decimals of a degree: about 110 m of latitude, enough to place a pothole on a block
#: without pointing at a door.
ROUNDED_DECIMALS = 3


def public_coordinates(
    location: Mapping[str, Any], mode: PublicLocation
) -> tuple[float | None, float | None]:
    lat, lon = location.get("lat"), location.get("lon")
    if mode == "none" or not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return None, None
    if mode == "rounded":
        return round(float(lat), ROUNDED_DECIMALS), round(float(lon), ROUNDED_DECIMALS)
    return float(lat), float(lon)


def status_notes(case: CaseRow, department: str | None, tz: ZoneInfo) -> str:
    key = "declined" if case.state == "closed" and case.resolved_at is None else case.state
    template = _STATUS_NOTES.get(key, case.state)
    due = (
        case.department_due_at.astimezone(tz).strftime("%d/%m/%Y") if case.department_due_at else ""
    )
    return template.format(
        department=department or "el departamento responsable", department_due=due
    )


def service_notice(service: Service, case: CaseRow, tz: ZoneInfo) -> str:
    due = case.due_at.astimezone(tz).strftime("%d/%m/%Y")
    return (
        f"Su {service.kind} fue recibida con el código de seguimiento {case.tracking_code}. "
        f"La ley exige resolverla a más tardar el {due}."
    )
