"""The HTTP app a process serves, made of the routes its services contribute.

A service contributes an app (intake's front door: :attr:`ServiceDefinition.http`) or routers
(:attr:`ServiceDefinition.routers`, e.g. the notifier's log and tasks). :func:`http_app` builds
the one app a process serves: intake's when intake runs in it, with every other service's
routers mounted on it; otherwise a small app of its own (health, readiness, the Spanish
error answers) for the routers, with the same module-level :data:`health` routes. A route
reads the process's dependencies as ``deps: AppDeps`` (``Annotated[Deps, Depends(deps_of)]``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.runtime import Deps
from shared.throttle import FailureThrottle
from shared.validation import spanish_errors

if TYPE_CHECKING:
    from shared.runtime import ServiceDefinition

# The failed-authentication budget of an app without intake's settings (intake's defaults).
AUTH_FAILURES_BURST = 10
AUTH_FAILURES_PER_MINUTE = 2.0


def deps_of(request: Request) -> Deps:
    """The process's dependencies, for a route: ``Annotated[Deps, Depends(deps_of)]``."""
    deps: Deps = request.app.state.deps
    return deps


AppDeps = Annotated[Deps, Depends(deps_of)]

#: Health and readiness, on every app a process serves.
health = APIRouter(tags=["operación"])


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(deps: AppDeps) -> JSONResponse:
    checks = await deps.check_ready()
    ready = all(checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


def http_app(deps: Deps, services: list[ServiceDefinition]) -> FastAPI | None:
    """The app this process serves (None: no service of it has HTTP routes)."""
    base = next((service.http for service in services if service.http is not None), None)
    routers = [router for service in services for router in service.routers]
    if base is None and not routers:
        return None
    app = base(deps) if base is not None else plain_app(deps)
    for router in routers:
        app.include_router(router)
    return app


def plain_app(deps: Deps) -> FastAPI:
    """An app for a service's routers when intake is not in the process."""
    app = FastAPI(title="Defensa311", docs_url=None, redoc_url=None)
    app.state.deps = deps
    app.state.auth_throttle = FailureThrottle(AUTH_FAILURES_BURST, AUTH_FAILURES_PER_MINUTE)
    app.include_router(health)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": spanish_errors(list(exc.errors()))}, status_code=422)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail: Any = exc.detail
        if detail in _ENGLISH_DEFAULTS:
            detail = _SPANISH.get(exc.status_code, "error en la solicitud")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    return app


_ENGLISH_DEFAULTS = {s.phrase for s in HTTPStatus}
_SPANISH = {404: "no existe", 405: "método no permitido en esta ruta"}
