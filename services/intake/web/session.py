"""Staff sign-in for the web console: server-side sessions, their cookie, CSRF tokens.

Signing in with a token (``Settings.api_tokens`` or the config's hashed ``[[tokens]]``)
stores a row in ``web_sessions`` and gives the browser a cookie holding a random session
id (256 bits) and its HMAC under the session key. The key has that one purpose: it is
``DEFENSA311_SESSION_SECRET`` or, unset, a random key generated on first start and kept in
``web_session_keys``; it is never derived from another secret or from a token. The database
keeps only the id's SHA-256, so a copy of it does not yield a usable cookie.

A session ends when the row goes: on sign-out, after ``session_idle_minutes`` without a
request, ``session_max_hours`` after sign-in, or when its token is removed from the
configuration. The cookie is HTTP-only, ``SameSite=Strict`` and ``Secure`` over HTTPS or
when ``DEFENSA311_COOKIE_SECURE`` is set; sign-in refuses a form posted from another site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request, Response
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Receive, Scope, Send

from services.intake.models import WebSessionKeyRow, WebSessionRow
from services.intake.settings import IntakeSettings
from shared.auth import DEPARTMENT_PREFIX, STAFF, SUPERIOR, SUPERVISOR, digest
from shared.runtime import Deps

COOKIE = "d311_sesion"
STAFF_ROLES = frozenset({STAFF, SUPERVISOR})
CONSOLE_PREFIX = "/consola"
# A session's last request is written at most this often (not on every page view).
TOUCH_EVERY = timedelta(minutes=1)
_STATE = "defensa311.web_session"


@dataclass(frozen=True)
class Session:
    role: str
    name: str | None
    csrf: str
    id_sha256: str

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_superior(self) -> bool:
        """The superior signs in to decide apelaciones (the registry says which actions)."""
        return self.role == SUPERIOR

    @property
    def department(self) -> str | None:
        if self.role.startswith(DEPARTMENT_PREFIX):
            return self.role[len(DEPARTMENT_PREFIX) :]
        return None

    @property
    def actor(self) -> str:
        """What the audit trail records (never the token)."""
        return f"{self.role}:{self.name}" if self.name else self.role


class Sessions:
    """The console's sessions: created at sign-in, looked up per request, ended at sign-out."""

    def __init__(self, deps: Deps, settings: IntakeSettings) -> None:
        self.deps = deps
        self.settings = settings
        self.idle = timedelta(minutes=settings.session_idle_minutes)
        self.lifetime = timedelta(hours=settings.session_max_hours)
        configured = settings.session_secret
        self._key: bytes | None = (
            configured.get_secret_value().encode() if configured is not None else None
        )
        self.tokens = deps.tokens
        self.grants = self.tokens.grants()

    # ------------------------------------------------------------------ the key

    async def key(self) -> bytes:
        if self._key is None:
            self._key = await self._stored_key()
        return self._key

    async def _stored_key(self) -> bytes:
        async with self.deps.sessionmaker() as session:
            row = await session.get(WebSessionKeyRow, 1)
            if row is None:
                session.add(
                    WebSessionKeyRow(
                        id=1, secret=secrets.token_hex(32), created_at=self.deps.clock.now()
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()  # another instance generated it first
                row = await session.get(WebSessionKeyRow, 1, populate_existing=True)
            assert row is not None
            return row.secret.encode()

    async def _mac(self, session_id: str) -> str:
        return hmac.new(await self.key(), session_id.encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ lifecycle

    async def sign_in(self, token: str) -> tuple[Session, str] | None:
        """A new session and its cookie value for a valid token; ``None`` otherwise."""
        token = token.strip()
        principal = self.tokens.authenticate(token) if token else None
        if principal is None:
            return None
        now = self.deps.clock.now()
        session_id = secrets.token_urlsafe(32)
        row = WebSessionRow(
            id_sha256=digest(session_id),
            role=principal.role,
            name=principal.name,
            token_sha256=digest(token),
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
        )
        async with self.deps.sessionmaker() as db:
            # Expired sessions are swept here, not by a loop of their own.
            await db.execute(
                delete(WebSessionRow).where(
                    or_(
                        WebSessionRow.expires_at < now, WebSessionRow.last_seen_at < now - self.idle
                    )
                )
            )
            db.add(row)
            await db.commit()
        cookie = f"{session_id}.{await self._mac(session_id)}"
        return Session(row.role, row.name, row.csrf, row.id_sha256), cookie

    async def resolve(self, cookie: str) -> Session | None:
        """The live session a cookie names; an expired one is deleted on the way."""
        session_id, _, mac = cookie.partition(".")
        if not session_id or not hmac.compare_digest(await self._mac(session_id), mac):
            return None  # not one of ours: no database lookup at all
        now = self.deps.clock.now()
        async with self.deps.sessionmaker() as db:
            row = await db.get(WebSessionRow, digest(session_id))
            if row is None:
                return None
            ended = (
                row.expires_at <= now
                or now - row.last_seen_at > self.idle
                or (row.role, row.token_sha256) not in self.grants
            )
            if ended:
                await db.delete(row)
                await db.commit()
                return None
            if now - row.last_seen_at >= TOUCH_EVERY:
                await db.execute(
                    update(WebSessionRow)
                    .where(WebSessionRow.id_sha256 == row.id_sha256)
                    .values(last_seen_at=now)
                )
                await db.commit()
            return Session(row.role, row.name, row.csrf, row.id_sha256)

    async def sign_out(self, session: Session) -> None:
        async with self.deps.sessionmaker() as db:
            await db.execute(
                delete(WebSessionRow).where(WebSessionRow.id_sha256 == session.id_sha256)
            )
            await db.commit()

    # ------------------------------------------------------------------ the cookie

    def set_cookie(self, response: Response, request: Request, cookie: str) -> None:
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.lifetime.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=self.settings.cookie_secure or request.url.scheme == "https",
            path="/",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.settings.cookie_secure,
        )

    def cross_site(self, request: Request) -> bool:
        """A form posted from another site (login CSRF): its ``Origin`` is not ours."""
        if request.headers.get("sec-fetch-site", "") == "cross-site":
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False  # not a browser, or one that says nothing: the CSRF token decides
        if origin == "null":
            # An opaque origin (a no-referrer page, a sandboxed frame): only the browser's own
            # Sec-Fetch-Site can still say the form was ours.
            return request.headers.get("sec-fetch-site") != "same-origin"
        ours = {request.headers.get("host", ""), urlsplit(self.public_url).netloc}
        return urlsplit(origin).netloc not in ours

    @property
    def public_url(self) -> str:
        return self.deps.config.institution.public_url


class SessionLookup:
    """ASGI middleware: resolves the console session cookie once per ``/consola`` request."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(CONSOLE_PREFIX):
            cookie = Request(scope).cookies.get(COOKIE)
            session = await self.sessions.resolve(cookie) if cookie else None
            scope.setdefault("state", {})[_STATE] = session
        await self.app(scope, receive, send)


def install(app: FastAPI, deps: Deps, settings: IntakeSettings) -> Sessions:
    """The app's one :class:`Sessions` (on ``app.state``) and the middleware that reads it."""
    sessions = Sessions(deps, settings)
    app.state.sessions = sessions
    app.add_middleware(SessionLookup, sessions=sessions)
    return sessions


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def current(request: Request) -> Session | None:
    """The console session the request's cookie names (resolved by :class:`SessionLookup`)."""
    session = request.scope.get("state", {}).get(_STATE)
    return session if isinstance(session, Session) else None


AppSessions = Annotated[Sessions, Depends(sessions_of)]
#: The signed-in console session, or ``None``.
CurrentSession = Annotated[Session | None, Depends(current)]


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
