"""Rate limits that a client cannot step around: forwarded headers, failed authentication at
any door, batch lookups, and tokens too short to be worth guessing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import shared.startup
from services.intake.observability import HttpLimits
from services.intake.settings import IntakeSettings, startup_problems
from shared.cli import main
from shared.runtime import http_server_config
from shared.settings import Settings
from shared.throttle import FailureThrottle
from tests.integration.security_app import (
    BASE_URL,
    PLATFORM_TOKEN,
    STAFF_TOKEN,
    App,
    intake_app,
    open311_denuncia,
)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def through_uvicorn(app: App, settings: Settings) -> httpx.AsyncClient:
    """A client of the app as uvicorn serves it with these settings, connecting from
    127.0.0.1 (the address a local reverse proxy or tunnel would have)."""
    config = http_server_config(settings, app.asgi)
    config.load()
    transport = httpx.ASGITransport(app=config.loaded_app, client=("127.0.0.1", 52000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


async def wrong_logins(client: httpx.AsyncClient, n: int, *, rotate: bool) -> list[int]:
    statuses = []
    for i in range(n):
        headers = {"x-forwarded-for": f"203.0.113.{i}" if rotate else "198.51.100.7"}
        response = await client.post("/consola/entrar", data={"token": "x" * 30}, headers=headers)
        statuses.append(response.status_code)
    return statuses


async def test_a_rotating_x_forwarded_for_does_not_escape_the_login_throttle(
    tmp_path: Path,
) -> None:
    intake = IntakeSettings(auth_failures_burst=5)
    async with intake_app(tmp_path, intake=intake) as app:
        async with through_uvicorn(app, app.deps.settings) as client:
            statuses = await wrong_logins(client, 30, rotate=True)
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}


async def test_forwarded_addresses_count_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    intake = IntakeSettings(auth_failures_burst=5)
    async with intake_app(tmp_path, intake=intake, trusted_proxies="127.0.0.1") as app:
        async with through_uvicorn(app, app.deps.settings) as client:
            # Behind the proxy, each client has its own budget …
            assert set(await wrong_logins(client, 10, rotate=True)) == {401}
            # … and one client is still limited.
            statuses = await wrong_logins(client, 10, rotate=False)
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}


async def test_wrong_secrets_at_every_door_share_one_failure_budget(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        clock = FakeMonotonic()
        app.asgi.state.auth_throttle = FailureThrottle(3, 2.0, monotonic=clock)
        wrong = "w" * 30
        login = await app.client.post("/consola/entrar", data={"token": wrong})
        bearer = await app.client.get("/api/v1/cases", headers={"Authorization": f"Bearer {wrong}"})
        api_key = await app.client.post(
            "/open311/v2/requests.json", data=open311_denuncia(api_key=wrong)
        )
        assert (login.status_code, bearer.status_code, api_key.status_code) == (401, 401, 403)

        # The budget is spent: every door refuses, even the right secret, until it refills.
        refused = [
            await app.client.post("/consola/entrar", data={"token": STAFF_TOKEN}),
            await app.client.get(
                "/api/v1/cases", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
            ),
            await app.client.post("/open311/v2/requests.json", data=open311_denuncia()),
        ]
        assert [r.status_code for r in refused] == [429, 429, 429]
        assert int(refused[1].headers["retry-after"]) == 30
        assert "demasiados intentos" in refused[1].json()["detail"]
        assert "demasiados intentos" in refused[2].json()[0]["description"]

        clock.now += 30  # one failure's worth of budget back
        ok = await app.client.get(
            "/api/v1/cases", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
        )
        assert ok.status_code == 200
        filed = await app.client.post(
            "/open311/v2/requests.json", data=open311_denuncia(api_key=PLATFORM_TOKEN)
        )
        assert filed.status_code == 201  # success costs nothing


def codes(n: int, start: int = 0) -> str:
    return ",".join(f"D311-{i:04d}-ZZZZ" for i in range(start, start + n))


async def test_every_code_of_a_batch_lookup_counts_against_the_lookup_budget(
    tmp_path: Path,
) -> None:
    limits = HttpLimits(rate_limit_lookup_burst=10, rate_limit_lookup_per_minute=1)
    async with intake_app(tmp_path, limits=limits) as app:
        first = await app.client.get(
            "/open311/v2/requests.json", params={"service_request_id": codes(8)}
        )
        assert first.status_code in (200, 400)  # answered: the codes were looked up
        second = await app.client.get(
            "/open311/v2/requests.json", params={"service_request_id": codes(8, 8)}
        )
        assert second.status_code == 429
        # Two single lookups are what the first batch left.
        singles = [
            (await app.client.get(f"/open311/v2/requests/D311-99{i}-ZZZZ.json")).status_code
            for i in range(3)
        ]
        assert singles[:2] == [404, 404] and singles[2] == 429


async def test_a_batch_lookup_names_at_most_fifty_codes(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        response = await app.client.get(
            "/open311/v2/requests.json", params={"service_request_id": codes(51)}
        )
        assert response.status_code == 400
        assert "como máximo 50 códigos" in response.json()[0]["description"]


def test_tokens_shorter_than_24_characters_stop_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def reachable(_settings: Settings) -> None:
        return None

    # The broker, the database and the port are other checks' business.
    monkeypatch.setattr(shared.startup, "check_services", reachable)
    monkeypatch.setattr(shared.startup, "check_port", lambda _settings: None)
    secret = "corto-secreto-1"
    monkeypatch.setenv("DEFENSA311_API_TOKENS", f"staff={secret},supervisor={'s' * 24}")
    assert main(["run", "intake"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "DEFENSA311_API_TOKENS" in err and "staff" in err and "24 caracteres" in err
    assert secret not in err and "supervisor" not in err
    assert "Traceback" not in err


def test_long_enough_tokens_and_secrets_pass_the_start_up_checks() -> None:
    settings = Settings(api_tokens=f"staff={'s' * 24},platform311={'p' * 40}")
    assert startup_problems(settings, IntakeSettings()) == []
    short_secret = IntakeSettings(session_secret="corta")  # type: ignore[arg-type]
    problems = startup_problems(settings, short_secret)
    assert len(problems) == 1 and problems[0].startswith("DEFENSA311_SESSION_SECRET")
    assert "corta" not in problems[0]


async def test_the_notification_routes_spend_the_same_failure_budget(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        app.asgi.state.auth_throttle = FailureThrottle(2, 2.0, monotonic=FakeMonotonic())
        wrong = {"Authorization": f"Bearer {'w' * 30}"}
        assert (await app.client.get("/api/v1/tasks", headers=wrong)).status_code == 401
        assert (await app.client.get("/api/v1/notifications", headers=wrong)).status_code == 401
        right = {"Authorization": f"Bearer {STAFF_TOKEN}"}
        assert (await app.client.get("/api/v1/tasks", headers=right)).status_code == 429
        assert (await app.client.get("/api/v1/cases", headers=right)).status_code == 429
