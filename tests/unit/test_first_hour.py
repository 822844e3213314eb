"""The first hour: the start banner, where e-mail goes without an SMTP server, the charts on a
phone (issue 19, point 4). Pure: no broker, no database."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.intake.web.transparency import bar_chart_svg, wrap_label
from services.notifier.channels import ChannelError, MailboxChannel, SmtpSettings
from services.notifier.delivery import email_channel
from services.notifier.settings import NotifierSettings
from services.notifier.templates import RenderedMessage
from shared import mailbox
from shared.config import load_config
from shared.mailbox import MailSettings, uses_mailbox
from shared.settings import Settings
from shared.startup import banner, where

SQLITE = "sqlite+aiosqlite:///./x.db"
PG = "postgresql+asyncpg://root@127.0.0.1:5432/x"
MESSAGE = RenderedMessage(
    subject="Caso recibido: 2025-7K3-M9Q-XD2",
    text="Su caso fue recibido. Código: 2025-7K3-M9Q-XD2",
    html="<p>Su caso fue recibido.</p>",
)


def test_without_an_smtp_server_the_embedded_default_writes_mail_to_the_local_mailbox() -> None:
    assert uses_mailbox(Settings(database_url=SQLITE), MailSettings())


def test_a_configured_smtp_server_is_used_as_soon_as_it_is_set() -> None:
    assert not uses_mailbox(Settings(database_url=SQLITE), MailSettings(smtp_host="mail"))
    assert not uses_mailbox(Settings(database_url=SQLITE), MailSettings(smtp_port=2525))
    assert not uses_mailbox(Settings(database_url=SQLITE), MailSettings(), smtp_configured=True)
    assert not uses_mailbox(Settings(database_url=PG), MailSettings())
    forced = MailSettings(mail_mode="mailbox")
    assert uses_mailbox(Settings(database_url=PG), forced, smtp_configured=True)


def test_the_delivery_loop_picks_the_mailbox_channel_on_the_embedded_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEFENSA311_MAILBOX_DIR", str(tmp_path))
    embedded = Settings(database_url=SQLITE)
    assert isinstance(email_channel(NotifierSettings(), embedded), MailboxChannel)
    assert not isinstance(
        email_channel(NotifierSettings(smtp_host="mail"), embedded), MailboxChannel
    )


async def test_an_e_mail_is_written_as_one_eml_file_and_a_resend_replaces_it(
    tmp_path: Path,
) -> None:
    clock = iter([datetime(2025, 3, 3, 14, 0, tzinfo=UTC), datetime(2025, 3, 3, 14, 5, tzinfo=UTC)])
    channel = MailboxChannel(SmtpSettings(), tmp_path, now=lambda: next(clock))
    for _ in range(2):
        await channel.send(to="ana@example.com", message=MESSAGE, message_id="notification-7")
    files = list(tmp_path.glob("*.eml"))
    assert len(files) == 1
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "ana@example.com"
    assert parsed["Subject"] == MESSAGE.subject
    [stored] = mailbox.newest(tmp_path)
    assert stored.subject == MESSAGE.subject
    assert "2025-7K3-M9Q-XD2" in stored.text


async def test_the_mailbox_refuses_a_malformed_recipient_like_smtp_does(tmp_path: Path) -> None:
    channel = MailboxChannel(SmtpSettings(), tmp_path)
    with pytest.raises(ChannelError) as caught:
        await channel.send(to="no-es-correo", message=MESSAGE, message_id="n-1")
    assert not caught.value.transient
    assert list(tmp_path.iterdir()) == []


def test_the_banner_names_every_page_the_roles_with_tokens_and_where_mail_goes() -> None:
    settings = Settings(
        database_url=SQLITE, api_tokens="staff=muy-secreto-1,department:obras=muy-secreto-2"
    )
    config = load_config(settings.config)
    text = banner(settings, config, ("intake", "router", "deadlines", "notifier"))
    for path in ("/consola", "/presentar", "/seguimiento", "/transparencia", "/docs"):
        assert f"http://127.0.0.1:8000{path}" in text
    assert "department:obras, staff" in text
    assert "carpeta local var/correo" in text
    assert "muy-secreto" not in text


def test_the_banner_says_how_to_get_a_token_when_there_is_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEFENSA311_SMTP_HOST", "correo.example")
    settings = Settings(database_url=PG)
    text = banner(settings, load_config(settings.config), ("intake", "notifier"))
    assert "DEFENSA311_API_TOKENS=staff=<token>" in text
    assert "servidor SMTP correo.example:1025" in text


def test_a_url_is_named_by_host_and_port_only() -> None:
    assert where("amqp://user:clave-secreta@rabbit:5673/vh", 5672) == "rabbit:5673"
    assert where("postgresql+asyncpg://u:clave@db/x", 5432) == "db:5432"


def test_a_chart_draws_no_bar_for_zero_and_keeps_every_label_whole() -> None:
    name = "Dirección de Obras y Construcciones Municipales del Distrito Capital"
    svg = bar_chart_svg("Casos", [(name, 4.0), ("Web", 0.0)], chart_id="t")
    assert svg.count("<rect") == 1
    assert " ".join(wrap_label(name)) == name
    assert all(len(line) <= 38 for line in wrap_label(name))
    shown = " ".join(re.findall(r"<tspan[^>]*>([^<]*)</tspan>", svg))
    assert name in shown
    assert "…" not in svg
    width = int(re.search(r'viewBox="0 0 (\d+)', svg).group(1))  # type: ignore[union-attr]
    assert width <= 358  # a 390 px phone's content width: one unit is at least one pixel


def test_start_installs_nothing_when_pyproject_is_unchanged_and_never_a_browser() -> None:
    import subprocess

    from tests.support import ROOT

    stamp = ROOT / ".venv" / ".defensa311-pyproject"
    if not stamp.exists():
        pytest.skip("this .venv was not made by scripts/setup")
    result = subprocess.run(
        [str(ROOT / "scripts" / "setup"), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Instalando" not in result.stdout
    start = (ROOT / "scripts" / "start").read_text()
    assert "scripts/setup --no-browser" in start
