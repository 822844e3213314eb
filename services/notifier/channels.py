"""Delivery channels of the notifier: e-mail over SMTP (or into the local mailbox folder when
no SMTP server is configured) and signed JSON webhooks.

Every failure is raised as :class:`ChannelError` with ``transient`` telling the caller whether a
retry may help (connection refused, timeouts, SMTP 4xx, HTTP 408/429/5xx) or not (SMTP 5xx such as
a refused address, HTTP 4xx, malformed input). ``reason`` is short and carries no personal data
(no address, no URL, no server text that could echo one), so it can be logged and stored.

Webhook signing (what receivers implement)::

    X-Defensa311-Timestamp: <unix seconds>
    X-Defensa311-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>
    X-Defensa311-Delivery:  <delivery id; the same on every retry of one delivery>

A receiver checks the signature with :func:`verify_signature` (constant-time, refuses timestamps
more than ``tolerance_s`` away from its clock) and drops a ``X-Defensa311-Delivery`` it has
already processed, which also defeats a replay inside the tolerance window.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.charset import BASE64, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import aiosmtplib
import httpx

from services.notifier.templates import RenderedMessage
from shared import mailbox

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ChannelError",
    "EmailChannel",
    "MailboxChannel",
    "SmtpSettings",
    "WebhookChannel",
    "mask_email",
    "mask_phone",
    "sign",
    "verify_signature",
]

TIMESTAMP_HEADER = "X-Defensa311-Timestamp"
SIGNATURE_HEADER = "X-Defensa311-Signature"
DELIVERY_HEADER = "X-Defensa311-Delivery"
SIGNATURE_PREFIX = "sha256="
USER_AGENT = "Defensa311-Notifier/1"

_TRANSIENT_HTTP = frozenset({408, 425, 429})
_MSGID_SAFE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
_DIGITS = re.compile(r"^[0-9]{1,12}$")


class ChannelError(Exception):
    """A delivery failed. ``transient``: worth retrying later; ``reason``: loggable, no PII."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status  # SMTP reply code or HTTP status, when there is one
        self.retry_after = retry_after  # seconds, from an HTTP Retry-After header

    def __repr__(self) -> str:
        return (
            f"ChannelError(reason={self.reason!r}, transient={self.transient}, "
            f"status={self.status})"
        )


# --------------------------------------------------------------------------------------- e-mail


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    username: str | None = None
    password: str | None = None
    sender: str = "Defensa del Usuario 311 <no-responder@alcaldia.example>"
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 10.0
    # An open connection carries the next message if it has been idle less than this many
    # seconds (0: a connection per message) and has carried fewer than this many messages
    # (Exchange's receive connectors allow 20 by default; servers drop idle clients after
    # a minute or more).
    reuse_seconds: float = 20.0
    messages_per_connection: int = 20
    idle_connections: int = 8

    def __repr__(self) -> str:  # never print the password
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={'***' if self.password else None}, sender={self.sender!r}, "
            f"starttls={self.starttls}, use_tls={self.use_tls}, timeout={self.timeout}, "
            f"reuse_seconds={self.reuse_seconds}, "
            f"messages_per_connection={self.messages_per_connection})"
        )


def message_id_header(message_id: str, sender: str) -> str:
    """The ``Message-ID`` for ``message_id``: deterministic, so a resend carries the same one."""
    local = message_id if _MSGID_SAFE.match(message_id) else _digest(message_id)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "defensa311.invalid"
    if not re.fullmatch(r"[A-Za-z0-9.\-]+", domain):
        domain = "defensa311.invalid"
    return f"<defensa311.{local}@{domain}>"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def _smtp_code_error(what: str, code: int) -> ChannelError:
    return ChannelError(f"smtp {what} ({code})", transient=400 <= code < 500, status=code)


@dataclass(eq=False)
class _Connection:
    client: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


