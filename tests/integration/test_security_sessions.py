"""Console sessions under attack: forged cookies, captured cookies, idle sessions, login CSRF."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select

from services.intake.models import WebSessionRow
from services.intake.settings import IntakeSettings
from services.intake.web.session import COOKIE
from services.notifier.settings import NotifierSettings
from shared.auth import digest
from tests.integration.security_app import STAFF_TOKEN, TOKENS, App, intake_app

CONSOLE = "/consola"


def signed_in(page: httpx.Response) -> bool:
    """The console shows the sign-out form only to a signed-in session."""
    return page.status_code == 200 and 'action="/consola/salir"' in page.text


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def sign_in(app: App, token: str = STAFF_TOKEN, **headers: str) -> httpx.Response:
    return await app.client.post("/consola/entrar", data={"token": token}, headers=headers)


async def console_with(app: App, cookie: str) -> httpx.Response:
    """The console as a browser holding only ``cookie`` sees it."""
    app.client.cookies.clear()
    app.client.cookies.set(COOKIE, cookie)
    return await app.client.get(CONSOLE)


async def session_rows(app: App) -> int:
    async with app.deps.sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(WebSessionRow)) or 0)


def old_style_cookie(webhook_secret: str, api_tokens: str, role: str, token_sha256: str) -> str:
    """The cookie the issue's attacker minted: HMAC key from the webhook secret and the token
    settings, payload naming the token by the SHA-256 the configuration stores."""
    key = hashlib.sha256(
        "|".join(("defensa311-web-session-v1", webhook_secret, api_tokens)).encode()
    ).digest()
    payload = json.dumps(
        {"r": role, "n": "Mesa", "f": token_sha256, "c": "x" * 32, "e": int(time.time()) + 3600},
        separators=(",", ":"),
    ).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{hmac.new(key, payload, hashlib.sha256).hexdigest()}"


async def test_a_cookie_minted_from_the_webhook_secret_and_the_token_hash_is_refused(
    tmp_path: Path,
) -> None:
    async with intake_app(tmp_path) as app:
        settings = app.deps.settings
        webhook_secret = NotifierSettings().webhook_secret  # the notifier's, known to receivers
        forged = old_style_cookie(webhook_secret, settings.api_tokens, "staff", digest(STAFF_TOKEN))
        page = await console_with(app, forged)
        assert not signed_in(page)
        assert 'name="token"' in page.text  # the sign-in form, nothing of the console

        # The same material in the new cookie's shape is refused too: the key is not derived.
        session_id = "a" * 43
        for material in (webhook_secret, settings.api_tokens, digest(STAFF_TOKEN)):
            mac = hmac.new(material.encode(), session_id.encode(), hashlib.sha256).hexdigest()
            page = await console_with(app, f"{session_id}.{mac}")
            assert not signed_in(page)


async def test_a_session_id_read_from_the_database_is_not_a_cookie(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        assert (await sign_in(app)).status_code == 303
        async with app.deps.sessionmaker() as db:
            stored = await db.scalar(select(WebSessionRow.id_sha256))
        assert stored is not None
        app.client.cookies.clear()
        page = await console_with(app, f"{stored}.{'0' * 64}")
        assert not signed_in(page)


async def test_a_captured_cookie_no_longer_works_after_sign_out(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        assert (await sign_in(app)).status_code == 303
        captured = app.client.cookies[COOKIE]
        page = await app.client.get(CONSOLE)
        assert signed_in(page)

        out = await app.client.post("/consola/salir", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert await session_rows(app) == 0

        replayed = await console_with(app, captured)
        assert not signed_in(replayed)


async def test_a_session_ends_after_the_idle_time_and_at_its_absolute_limit(
    tmp_path: Path,
) -> None:
    intake = IntakeSettings(session_idle_minutes=30, session_max_hours=2)
    async with intake_app(tmp_path, intake=intake) as app:
        await sign_in(app)
        app.clock.advance(timedelta(minutes=29))
        assert signed_in(await app.client.get(CONSOLE))  # used: the idle time starts again
        app.clock.advance(timedelta(minutes=29))
        assert signed_in(await app.client.get(CONSOLE))
        app.clock.advance(timedelta(minutes=31))
        assert not signed_in(await app.client.get(CONSOLE))
        assert await session_rows(app) == 0

        # Busy all along, the session still ends two hours after sign-in.
        await sign_in(app)
        for _ in range(5):
            app.clock.advance(timedelta(minutes=20))
            assert signed_in(await app.client.get(CONSOLE))
        app.clock.advance(timedelta(minutes=21))
        assert not signed_in(await app.client.get(CONSOLE))


async def test_sign_in_posted_from_another_site_is_refused(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        refused = await sign_in(app, origin="https://atacante.example")
        assert refused.status_code == 403
        assert COOKIE not in refused.cookies
        assert await session_rows(app) == 0
        fetched = await sign_in(app, **{"sec-fetch-site": "cross-site"})
        assert fetched.status_code == 403

        framed = await sign_in(app, origin="null")  # e.g. a sandboxed frame elsewhere
        assert framed.status_code == 403

        assert (await sign_in(app, origin="http://testserver")).status_code == 303
        opaque_but_ours = await sign_in(app, origin="null", **{"sec-fetch-site": "same-origin"})
        assert opaque_but_ours.status_code == 303
        assert signed_in(await app.client.get(CONSOLE))


async def test_the_session_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as first:
        await sign_in(first)
        cookie = first.client.cookies[COOKIE]
    # A restart (a new app on the same database) still honours the session.
    async with intake_app(tmp_path) as second:
        assert signed_in(await console_with(second, cookie))
    # A configured key replaces the generated one: the old cookies no longer verify.
    configured = IntakeSettings(session_secret=SecretStr("k" * 40))
    async with intake_app(tmp_path, intake=configured) as third:
        assert not signed_in(await console_with(third, cookie))


async def test_the_cookie_is_secure_when_the_setting_says_so(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        plain = await sign_in(app)
        assert "secure" not in plain.headers["set-cookie"].lower()
    async with intake_app(tmp_path, intake=IntakeSettings(cookie_secure=True)) as app:
        forced = await sign_in(app)
        cookie = forced.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


async def test_removing_the_token_ends_its_sessions(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        await sign_in(app)
        cookie = app.client.cookies[COOKIE]
    others = ",".join(t for t in TOKENS.split(",") if not t.startswith("staff="))
    async with intake_app(tmp_path, api_tokens=others) as app:
        assert not signed_in(await console_with(app, cookie))
