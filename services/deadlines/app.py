"""Deadlines: see the module's handlers."""

from __future__ import annotations

from shared.runtime import ServiceDefinition


def service() -> ServiceDefinition:
    return ServiceDefinition(name="deadlines")