class _Closing:
    """``async with`` one of these calls its ``aclose`` at the end."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class EmailChannel(_Closing):
    """Sends a :class:`RenderedMessage` as ``multipart/alternative`` (text, then HTML).

    Connections are kept open between messages (see :class:`SmtpSettings`): a new one costs
    a TCP handshake, the greeting, EHLO, perhaps STARTTLS and a login, and QUIT. A kept one
    is checked with NOOP before it carries a message, so a connection the server closed in
    the meantime is replaced rather than failing the delivery. A connection that saw any
    error is closed. Use it as an async context manager, or call :meth:`aclose`, to QUIT
    the idle connections."""

    def __init__(
        self, settings: SmtpSettings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._local_hostname: str | None = None
        self._monotonic = monotonic
        self._idle: list[_Connection] = []  # most recently used last

    async def aclose(self) -> None:
        """QUIT every idle connection (at once, each waiting ``QUIT_SECONDS`` at most)."""
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(connection.client) for connection in idle))

    async def _connection(self) -> _Connection:
        """The most recently used idle connection that still answers NOOP, or a new one."""
        settings = self._settings
        now = self._monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.client.is_connected and now - connection.idle_since < (
                settings.reuse_seconds
            ):
                try:
                    await connection.client.noop()
                except BaseException as exc:
                    connection.client.close()
                    if not isinstance(exc, aiosmtplib.SMTPException | OSError):
                        raise  # cancelled
                    # else the server hung up meanwhile: try the next one
                else:
                    return connection
            else:
                # Idle too long: the server may have gone without a word; closed without
                # QUIT, which would wait for its answer.
                connection.client.close()
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=await self._ehlo_name(),
            username=settings.username,
            password=settings.password,
            use_tls=settings.use_tls,
            start_tls=settings.starttls,
            timeout=settings.timeout,
        )
        await client.connect()
        return _Connection(client)

    async def _release(self, connection: _Connection) -> None:
        """Keep a connection that carried a message for the next one, or QUIT it."""
        settings = self._settings
        connection.sent += 1
        if (
            settings.reuse_seconds > 0
            and connection.sent < settings.messages_per_connection
            and len(self._idle) < settings.idle_connections
        ):
            connection.idle_since = self._monotonic()
            self._idle.append(connection)
        else:
            await _quit(connection.client)

    async def _ehlo_name(self) -> str:
        # What EHLO says. aiosmtplib asks for the FQDN in a thread on every connection.
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self._local_hostname

    def build(self, *, to: str, message: RenderedMessage, message_id: str) -> Message:
        """The MIME message :meth:`send` transmits (exposed for previews and tests).

        Built with the ``compat32`` classes, which take headers as given instead of parsing
        each one (a third of the notifier's CPU went to ``EmailMessage`` header parsing); so
        the checks that policy made are made here: no line break in a header value (header
        injection), addresses re-formatted, non-ASCII text encoded (RFC 2047)."""
        settings = self._settings
        if any(c in value for value in (to, settings.sender, message.subject) for c in "\r\n"):
            raise ChannelError("invalid message: ValueError", transient=False)
        try:
            # A fixed boundary spares the generator its search of the whole text for a free
            # one (half of building a message): the parts are base64, which never has "_".
            mail = MIMEMultipart("alternative", boundary=f"=_defensa311_{_digest(message_id)}")
            mail["From"] = _address(settings.sender)
            mail["To"] = _address(to)
            mail["Subject"] = _text_header("Subject", message.subject)
            mail["Date"] = formatdate(localtime=False, usegmt=True)
            mail["Message-ID"] = message_id_header(message_id, settings.sender)
            mail["X-Defensa311-Message"] = (
                message_id if _MSGID_SAFE.match(message_id) else _digest(message_id)
            )
            mail["Auto-Submitted"] = "auto-generated"
            mail["Content-Language"] = "es-PA"
            mail.attach(MIMEText(message.text, "plain", "utf-8"))
            mail.attach(MIMEText(message.html, "html", "utf-8"))
        except (ValueError, TypeError, UnicodeError) as exc:
            raise ChannelError(f"invalid message: {type(exc).__name__}", transient=False) from None
        return mail

    async def send(self, *, to: str, message: RenderedMessage, message_id: str) -> None:
        recipient = parseaddr(to)[1]
        if not recipient or "@" not in recipient or any(c in to for c in "\r\n"):
            raise ChannelError("invalid recipient address", transient=False)
        sender = parseaddr(self._settings.sender)[1]
        mail = self.build(to=to, message=message, message_id=message_id)
        try:
            connection = await self._connection()
            try:
                await connection.client.send_message(
                    mail, sender=sender or None, recipients=[recipient]
                )
            except BaseException:
                connection.client.close()
                raise
            await self._release(connection)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients] or [550]
            transient = all(400 <= code < 500 for code in codes)
            raise ChannelError(
                f"smtp recipient refused ({codes[0]})", transient=transient, status=codes[0]
            ) from None
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _smtp_code_error("recipient refused", exc.code) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _smtp_code_error("sender refused", exc.code) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _smtp_code_error("authentication failed", exc.code) from None
        except aiosmtplib.SMTPDataError as exc:
            raise _smtp_code_error("message refused", exc.code) from None
        except aiosmtplib.SMTPTimeoutError:
            raise ChannelError("smtp timeout", transient=True) from None
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise _smtp_code_error("server refused connection", exc.code) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected):
            raise ChannelError("smtp connection failed", transient=True) from None
        except aiosmtplib.SMTPNotSupported:
            raise ChannelError("smtp feature not supported by server", transient=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _smtp_code_error("error", exc.code) from None
        except aiosmtplib.SMTPException as exc:
            raise ChannelError(f"smtp error: {type(exc).__name__}", transient=True) from None
        except ssl.SSLError:
            raise ChannelError("smtp tls error", transient=False) from None
        except (TimeoutError, OSError):
            raise ChannelError("smtp connection failed", transient=True) from None


class MailboxChannel(_Closing):
    """Writes each e-mail as an ``.eml`` file into a local folder (:mod:`shared.mailbox`).

    The embedded default's stand-in for an SMTP server: the same MIME message
    :class:`EmailChannel` would send, readable by staff on the console."""

    def __init__(
        self,
        settings: SmtpSettings,
        folder: Path,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._builder = EmailChannel(settings)
        self._folder = folder
        self._now = now

    def __repr__(self) -> str:
        return f"MailboxChannel(folder={str(self._folder)!r})"

    async def aclose(self) -> None:
        return None

    async def send(self, *, to: str, message: RenderedMessage, message_id: str) -> None:
        recipient = parseaddr(to)[1]
        if not recipient or "@" not in recipient or any(c in to for c in "\r\n"):
            raise ChannelError("invalid recipient address", transient=False)
        mail = self._builder.build(to=to, message=message, message_id=message_id)
        try:
            await asyncio.to_thread(mailbox.write, self._folder, message_id, mail, self._now())
        except OSError:
            raise ChannelError("mailbox folder not writable", transient=True) from None


QUIT_SECONDS = 2.0


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say QUIT if the connection is still up (waiting ``QUIT_SECONDS`` at most for the
    answer); close it either way."""
    if client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit(timeout=QUIT_SECONDS)
    client.close()


# -------------------------------------------------------------------------------------- webhook


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`` (the signature header value)."""
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp_header: str,
    signature_header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = 300,
) -> bool:
    """True when the signature matches and the timestamp is within ``tolerance_s`` of ``now``.

    Stale and future timestamps are refused (replay); the comparison is constant-time.
    """
    stamp = (timestamp_header or "").strip()
    if not _DIGITS.match(stamp):
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    given = (signature_header or "").strip().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The exact body bytes that are signed and sent (compact UTF-8 JSON)."""
    return json.dumps(
        dict(payload), ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode("utf-8")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    return None


class WebhookChannel(_Closing):
    """POSTs signed JSON. Owns (and closes via :meth:`aclose`) its client unless one is given."""

    def __init__(
        self,
        *,
        secret: str,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("webhook secret must not be empty")
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._owns_client = client is None
        self._client = client

    def __repr__(self) -> str:
        return f"WebhookChannel(timeout={self._timeout})"

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def send(self, *, url: str, payload: Mapping[str, Any], delivery_id: str) -> None:
        try:
            body = encode_payload(payload)
        except (TypeError, ValueError) as exc:
            raise ChannelError(
                f"payload not serialisable: {type(exc).__name__}", transient=False
            ) from None
        if not delivery_id or any(c in delivery_id for c in "\r\n"):
            raise ChannelError("invalid delivery id", transient=False)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
        }
        try:
            response = await self._http().post(
                url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise ChannelError("http timeout", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError):
            raise ChannelError("http invalid url or request", transient=False) from None
        except httpx.TransportError as exc:
            raise ChannelError(f"http {type(exc).__name__}", transient=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status >= 500 or status in _TRANSIENT_HTTP:
            raise ChannelError(
                f"http {status}",
                transient=True,
                status=status,
                retry_after=_retry_after(response),
            )
        raise ChannelError(f"http {status}", transient=False, status=status)


# -------------------------------------------------------------------------------------- masking


def mask_email(addr: str) -> str:
    """``juan.perez@example.com`` → ``j***@e***.com`` (for logs and public views)."""
    address = parseaddr(addr)[1] or addr.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "***"
    host, dot, tld = domain.rpartition(".")
    masked_domain = f"{host[0]}***.{tld}" if dot and host else f"{domain[0]}***"
    return f"{local[0]}***@{masked_domain}"


def mask_phone(phone: str) -> str:
    """``+507 6123-4567`` → ``+507****4567``; only the last four digits (and Panamá's +507)."""
    text = phone.strip()
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) <= 4:
        return "****"
    last = digits[-4:]
    if text.startswith("+") or text.startswith("00"):
        international = digits[2:] if text.startswith("00") else digits
        if international.startswith("507") and len(international) > 7:
            return f"+507****{last}"
        return f"+****{last}"
    return f"****{last}"


def _address(value: str) -> str:
    """``Name <addr>`` with a non-ASCII name encoded; the address itself must be ASCII."""
    name, address = parseaddr(value)
    if not address or not address.isascii():
        raise ValueError("not an address")
    return formataddr((name, address), charset="utf-8")


#: RFC 2047 words in base64: utf-8's default weighs base64 against quoted-printable for each
#: header, which costs three times the encoding itself.
_HEADER_CHARSET = Charset("utf-8")
_HEADER_CHARSET.header_encoding = BASE64


def _text_header(name: str, value: str) -> str:
    if value.isascii():
        return value
    return Header(value, _HEADER_CHARSET, header_name=name).encode()
