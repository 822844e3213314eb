"""The first hour (issue 19, point 4): a start that fails says why in one line; e-mail without
an SMTP server is readable on the console; the API answers every time in one format."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.intake.app import service as intake_service
from services.intake.http import create_app
from services.notifier.channels import MailboxChannel, SmtpSettings
from services.notifier.templates import RenderedMessage
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.runtime import Runtime
from tests.support import ROOT, free_port, settings_for

SECRET = "clave-muy-secreta-42"


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``defensa311 run all`` with a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEFENSA311_")}
    clean.update(
        {
            "DEFENSA311_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/d.db",
            "DEFENSA311_HTTP_PORT": str(free_port()),
            "DEFENSA311_MAILBOX_DIR": str(tmp_path / "correo"),
        }
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "run", "all"],
        env=clean,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"no se puede iniciar: {setting}")
    assert "Traceback" not in result.stderr + result.stdout
    assert SECRET not in result.stderr + result.stdout


def test_a_malformed_token_list_stops_the_start_naming_the_setting_not_the_token(
    tmp_path: Path,
) -> None:
    result = start(tmp_path, DEFENSA311_API_TOKENS=f"staff:{SECRET}")
    assert_one_clear_line(result, "DEFENSA311_API_TOKENS")
    reversed_pair = start(tmp_path, DEFENSA311_API_TOKENS=f"{SECRET}=staff")
    assert_one_clear_line(reversed_pair, "DEFENSA311_API_TOKENS")


def test_a_port_in_use_stops_the_start_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(tmp_path, DEFENSA311_HTTP_PORT=str(port))
    assert_one_clear_line(result, "DEFENSA311_HTTP_PORT")
    assert str(port) in result.stderr


def test_an_unreachable_database_stops_the_start_without_echoing_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://root:{SECRET}@127.0.0.1:{free_port()}/defensa311"
    result = start(tmp_path, DEFENSA311_DATABASE_URL=url)
    assert_one_clear_line(result, "DEFENSA311_DATABASE_URL")


def test_an_unreachable_broker_stops_the_start_without_echoing_its_password(
    tmp_path: Path,
) -> None:
    url = f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}/"
    result = start(tmp_path, DEFENSA311_AMQP_URL=url)
    assert_one_clear_line(result, "DEFENSA311_AMQP_URL")


def test_a_setting_of_the_wrong_type_is_named_without_its_value(tmp_path: Path) -> None:
    result = start(tmp_path, DEFENSA311_HTTP_PORT=SECRET)
    assert_one_clear_line(result, "DEFENSA311_HTTP_PORT")


@pytest.fixture
async def console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """Intake's app on the embedded default, signed in as staff (nothing started)."""
    monkeypatch.setenv("DEFENSA311_MAILBOX_DIR", str(tmp_path / "correo"))
    settings = settings_for(
        "amqp://guest:guest@127.0.0.1:5672/",
        f"sqlite+aiosqlite:///{tmp_path}/d.db",
        api_tokens="staff=t-staff,department:obras=t-obras",
    )
    runtime = Runtime(settings, [intake_service()])
    await upgrade(runtime.deps.engine)
    app = create_app(runtime.deps)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield client
    await runtime.deps.engine.dispose()


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/consola/entrar", data={"token": token})
    assert response.status_code == 303


async def test_staff_read_the_mail_of_the_local_mailbox_on_the_console(
    console: httpx.AsyncClient, tmp_path: Path
) -> None:
    channel = MailboxChannel(SmtpSettings(), tmp_path / "correo")
    message = RenderedMessage(
        subject="Su caso 2025-7K3-M9Q-XD2 fue recibido",
        text="Guarde su código de seguimiento: 2025-7K3-M9Q-XD2.",
        html="<p>Guarde su código.</p>",
    )
    await channel.send(to="vecina@example.com", message=message, message_id="notification-1")

    assert (await console.get("/consola/correo")).status_code == 303  # signed out
    await sign_in(console, "t-staff")
    page = await console.get("/consola")
    assert 'href="/consola/correo"' in page.text
    page = await console.get("/consola/correo")
    assert page.status_code == 200
    assert "Correo enviado (modo local)" in page.text
    assert "Su caso 2025-7K3-M9Q-XD2 fue recibido" in page.text
    assert "vecina@example.com" in page.text
    assert "Guarde su código de seguimiento" in page.text
    assert page.headers["Cache-Control"] == "no-store"


async def test_a_department_does_not_read_the_local_mailbox(console: httpx.AsyncClient) -> None:
    await sign_in(console, "t-obras")
    assert (await console.get("/consola/correo")).status_code == 303


@pytest.mark.connected
async def test_post_and_get_answer_every_timestamp_with_the_panama_offset(pg_url: str) -> None:
    # PostgreSQL hands timestamps back in UTC: what made GET answer +00:00 before.
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/", pg_url)
    clock = FixedClock(datetime(2025, 3, 3, 14, 0, tzinfo=UTC))
    runtime = Runtime(settings, [intake_service()], clock=clock)
    await upgrade(runtime.deps.engine)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime.deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            filed = await client.post(
                "/api/v1/cases",
                json={
                    "channel": "web",
                    "kind": "sugerencia",
                    "description": "Pongan más bancas en el parque central del barrio.",
                    "anonymous": True,
                },
            )
            assert filed.status_code == 201, filed.text
            code = filed.json()["tracking_code"]
            read = (await client.get(f"/api/v1/cases/{code}")).json()
    finally:
        await runtime.deps.engine.dispose()
    assert filed.json()["due_at"] == read["due_at"]
    assert filed.json()["received_at"] == read["received_at"] == "2025-03-03T09:00:00-05:00"
    stamps = [read["received_at"], read["due_at"], *(h["at"] for h in read["history"])]
    stamps += [c["due_at"] for c in read["clocks"]]
    assert stamps and all(s.endswith("-05:00") for s in stamps)
