"""Spanish names of dates, without relying on the system's locales."""

from __future__ import annotations

from datetime import date

MONTHS = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")


def long_date(day: date) -> str:
    """``15 de diciembre de 2026``."""
    return f"{day.day} de {MONTHS[day.month - 1]} de {day.year}"
