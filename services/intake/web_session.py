"""Staff sign-in for the web console: token → role, a signed session cookie, CSRF tokens.

Tokens come from ``Settings.api_tokens`` (``role=token,...``) and the institution config's
hashed ``[[tokens]]``. The session cookie carries the role and a fingerprint of the token,
never the token; it is HTTP-only, ``SameSite=Strict`` and signed with HMAC-SHA256 under a
key derived from the settings, and the fingerprint is checked against the current tokens on
every request so removing a token ends its sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

from services.intake.auth import DEPARTMENT_PREFIX, STAFF, SUPERVISOR, TokenStore, digest
from shared.runtime import Deps

COOKIE = "d311_sesion"
SESSION_SECONDS = 8 * 3600
STAFF_ROLES = frozenset({STAFF, SUPERVISOR})


@dataclass(frozen=True)
class Session:
    role: str
    name: str | None
    fingerprint: str
    csrf: str
    expires: int

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def department(self) -> str | None:
        if self.role.startswith(DEPARTMENT_PREFIX):
            return self.role[len(DEPARTMENT_PREFIX) :]
        return None

    @property
    def actor(self) -> str:
        """What the audit trail records (never the token)."""
        return f"{self.role}:{self.name}" if self.name else self.role


def known_grants(deps: Deps) -> set[tuple[str, str]]:
    """``(role, SHA-256 of the token)`` for every configured token (environment and config)."""
    result: set[tuple[str, str]] = set()
    for item in deps.settings.api_tokens.split(","):
        role, sep, token = item.strip().partition("=")
        if sep and token.strip():
            result.add((role.strip(), digest(token.strip())))
    result.update((entry.role, entry.sha256) for entry in deps.config.tokens)
    return result


def sign_in(deps: Deps, token: str) -> Session | None:
    """A new session for a valid token (compared in constant time by the token store)."""
    token = token.strip()
    if not token:
        return None
    store = TokenStore.build(
        deps.settings.api_tokens, deps.config.tokens, set(deps.config.department_codes)
    )
    principal = store.authenticate(token)
    if principal is None:
        return None
    return Session(
        principal.role,
        principal.name,
        digest(token),
        secrets.token_urlsafe(24),
        int(time.time()) + SESSION_SECONDS,
    )


def _key(deps: Deps) -> bytes:
    material = "|".join(
        ("defensa311-web-session-v1", deps.settings.webhook_secret, deps.settings.api_tokens)
    )
    return hashlib.sha256(material.encode()).digest()


def _sign(deps: Deps, payload: bytes) -> str:
    return hmac.new(_key(deps), payload, hashlib.sha256).hexdigest()


def encode(deps: Deps, session: Session) -> str:
    payload = json.dumps(
        {
            "r": session.role,
            "n": session.name,
            "f": session.fingerprint,
            "c": session.csrf,
            "e": session.expires,
        },
        separators=(",", ":"),
    ).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_sign(deps, payload)}"


def decode(deps: Deps, value: str) -> Session | None:
    body, _, signature = value.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(_sign(deps, payload), signature):
        return None
    try:
        data = json.loads(payload)
        name = data.get("n")
        session = Session(
            str(data["r"]),
            None if name is None else str(name),
            str(data["f"]),
            str(data["c"]),
            int(data["e"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires < time.time():
        return None
    if (session.role, session.fingerprint) not in known_grants(deps):
        return None  # the token was removed or changed: its sessions end
    return session


def current(request: Request, deps: Deps) -> Session | None:
    value = request.cookies.get(COOKIE)
    return decode(deps, value) if value else None


def set_cookie(response: Response, request: Request, deps: Deps, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        encode(deps, session),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
