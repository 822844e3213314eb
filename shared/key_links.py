"""The clave link's settings and secret, read alike by intake (which checks the links) and
the notifier (which puts them in the receipt e-mail); the signing itself is
:mod:`shared.domain.key_link`.

``DEFENSA311_CLAVE_LINK_SECRET`` signs the links and nothing else (at least 32 characters).
Unset on the embedded default (SQLite), a random one is generated on first start and kept
in a file next to the database (``<database>.clave-link-secret``, readable by its owner
only), so links already e-mailed keep working after a restart; with an in-memory database
it lives as long as the process. Unset on PostgreSQL, no link is made: the receipt e-mail
says where to get a clave instead, and the link page answers that the link is not valid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.key_link import KeyLinks
from shared.settings import Settings

MIN_SECRET_LENGTH = 32
SECRET_FILE_SUFFIX = ".clave-link-secret"  # noqa: S105 - a file name
#: The link's lifetime bounds, in days.
MIN_DAYS, MAX_DAYS = 1, 365


class KeyLinkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    # Signs the receipt e-mail's clave links; for nothing else.
    clave_link_secret: SecretStr | None = None
    # How long a receipt e-mail's clave link works.
    clave_link_days: int = Field(default=30, ge=MIN_DAYS, le=MAX_DAYS)


def key_link_problems(settings: Settings) -> list[str]:
    """What stops a start, one Spanish line each; the secret is never echoed."""
    try:
        links = KeyLinkSettings()
    except ValidationError as exc:
        fields = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        if "clave_link_secret" in fields:
            return ["DEFENSA311_CLAVE_LINK_SECRET no es válida"]
        return [
            f"DEFENSA311_CLAVE_LINK_DAYS: debe ser un número entero de días entre {MIN_DAYS} "
            f"y {MAX_DAYS}"
        ]
    secret = links.clave_link_secret
    if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
        return [
            f"DEFENSA311_CLAVE_LINK_SECRET: debe tener al menos {MIN_SECRET_LENGTH} caracteres "
            "(ej. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        ]
    return []


def load_key_links(settings: Settings, links: KeyLinkSettings | None = None) -> KeyLinks | None:
    """The process's link signer; ``None`` when links are off (PostgreSQL without a secret)."""
    links = links or KeyLinkSettings()
    lifetime = timedelta(days=links.clave_link_days)
    configured = links.clave_link_secret
    if configured is not None:
        return KeyLinks(configured.get_secret_value().encode(), lifetime)
    if not settings.is_sqlite:
        return None
    path = settings.sqlite_path
    secret = secrets.token_urlsafe(32) if path is None else _stored_secret(path)
    return KeyLinks(secret.encode(), lifetime)


def _stored_secret(database: Path) -> str:
    """The embedded default's secret, generated once beside the database file."""
    path = database.with_name(database.name + SECRET_FILE_SUFFIX)
    stored = None
    with contextlib.suppress(FileNotFoundError):
        stored = path.read_text(encoding="ascii").strip()
        if len(stored) >= MIN_SECRET_LENGTH:
            return stored
    secret = secrets.token_urlsafe(32)
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secret + "\n")
    try:
        if stored is not None:
            os.replace(temporary, path)  # an unusable file (emptied, cut short) is replaced
        else:
            # Another process may have written one meanwhile: the first one stays.
            os.link(temporary, path)
    except FileExistsError:
        secret = path.read_text(encoding="ascii").strip()
    finally:
        temporary.unlink(missing_ok=True)
    return secret
