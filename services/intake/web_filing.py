"""The public filing page ``/presentar``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from shared.runtime import Deps

if TYPE_CHECKING:
    from services.intake.web import Pages


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    return None
