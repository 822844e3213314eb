"""The local mailbox: where e-mail goes when no SMTP server is configured.

On the embedded default (SQLite) with neither ``DEFENSA311_SMTP_HOST`` nor
``DEFENSA311_SMTP_PORT`` set, the notifier writes each e-mail as an ``.eml`` file into
``DEFENSA311_MAILBOX_DIR`` instead of retrying against a server that is not there; staff read
them on the console page "Correo enviado (modo local)". ``DEFENSA311_MAIL_MODE`` forces one
way (``smtp`` or ``mailbox``); ``auto`` decides as above. The notifier writes the folder and
intake reads it, so both find it here.
"""

from __future__ import annotations

import email
import email.policy
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Settings

SUFFIX = ".eml"
# Where the notifier looks for an SMTP server unless configured (services/notifier/settings.py).
SMTP_DEFAULT_HOST = "127.0.0.1"
SMTP_DEFAULT_PORT = 1025


class MailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    mail_mode: Literal["auto", "smtp", "mailbox"] = "auto"
    mailbox_dir: Path = Path("var/correo")
    # Read only to know whether a server is configured; how to reach it is the notifier's.
    smtp_host: str | None = None
    smtp_port: int | None = None


def uses_mailbox(settings: Settings, mail: MailSettings, *, smtp_configured: bool = False) -> bool:
    """True when e-mail goes to the local folder rather than to an SMTP server."""
    if mail.mail_mode != "auto":
        return mail.mail_mode == "mailbox"
    configured = smtp_configured or mail.smtp_host is not None or mail.smtp_port is not None
    return settings.is_sqlite and not configured


def smtp_server(mail: MailSettings) -> str:
    """The SMTP server e-mail goes to, as ``host:port``."""
    return f"{mail.smtp_host or SMTP_DEFAULT_HOST}:{mail.smtp_port or SMTP_DEFAULT_PORT}"


def write(folder: Path, name: str, message: Message, now: datetime) -> Path:
    """Store ``message`` as ``<folder>/<time>-<name>.eml``; the same ``name`` is one file.

    Written to a temporary file and renamed, so a reader never sees half a message; a resend
    of one notification (same ``name``) replaces its file rather than adding a second.
    """
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
    for existing in folder.glob(f"*-{safe}{SUFFIX}"):
        existing.unlink(missing_ok=True)
    path = folder / f"{now.astimezone(UTC):%Y%m%dT%H%M%S%f}-{safe}{SUFFIX}"
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(message.as_bytes())
    os.replace(temporary, path)
    return path


@dataclass(frozen=True)
class StoredMail:
    name: str
    sent_at: datetime | None
    to: str
    subject: str
    text: str


def read(path: Path) -> StoredMail:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    try:
        sent_at: datetime | None = parsedate_to_datetime(str(parsed["Date"]))
    except (TypeError, ValueError):
        sent_at = None
    return StoredMail(
        name=path.name,
        sent_at=sent_at,
        to=str(parsed["To"] or ""),
        subject=str(parsed["Subject"] or ""),
        text=str(text),
    )


def newest(folder: Path, limit: int = 100) -> list[StoredMail]:
    """The latest ``limit`` messages, newest first (file names start with the time)."""
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob(f"*{SUFFIX}"), reverse=True)[:limit]
    return [read(path) for path in paths]
