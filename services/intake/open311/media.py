"""Open311 ``media_url``: fetched into the case's attachments only from allow-listed hosts.

``DEFENSA311_MEDIA_URL_HOSTS`` lists the hosts (``host`` or ``host:port``, comma-separated)
whose links intake downloads — the 311 platform's own media server, say. A link to any other
host is never fetched (the server must not be made to call arbitrary addresses); it stays a link
in the description for staff. A fetched file goes through the same checks and cleaning as an
upload on ``/presentar``.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.evidence import AttachmentLimits, Prepared, prepare, safe_name

log = logging.getLogger("defensa311.intake.open311")
FETCH_SECONDS = 10.0


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    media_url_hosts: str = ""

    def allowed(self, url: str) -> bool:
        hosts = {h.strip().lower() for h in self.media_url_hosts.split(",") if h.strip()}
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        host = (parts.hostname or "").lower()
        return parts.scheme in ("http", "https") and (
            host in hosts or (port is not None and f"{host}:{port}" in hosts)
        )


async def fetch_media(
    url: str, settings: MediaSettings, limits: AttachmentLimits
) -> list[Prepared]:
    """The file behind an allowed ``url``, checked and cleaned; ``[]`` if not fetched.

    Raises :class:`~shared.evidence.AttachmentRefused` when the file is not one we accept."""
    if not settings.allowed(url):
        return []
    data = bytearray()
    try:
        async with (
            httpx.AsyncClient(follow_redirects=False, timeout=FETCH_SECONDS) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                log.warning("media_url not fetched", extra={"status_code": response.status_code})
                return []
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > limits.max_bytes:
                    break
    except httpx.HTTPError as exc:
        log.warning("media_url not fetched", extra={"error": type(exc).__name__})
        return []
    name = safe_name(urlsplit(url).path.rsplit("/", 1)[-1])
    return await asyncio.to_thread(prepare, [(name, bytes(data))], limits)
