"""Installed into intake's HTTP app by create_app (to be built)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.runtime import Deps


def install(app: FastAPI, deps: Deps) -> None:
    """Add this part's routes (and middleware) to the app."""
