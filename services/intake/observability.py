"""Observability and hygiene for intake's HTTP app: ``/metrics``, request counting, rate
limits on the public endpoints and a request body size limit.

``install`` runs last in :func:`services.intake.http.create_app`, so its middleware wraps
every route: a request refused here (413, 429) is still counted by route and status.

- ``GET /metrics``: the process's Prometheus registry (messages per queue and outcome,
  HTTP requests, notifications, alerts) plus gauges computed at scrape time from the
  database: cases by state, open and overdue cases, open and overdue clocks (when the
  deadlines service has written any), the notification log by channel and status.
- Rate limits: a token bucket per client IP, in memory (per process; behind N instances
  the effective limit is N times this one). Filing without a token
  (``POST /api/v1/cases``) and tracking lookups (``GET /api/v1/cases/{code}``,
  ``/seguimiento…``, the clave link's ``/clave/{code}``, Open311's ``requests/{id}`` and
  each code of a ``requests?service_request_id=`` batch) are limited; a request bearing a
  valid API token is not.
- Body size: a declared ``Content-Length`` over the limit is refused before the app runs;
  a chunked body is counted as it is read.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.dependencies import AppDeps
from services.intake.refusals import refused
from shared.auth import TokenStore, bearer_token
from shared.db.models import CaseRow
from shared.domain.clocks import overdue_clause
from shared.evidence import AttachmentLimits
from shared.lifecycle import State
from shared.runtime import Deps

log = logging.getLogger("defensa311.intake.http")

TOO_LARGE = "la solicitud es demasiado grande: el máximo es {limit} bytes"
TOO_MANY = "demasiadas solicitudes desde su conexión; intente de nuevo en {seconds} segundos"


class HttpLimits(BaseSettings):
    """Limits of the public HTTP surface.

    From ``DEFENSA311_RATE_LIMIT_*`` and ``DEFENSA311_MAX_BODY_BYTES``; a test may pass an
    instance to :func:`services.intake.http.create_app`.
    """

    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    rate_limit_enabled: bool = True
    # Filing from the web without a token: a burst, then a sustained rate per client IP.
    rate_limit_filing_burst: int = Field(default=30, ge=1)
    rate_limit_filing_per_minute: float = Field(default=30.0, gt=0)
    # Tracking lookups (API and /seguimiento): enumerating codes must be slow.
    rate_limit_lookup_burst: int = Field(default=120, ge=1)
    rate_limit_lookup_per_minute: float = Field(default=120.0, gt=0)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_max_clients: int = Field(default=50_000, ge=100)


# ---------------------------------------------------------------- token bucket


class TokenBuckets:
    """One bucket per key: ``burst`` tokens, refilled at ``per_minute``; least recently used
    keys are forgotten beyond ``max_keys`` (a forgotten key starts with a full bucket)."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        max_keys: int = 50_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._now = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 if allowed, else the seconds until they are there."""
        now = self._now()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True)
class LimitRule:
    """Requests (method, path) limited by one budget; ``route`` labels their refusals."""

    name: str
    methods: frozenset[str]
    path: re.Pattern[str]
    route: str
    buckets: TokenBuckets
    # Tokens one request takes (0: the rule does not apply to it); one by default.
    cost: Callable[[Scope], int] | None = None

    def applies(self, method: str, path: str) -> bool:
        return method in self.methods and self.path.fullmatch(path) is not None

    def cost_of(self, scope: Scope) -> int:
        return 1 if self.cost is None else self.cost(scope)


def requested_ids(scope: Scope) -> int:
    """Open311 ``requests.{fmt}?service_request_id=a,b,c`` looks up each code it names: every
    one counts against the lookup budget, as a request for it alone would. A listing without
    ids shows tracking codes too: it costs one lookup."""
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    named = sum(
        len([code for code in value.split(",") if code.strip()])
        for value in query.get("service_request_id", [])
    )
    return max(1, named)


