"""Before ``defensa311 run``: check what a first start usually gets wrong, then say where to go.

Each check raises :class:`StartupError` with one Spanish line that names the setting to fix
and never echoes a secret (no token, no password, no full URL); the command prints it and
exits non-zero instead of a traceback. :func:`banner` is what a new user reads once it starts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import InstitutionConfig, load_config
from shared.mailbox import MailSettings, smtp_server, uses_mailbox
from shared.settings import Settings

CONNECT_SECONDS = 5.0


class StartupError(Exception):
    """One line for the operator: the setting and what is wrong with it."""


def where(url: str, default_port: int) -> str:
    """``host:port`` of a URL: enough to recognise it, without user or password."""
    try:
        parts = urlsplit(url)
        port = parts.port or default_port
    except ValueError:
        return "(dirección mal escrita)"
    return f"{parts.hostname or '127.0.0.1'}:{port}"


def check_config(settings: Settings) -> InstitutionConfig:
    try:
        return load_config(settings.config)
    except FileNotFoundError:
        raise StartupError(
            f"DEFENSA311_CONFIG: no existe el archivo de configuración {settings.config}"
        ) from None
    except Exception as exc:
        raise StartupError(
            f"DEFENSA311_CONFIG: el archivo {settings.config} no es válido ({type(exc).__name__})"
        ) from None


def check_port(settings: Settings) -> None:
    """The HTTP port is free (bound and released at once, with the server's own options)."""
    family = socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.http_host, settings.http_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"DEFENSA311_HTTP_PORT: el puerto {settings.http_port} ya está en uso en "
                    f"{settings.http_host}; cierre el otro programa o elija otro puerto"
                ) from None
            raise StartupError(
                f"DEFENSA311_HTTP_HOST / DEFENSA311_HTTP_PORT: no se puede escuchar en "
                f"{settings.http_host}:{settings.http_port} ({exc.strerror})"
            ) from None


async def check_broker(settings: Settings) -> None:
    import aio_pika

    # The client libraries log each failed attempt themselves; the one line below says it all.
    quiet = [logging.getLogger(name) for name in ("aiormq", "aio_pika")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            connection = await aio_pika.connect(settings.amqp_url, timeout=CONNECT_SECONDS)
        await connection.close()
    except Exception as exc:
        reason = (
            "usuario o contraseña rechazados"
            if "ACCESS_REFUSED" in repr(exc) or "authentication" in repr(exc).lower()
            else "no responde"
        )
        raise StartupError(
            f"DEFENSA311_AMQP_URL: no se puede conectar con RabbitMQ en "
            f"{where(settings.amqp_url, 5672)} ({reason})"
        ) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


async def check_database(settings: Settings) -> None:
    from sqlalchemy import text

    from shared.db.engine import make_engine

    if settings.is_sqlite:
        path = settings.sqlite_path
        folder = path.parent if path is not None else Path(".")
        if not folder.is_dir():
            raise StartupError(
                f"DEFENSA311_DATABASE_URL: no existe la carpeta {folder} de la base SQLite"
            )
    engine = make_engine(settings.database_url)
    try:
        async with asyncio.timeout(CONNECT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        what = (
            "la base SQLite"
            if settings.is_sqlite
            else "PostgreSQL en " + where(settings.database_url, 5432)
        )
        raise StartupError(
            f"DEFENSA311_DATABASE_URL: no se puede conectar con {what} "
            "(compruebe que el servidor esté en marcha y los datos de acceso)"
        ) from None
    finally:
        await engine.dispose()


async def check_services(settings: Settings) -> None:
    await check_database(settings)
    await check_broker(settings)


def token_roles(settings: Settings, config: InstitutionConfig) -> list[str]:
    """The roles that have a token (after the tokens were found valid)."""
    roles = [
        item.partition("=")[0].strip() for item in settings.api_tokens.split(",") if item.strip()
    ]
    roles += [entry.role for entry in config.tokens]
    return sorted(set(roles))


def base_url(settings: Settings) -> str:
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming it, not binding it
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def banner(settings: Settings, config: InstitutionConfig, names: Sequence[str]) -> str:
    lines = [f"Defensa311 — {config.institution.office}"]
    if "intake" in names:
        url = base_url(settings)
        lines += [
            f"  Consola del personal:  {url}/consola",
            f"  Presentar un caso:     {url}/presentar",
            f"  Seguimiento de casos:  {url}/seguimiento",
            f"  Transparencia:         {url}/transparencia",
            f"  API (documentación):   {url}/docs",
        ]
        roles = token_roles(settings, config)
        if roles:
            lines.append(f"  Roles con token:       {', '.join(roles)}")
        else:
            lines.append(
                "  Roles con token:       ninguno; defina DEFENSA311_API_TOKENS=staff=<token> "
                "para entrar en la consola"
            )
    if "notifier" in names:
        mail = MailSettings()
        if uses_mailbox(settings, mail):
            lines.append(
                f"  Correo:                carpeta local {mail.mailbox_dir} "
                "(consola: Correo enviado (modo local))"
            )
        else:
            lines.append(f"  Correo:                servidor SMTP {smtp_server(mail)}")
    return "\n".join(lines)
