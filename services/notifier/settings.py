"""The notifier's own settings (prefix ``DEFENSA311_``): how e-mail, SMS and webhooks go out.

Built once by :func:`services.notifier.app.service`; nothing else reads them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.mailbox import SMTP_DEFAULT_HOST, SMTP_DEFAULT_PORT


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    smtp_host: str = SMTP_DEFAULT_HOST
    smtp_port: int = SMTP_DEFAULT_PORT
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Defensa del Usuario 311 <no-responder@alcaldia.example>"
    smtp_starttls: bool = False
    smtp_tls: bool = False
    # A connection carries the next e-mail if idle less than this (0: one per e-mail) …
    smtp_reuse_seconds: float = Field(default=20.0, ge=0)
    # … and if it has carried fewer messages than this.
    smtp_messages_per_connection: int = Field(default=20, ge=1)
    # Signs the webhooks' bodies (the receivers verify it); for nothing else.
    webhook_secret: str = "cambie-este-secreto"  # noqa: S105 - a placeholder to override
    sms_webhook_url: str | None = None
    templates_dir: Path | None = None
    # 30 s doubling, capped at an hour: ten tries ride out about three hours of an SMTP
    # or webhook outage before a notification is marked failed.
    notify_attempts: int = 10
    notify_backoff_seconds: float = 30.0