UPLOAD_PATH = "/presentar"
#: Requests that take attachments: filing, the citizen adding information, a department's answer.
UPLOAD_PATHS = re.compile(
    r"/presentar|/seguimiento/[^/]+/add_information"
    r"|/consola/casos/[^/]+/respond|/api/v1/cases/[^/]+/actions/respond"
)


def public_rules(limits: HttpLimits) -> list[LimitRule]:
    def buckets(burst: int, per_minute: float) -> TokenBuckets:
        return TokenBuckets(burst, per_minute, max_keys=limits.rate_limit_max_clients)

    filing = buckets(limits.rate_limit_filing_burst, limits.rate_limit_filing_per_minute)
    # The API and the tracking pages share one lookup budget per client.
    lookup = buckets(limits.rate_limit_lookup_burst, limits.rate_limit_lookup_per_minute)
    post, get = frozenset({"POST"}), frozenset({"GET", "HEAD"})
    return [
        LimitRule("filing", post, re.compile(r"/api/v1/cases/?"), "/api/v1/cases", filing),
        # The filing page draws on the same budget as the API it stands for.
        LimitRule("filing", post, re.compile(r"/presentar/?"), "/presentar", filing),
        LimitRule(
            "lookup",
            get,
            re.compile(r"/api/v1/cases/[^/]+/?"),
            "/api/v1/cases/{tracking_code}",
            lookup,
        ),
        LimitRule(
            "lookup",
            get,
            re.compile(r"/open311/v2/requests/[^/]+"),
            "/open311/v2/requests/{service_request_id}.{fmt}",
            lookup,
        ),
        LimitRule(
            "lookup",
            get,
            re.compile(r"/open311/v2/requests\.[a-z]+"),
            "/open311/v2/requests.{fmt}",
            lookup,
            cost=requested_ids,
        ),
        LimitRule(
            "lookup",
            get | post,
            re.compile(r"/seguimiento/?"),
            "/seguimiento",
            lookup,
        ),
        LimitRule(
            "lookup",
            get,
            re.compile(r"/seguimiento/[^/]+/?"),
            "/seguimiento/{tracking_code}",
            lookup,
        ),
        # The receipt e-mail's clave link names a case as a lookup does.
        LimitRule(
            "lookup", get | post, re.compile(r"/clave/[^/]+/?"), "/clave/{tracking_code}", lookup
        ),
    ]


# ---------------------------------------------------------------- tokens


def _authenticated(scope: Scope, tokens: TokenStore) -> bool:
    """A request bearing a valid API token (any role) is not a member of the public."""
    authorization = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
    token = bearer_token(authorization)
    if not token:
        # Open311 clients present their key as a parameter (GeoReport v2).
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = next(iter(query.get("api_key", [])), None)
    return bool(token) and tokens.authenticate(token or "") is not None


# ---------------------------------------------------------------- middleware


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit; FastAPI turns it into a 413 response."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=TOO_LARGE.format(limit=limit))


