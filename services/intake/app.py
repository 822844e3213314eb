"""Intake: the front door (HTTP API and the 311 queue)."""

from __future__ import annotations

from services.intake.handlers import handlers
from services.intake.http import create_app
from services.intake.models import WebSessionKeyRow, WebSessionRow
from services.intake.observability import case_gauges
from services.intake.settings import startup_problems
from shared.key_links import key_link_problems
from shared.messaging import INTAKE
from shared.runtime import ServiceDefinition, Subscription


def service() -> ServiceDefinition:
    return ServiceDefinition(
        name="intake",
        subscriptions=(
            Subscription(
                INTAKE,
                handlers,
                "Validates 311 submissions; files a case or answers SubmissionRejected",
            ),
        ),
        http=create_app,
        checks=(startup_problems, key_link_problems),
        models=(WebSessionRow, WebSessionKeyRow),
        gauges=(case_gauges,),
    )
