"""What intake's routes read from the app they run in, as ``Annotated`` dependencies: the
process's :class:`~shared.runtime.Deps`, intake's settings and the attachment limits.
:func:`services.intake.http.create_app` builds each once and keeps it on ``app.state``;
a route names it by type (``deps: AppDeps``). The web pages' own (the page renderer, the
console session) live beside them in :mod:`services.intake.web`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.intake.settings import IntakeSettings
from shared.evidence import AttachmentLimits
from shared.http import AppDeps


def settings_of(request: Request) -> IntakeSettings:
    """Intake's settings, as the app was built with them."""
    settings: IntakeSettings = request.app.state.intake_settings
    return settings


def limits_of(request: Request) -> AttachmentLimits:
    """How many files, and how large, a filing or an answer may carry."""
    limits: AttachmentLimits = request.app.state.attachment_limits
    return limits


__all__ = ["AppDeps", "AppSettings", "Limits"]

AppSettings = Annotated[IntakeSettings, Depends(settings_of)]
Limits = Annotated[AttachmentLimits, Depends(limits_of)]