class HttpGuard:
    """Pure ASGI middleware: counts every request; refuses oversized bodies and floods."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        deps: Deps,
        limits: HttpLimits,
        rules: list[LimitRule],
        tokens: TokenStore,
        attachments: AttachmentLimits,
    ) -> None:
        self.app = app
        self.deps = deps
        self.limits = limits
        self.rules = rules
        self.tokens = tokens
        # The filing page carries attachments: it may weigh as much as they may.
        self.upload_limit = max(limits.max_body_bytes, attachments.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500, "started": False}

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                status["started"] = True
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_counting)
            else:
                await self.app(scope, self._limited(scope, receive), send_counting)
        except BodyTooLarge as exc:
            # Raised outside FastAPI's request handling (e.g. a form read by hand).
            if status["started"]:
                raise
            await refused(scope, exc.status_code, exc.detail)(scope, receive, send_counting)
        finally:
            self._count(scope, int(status["code"]))

    def _refusal(self, scope: Scope) -> Response | None:
        if not self.limits.rate_limit_enabled:
            return None
        method, path = scope["method"], scope["path"]
        rules = [rule for rule in self.rules if rule.applies(method, path)]
        if not rules or _authenticated(scope, self.tokens):
            return None
        client = (scope.get("client") or ("desconocido", 0))[0]
        for rule in rules:
            cost = rule.cost_of(scope)
            if cost == 0:
                continue
            wait = rule.buckets.take(f"{rule.name}:{client}", cost)
            if wait > 0:
                # Refused before routing: the rule knows which route template it guards.
                scope["defensa311.route"] = rule.route
                seconds = max(1, math.ceil(wait))
                log.info(
                    "request refused",
                    extra={"reason": f"rate_limited:{rule.name}", "status_code": 429},
                )
                return refused(
                    scope,
                    429,
                    TOO_MANY.format(seconds=seconds),
                    headers={"Retry-After": str(seconds)},
                )
        return None

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """Refuse the body once it is read: routing has happened, so the 413 is counted
        under its route, and an endpoint that reads no body is not refused."""
        limit = self.limits.max_body_bytes
        if scope["method"] == "POST" and UPLOAD_PATHS.fullmatch(scope["path"].rstrip("/")):
            limit = self.upload_limit
        declared = _content_length(scope)
        read = 0

        async def receive_limited() -> Message:
            nonlocal read
            if declared is not None and declared > limit:
                log.info("request refused", extra={"reason": "body_too_large", "status_code": 413})
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    log.info(
                        "request refused", extra={"reason": "body_too_large", "status_code": 413}
                    )
                    raise BodyTooLarge(limit)
            return message

        return receive_limited

    def _count(self, scope: Scope, status: int) -> None:
        self.deps.metrics.http_requests.labels(
            route=self._route(scope), method=scope["method"], status=str(status)
        ).inc()

    def _route(self, scope: Scope) -> str:
        """The route template (``/api/v1/cases/{tracking_code}``), never the raw path."""
        template = getattr(scope.get("route"), "path", None) or scope.get("defensa311.route")
        if isinstance(template, str):
            return template
        # Unknown paths share one label: a scanner must not blow up the series count.
        return "unmatched"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------- /metrics


async def case_gauges(conn: AsyncConnection, now: datetime) -> list[GaugeMetricFamily]:
    """Intake's gauges: the cases by state and the overdue ones (the clocks module's rule)."""
    cases = CaseRow.__table__
    by_state = GaugeMetricFamily("defensa311_cases", "Cases by lifecycle state", labels=["state"])
    counts = {state.value: 0 for state in State}
    for state, count in await conn.execute(
        select(cases.c.state, func.count()).group_by(cases.c.state)
    ):
        counts[str(state)] = int(count)
    for state, count in sorted(counts.items()):
        by_state.add_metric([state], count)
    overdue_cases = await conn.scalar(
        select(func.count()).where(
            overdue_clause(
                cases.c.state,
                cases.c.due_at,
                cases.c.department_due_at,
                now,
                recourse_due=cases.c.recourse_due_at,
            )
        )
    )
    overdue = GaugeMetricFamily(
        "defensa311_cases_overdue",
        "Cases past a running term (legal, the department's while remitted, or a pending "
        "recurso's)",
        value=int(overdue_cases or 0),
    )
    return [by_state, overdue]


async def render_metrics(deps: Deps) -> bytes:
    """The process's counters and the gauges of every service it runs, read now."""
    await deps.metrics.refresh(
        deps.engine, deps.clock.now(), max_age=deps.settings.metrics_cache_seconds
    )
    return deps.metrics.render()


# ---------------------------------------------------------------- install


router = APIRouter(tags=["operación"], include_in_schema=False)


@router.get("/metrics")
async def metrics(deps: AppDeps) -> Response:
    return Response(await render_metrics(deps), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, deps: Deps, limits: HttpLimits | None = None) -> None:
    """Add ``/metrics`` and the middleware that counts, limits and guards every request."""
    limits = limits or HttpLimits()
    app.include_router(router)
    app.add_middleware(
        HttpGuard,
        deps=deps,
        limits=limits,
        rules=public_rules(limits),
        tokens=deps.tokens,
        attachments=app.state.attachment_limits,
    )
