"""The institution's configuration: departments, deadline policy, routing rules, tokens (TOML)."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator


class Institution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "Alcaldía"
    office: str = "Departamento Defensa del Usuario – 311"
    public_url: str = "http://127.0.0.1:8000"
    supervisor_email: EmailStr | None = None
    timezone: str = "America/Panama"


class DeadlinePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=365)
    department_days: int = Field(default=30, ge=1, le=365)
    # The department's term ends at the latest this many working days before the legal due
    # date, which leaves the office time to notify the citizen within the legal term.
    department_margin_days: int = Field(default=2, ge=0, le=60)
    calendar: Literal["business", "calendar"] = "business"
    # A petition for another public body is forwarded within this many working days of filing.
    forward_days: int = Field(default=5, ge=1, le=60)
    thresholds: list[int] = Field(default_factory=lambda: [7, 3, 1])
    # After a resolution the citizen may say "no está resuelto" for this many days (counted
    # like the other terms); the case then reopens with a new legal term.
    reopen_days: int = Field(default=10, ge=1, le=365)
    # A recurso (reconsideración or apelación, Ley 38 de 2000) is filed within this many days
    # of the notification of the decision it contests, counted like the other terms.
    appeal_days: int = Field(default=5, ge=1, le=60)
    # The office (reconsideración) or the superior (apelación) decides it within this many days.
    appeal_decision_days: int = Field(default=30, ge=1, le=365)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)

    @field_validator("thresholds")
    @classmethod
    def _sorted_positive(cls, value: list[int]) -> list[int]:
        if any(n <= 0 for n in value):
            raise ValueError("los umbrales deben ser días positivos")
        return sorted(set(value), reverse=True)


class Closure(BaseModel):
    """A day the Executive closed public offices by decree (not a holiday of the law)."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date
    # The decree's name and what it closed, e.g. "Decreto Ejecutivo N.° 37 de 5 de diciembre de
    # 2025: cierre desde el mediodía".
    reason: str = Field(min_length=3, max_length=500)
    # Whether the decree suspends administrative terms that day: only then is it not counted.
    suspends_terms: bool = True


class Entity(BaseModel):
    """Another public body a petition may be forwarded to (IDAAN, ENSA, MOP, ATTT, …)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str = Field(min_length=2, max_length=200)
    email: EmailStr
    webhook_url: str | None = None


class DeclineReason(BaseModel):
    """A reason the office may decline a petition for (the citizen is told it, and the recourse)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    label: str = Field(min_length=3, max_length=200)


DEFAULT_DECLINE_REASONS = [
    DeclineReason(code="fuera_de_competencia", label="Fuera de la competencia de la institución"),
    DeclineReason(code="duplicada", label="Petición duplicada de otra ya presentada"),
    DeclineReason(code="desistimiento", label="Desistimiento del peticionario"),
    DeclineReason(code="improcedente", label="Petición improcedente"),
]


class CalendarSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    closures: list[Closure] = Field(default_factory=list)
    # How often each service re-reads the closures added with ``defensa311 calendar close``.
    reload_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_per_day(self) -> CalendarSettings:
        days = [c.date for c in self.closures]
        if len(days) != len(set(days)):
            raise ValueError("fechas de cierre repetidas en [[calendar.closures]]")
        return self


class DuplicatePolicy(BaseModel):
    """When a new case looks like an open one: near it, or written almost the same."""

    model_config = ConfigDict(extra="forbid")

    # Same category and within this many metres of an open case.
    distance_m: float = Field(default=50.0, gt=0, le=5000)
    # Very similar text among the open cases filed in the last this many days.
    text_days: int = Field(default=30, ge=1, le=365)
    # How similar (0–1; trigram similarity on PostgreSQL, word overlap elsewhere).
    text_similarity: float = Field(default=0.6, gt=0, le=1)
    # At most this many candidates are shown.
    limit: int = Field(default=5, ge=1, le=50)
    # A new case with possible duplicates waits in triage (classified) for staff to join it
    # or route it, instead of following its automatic route (one remittance per matter).
    # Off by default: the office turns it on once it reviews its triage every day.
    hold_routing: bool = False
    # Otherwise the search runs off the path to the department, once cases stop arriving for
    # a second, and at most this many seconds after a case was classified.
    search_within_seconds: float = Field(default=30.0, ge=0, le=3600)


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str
    email: EmailStr
    supervisor_email: EmailStr | None = None
    webhook_url: str | None = None


class TokenEntry(BaseModel):
    """A bearer token stored hashed: ``sha256`` is the hex SHA-256 of the token."""

    model_config = ConfigDict(extra="forbid")

    role: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    name: str | None = None


PublicLocation = Literal["exact", "rounded", "none"]


class Open311Output(BaseModel):
    """What Open311 ``GET requests`` shows of a case's place (never the free-text address).

    ``rounded`` gives the coordinates to three decimals (about 110 m); ``none`` omits them
    (e.g. complaints about public servants, where the place may identify the citizen).
    ``public_location`` maps a service code (``<kind>-<category slug>``) to its own mode.
    """

    model_config = ConfigDict(extra="forbid")

    default_public_location: PublicLocation = "rounded"
    public_location: dict[str, PublicLocation] = Field(default_factory=dict)

    def location_mode(self, service_code: str | None) -> PublicLocation:
        if service_code is None:
            return self.default_public_location
        return self.public_location.get(service_code, self.default_public_location)


class InstitutionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution: Institution = Field(default_factory=Institution)
    deadlines: DeadlinePolicy = Field(default_factory=DeadlinePolicy)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    duplicates: DuplicatePolicy = Field(default_factory=DuplicatePolicy)
    entities: list[Entity] = Field(default_factory=list)
    decline_reasons: list[DeclineReason] = Field(
        default_factory=lambda: list(DEFAULT_DECLINE_REASONS), min_length=1
    )
    departments: list[Department] = Field(default_factory=list)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    tokens: list[TokenEntry] = Field(default_factory=list)
    platform311_webhook_url: str | None = None
    open311: Open311Output = Field(default_factory=Open311Output)

    @model_validator(mode="after")
    def _unique_codes(self) -> InstitutionConfig:
        codes = [d.code for d in self.departments]
        if len(codes) != len(set(codes)):
            raise ValueError("códigos de departamento repetidos")
        entities = [e.code for e in self.entities]
        if len(entities) != len(set(entities)):
            raise ValueError("códigos de entidad repetidos en [[entities]]")
        return self

    def entity(self, code: str) -> Entity | None:
        return next((e for e in self.entities if e.code == code), None)

    @property
    def decline_labels(self) -> dict[str, str]:
        return {r.code: r.label for r in self.decline_reasons}

    def department(self, code: str) -> Department | None:
        return next((d for d in self.departments if d.code == code), None)

    @property
    def department_codes(self) -> list[str]:
        return [d.code for d in self.departments]


def load_config(path: Path) -> InstitutionConfig:
    with path.open("rb") as handle:
        return InstitutionConfig.model_validate(tomllib.load(handle))
