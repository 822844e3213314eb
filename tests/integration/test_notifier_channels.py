"""The notifier's channels against real local servers: aiosmtpd for SMTP, a raw asyncio HTTP server
for webhooks (which checks the signature with ``verify_signature`` as a receiver would)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from services.notifier.channels import (
    ChannelError,
    EmailChannel,
    SmtpSettings,
    WebhookChannel,
    mask_email,
    mask_phone,
    message_id_header,
    sign,
    verify_signature,
)
from services.notifier.templates import RenderedMessage
from tests.support import eventually, free_port

SECRET = "s3cr3t-de-prueba"
MESSAGE = RenderedMessage(
    subject="Alcaldía de Panamá – Constancia de recibo de su denuncia D311-2026-000123",
    text="Código de seguimiento: D311-2026-000123\nFecha límite: martes 15 de diciembre de 2026\n",
    html="<p>Código de seguimiento: <strong>D311-2026-000123</strong></p>\n",
)


# ------------------------------------------------------------------------------------------ SMTP


class CollectingHandler:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.peers: list[Any] = []  # the client (host, port) of each accepted message
        self.noop_reply = "250 OK"
        self.quit_delay = 0.0
        self.open_connections = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("rechazado@"):
            return "550 5.1.1 Mailbox unavailable"
        if address.startswith("ocupado@"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        return self.noop_reply

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.quit_delay)
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


class CountingSMTP(SMTP):
    """aiosmtpd's server, counting the connections open (on its handler)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.event_handler.open_connections += 1

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.open_connections -= 1
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def smtp_server() -> Iterator[tuple[CollectingHandler, int]]:
    handler = CollectingHandler()
    port = free_port()
    controller = CountingController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def parse(envelope: Any) -> EmailMessage:
    parsed = message_from_bytes(envelope.content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_email_is_delivered_with_both_parts_and_headers(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    settings = SmtpSettings(port=port, timeout=5)
    async with EmailChannel(settings) as channel:
        await channel.send(to="Ana Ruiz <ana@example.com>", message=MESSAGE, message_id="notif-42")
        # a resend of the same notification carries the same Message-ID
        await channel.send(to="ana@example.com", message=MESSAGE, message_id="notif-42")

    assert len(handler.envelopes) == 2
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "no-responder@alcaldia.example"
    assert envelope.rcpt_tos == ["ana@example.com"]
    mail = parse(envelope)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Subject"] == MESSAGE.subject
    assert mail["To"] == "Ana Ruiz <ana@example.com>"
    assert "no-responder@alcaldia.example" in mail["From"]
    assert mail["Message-ID"] == "<defensa311.notif-42@alcaldia.example>"
    assert mail["Message-ID"] == message_id_header("notif-42", settings.sender)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"]
    plain = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "D311-2026-000123" in plain.get_content()
    assert "martes 15 de diciembre de 2026" in plain.get_content()
    assert "<strong>D311-2026-000123</strong>" in html.get_content()

    assert parse(handler.envelopes[1])["Message-ID"] == mail["Message-ID"]
    # an id with unusual characters still yields a stable, valid Message-ID
    odd = message_id_header("evt 1/ñ", settings.sender)
    assert odd == message_id_header("evt 1/ñ", settings.sender)
    assert odd.startswith("<defensa311.") and " " not in odd


async def send_all(channel: EmailChannel, count: int) -> None:
    for i in range(count):
        await channel.send(to="ana@example.com", message=MESSAGE, message_id=f"n-{i}")


async def test_one_connection_carries_the_next_messages_until_a_limit(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    async with EmailChannel(SmtpSettings(port=port, timeout=5)) as channel:
        await send_all(channel, 3)
    assert len(handler.envelopes) == 3
    assert len(set(handler.peers)) == 1

    handler.peers.clear()
    async with EmailChannel(
        SmtpSettings(port=port, timeout=5, messages_per_connection=2)
    ) as channel:
        await send_all(channel, 5)
    assert [handler.peers.count(peer) for peer in dict.fromkeys(handler.peers)] == [2, 2, 1]

    handler.peers.clear()
    async with EmailChannel(SmtpSettings(port=port, timeout=5, reuse_seconds=0)) as channel:
        await send_all(channel, 3)
        assert channel._idle == []  # each one said QUIT after its message
    assert len(set(handler.peers)) == 3


async def test_a_connection_idle_too_long_is_not_reused(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    now = [1000.0]
    settings = SmtpSettings(port=port, timeout=5, reuse_seconds=20)
    async with EmailChannel(settings, monotonic=lambda: now[0]) as channel:
        await send_all(channel, 1)
        now[0] += 19
        await send_all(channel, 1)
        now[0] += 20
        await send_all(channel, 1)
    first, second, third = handler.peers
    assert first == second != third


async def test_a_connection_the_server_closed_is_replaced_without_failing() -> None:
    handler = CollectingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    async with EmailChannel(SmtpSettings(port=port, timeout=5)) as channel:
        try:
            await send_all(channel, 1)
            controller.stop()  # closes the kept connection
            controller = Controller(handler, hostname="127.0.0.1", port=port)
            controller.start()
            await send_all(channel, 1)
        finally:
            controller.stop()
    assert len(handler.envelopes) == 2
    assert len(set(handler.peers)) == 2


async def test_a_kept_connection_that_fails_noop_is_replaced(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    async with EmailChannel(SmtpSettings(port=port, timeout=5)) as channel:
        await send_all(channel, 1)
        handler.noop_reply = "421 4.3.2 Service shutting down"
        await send_all(channel, 1)
    assert len(handler.envelopes) == 2
    assert len(set(handler.peers)) == 2


async def test_after_a_refused_message_the_next_one_goes(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    async with EmailChannel(SmtpSettings(port=port, timeout=5)) as channel:
        await send_all(channel, 1)
        with pytest.raises(ChannelError):
            await channel.send(to="rechazado@example.com", message=MESSAGE, message_id="n-x")
        # the connection that saw the error is closed, not left open nor kept
        await eventually(lambda: handler.open_connections == 0, timeout=5)
        assert channel._idle == []
        await send_all(channel, 1)
    assert [e.rcpt_tos for e in handler.envelopes] == [["ana@example.com"]] * 2


async def test_closing_the_channel_quits_its_connections(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    _, port = smtp_server
    channel = EmailChannel(SmtpSettings(port=port, timeout=5))
    await send_all(channel, 2)
    kept = list(channel._idle)
    assert len(kept) == 1 and kept[0].client.is_connected
    await channel.aclose()
    assert not kept[0].client.is_connected
    assert channel._idle == []


async def test_closing_does_not_wait_long_for_a_server_slow_to_answer_quit(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    channel = EmailChannel(SmtpSettings(port=port, timeout=30))
    # two connections in use at once, both kept
    await asyncio.gather(send_all(channel, 1), send_all(channel, 1))
    assert len(channel._idle) == 2
    handler.quit_delay = 20
    async with asyncio.timeout(10):  # not 2 × 20 s, nor 2 × the 30 s timeout
        await channel.aclose()
    assert channel._idle == []


async def test_smtp_down_is_transient() -> None:
    channel = EmailChannel(SmtpSettings(port=free_port(), timeout=2))
    with pytest.raises(ChannelError) as info:
        await channel.send(to="ana@example.com", message=MESSAGE, message_id="n-1")
    assert info.value.transient is True
    assert "ana@example.com" not in info.value.reason


async def test_recipient_refused_with_550_is_permanent(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    channel = EmailChannel(SmtpSettings(port=port, timeout=5))
    with pytest.raises(ChannelError) as info:
        await channel.send(to="rechazado@example.com", message=MESSAGE, message_id="n-2")
    assert info.value.transient is False
    assert info.value.status == 550
    assert "rechazado" not in info.value.reason  # no personal data in the reason
    assert handler.envelopes == []


async def test_recipient_refused_with_450_is_transient(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    _, port = smtp_server
    channel = EmailChannel(SmtpSettings(port=port, timeout=5))
    with pytest.raises(ChannelError) as info:
        await channel.send(to="ocupado@example.com", message=MESSAGE, message_id="n-3")
    assert info.value.transient is True
    assert info.value.status == 450


async def test_header_injection_is_refused_without_sending(
    smtp_server: tuple[CollectingHandler, int],
) -> None:
    handler, port = smtp_server
    channel = EmailChannel(SmtpSettings(port=port, timeout=5))
    with pytest.raises(ChannelError) as info:
        await channel.send(
            to="ana@example.com\r\nBcc: otro@example.com", message=MESSAGE, message_id="n-4"
        )
    assert info.value.transient is False
    bad_subject = RenderedMessage(subject="Hola\r\nBcc: x@example.com", text="t", html="<p>h</p>")
    with pytest.raises(ChannelError):
        await channel.send(to="ana@example.com", message=bad_subject, message_id="n-5")
    assert handler.envelopes == []


# --------------------------------------------------------------------------------------- webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class WebhookReceiver:
    port: int
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen_deliveries: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return path, headers, body


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    state = WebhookReceiver(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            path, headers, body = await _read_request(reader)
            verified = verify_signature(
                SECRET,
                headers.get("x-defensa311-timestamp", ""),
                headers.get("x-defensa311-signature", ""),
                body,
                now=time.time(),
            )
            state.received.append(Received(path, headers, body, verified))
            delivery = headers.get("x-defensa311-delivery", "")
            if path == "/slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.release.wait(), timeout=10)
                status = 200
            elif path == "/500":
                status = 500
            elif path == "/429":
                status = 429
            elif path == "/400":
                status = 400
            elif not verified:
                status = 401
            elif delivery in state.seen_deliveries:
                status = 200  # already processed: acknowledge, do nothing
            else:
                state.seen_deliveries.add(delivery)
                status = 204
            reply = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n"
            if status == 429:
                reply += "Retry-After: 7\r\n"
            writer.write((reply + "\r\n").encode("ascii"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        state.release.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    async with WebhookChannel(secret=SECRET, timeout=2.0) as webhook:
        yield webhook


PAYLOAD: dict[str, Any] = {
    "event_type": "CaseReceived",
    "tracking_code": "D311-2026-000123",
    "occurred_at": "2026-11-03T09:05:00-05:00",
    "note": "Queja sobre recolección – ñandú",
}


async def test_webhook_delivers_signed_json(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    await channel.send(url=receiver.url("/hook"), payload=PAYLOAD, delivery_id="dlv-1")
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.verified is True
    assert json.loads(got.body) == PAYLOAD
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["x-defensa311-delivery"] == "dlv-1"
    timestamp = got.headers["x-defensa311-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    assert got.headers["x-defensa311-signature"] == sign(SECRET, int(timestamp), got.body)
    assert got.headers["x-defensa311-signature"].startswith("sha256=")
    # a retry of the same delivery carries the same delivery id (the receiver dedupes it)
    await channel.send(url=receiver.url("/hook"), payload=PAYLOAD, delivery_id="dlv-1")
    assert receiver.received[1].headers["x-defensa311-delivery"] == "dlv-1"


async def test_webhook_500_is_transient(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    with pytest.raises(ChannelError) as info:
        await channel.send(url=receiver.url("/500"), payload=PAYLOAD, delivery_id="dlv-2")
    assert info.value.transient is True
    assert info.value.status == 500
    assert receiver.received[0].verified is True


async def test_webhook_429_is_transient_with_retry_after(
    receiver: WebhookReceiver, channel: WebhookChannel
) -> None:
    with pytest.raises(ChannelError) as info:
        await channel.send(url=receiver.url("/429"), payload=PAYLOAD, delivery_id="dlv-3")
    assert info.value.transient is True
    assert info.value.retry_after == 7


async def test_webhook_400_is_permanent(receiver: WebhookReceiver, channel: WebhookChannel) -> None:
    with pytest.raises(ChannelError) as info:
        await channel.send(url=receiver.url("/400"), payload=PAYLOAD, delivery_id="dlv-4")
    assert info.value.transient is False
    assert info.value.status == 400


async def test_webhook_timeout_is_transient(receiver: WebhookReceiver) -> None:
    async with WebhookChannel(secret=SECRET, timeout=0.3) as webhook:
        started = time.monotonic()
        with pytest.raises(ChannelError) as info:
            await webhook.send(url=receiver.url("/slow"), payload=PAYLOAD, delivery_id="dlv-5")
    assert info.value.transient is True
    assert info.value.reason == "http timeout"
    assert time.monotonic() - started < 5


async def test_webhook_nothing_listening_is_transient() -> None:
    async with WebhookChannel(secret=SECRET, timeout=2.0) as webhook:
        with pytest.raises(ChannelError) as info:
            await webhook.send(
                url=f"http://127.0.0.1:{free_port()}/hook", payload=PAYLOAD, delivery_id="d"
            )
    assert info.value.transient is True


async def test_webhook_old_timestamp_is_refused_by_the_receiver(
    receiver: WebhookReceiver,
) -> None:
    # a sender whose clock says one hour ago: what a captured-and-replayed request looks like
    async with WebhookChannel(secret=SECRET, clock=lambda: time.time() - 3600) as stale:
        with pytest.raises(ChannelError) as info:
            await stale.send(url=receiver.url("/hook"), payload=PAYLOAD, delivery_id="dlv-6")
    assert info.value.status == 401 and info.value.transient is False
    assert receiver.received[0].verified is False
    # the wrong secret is refused too
    async with WebhookChannel(secret="otro-secreto") as forged:
        with pytest.raises(ChannelError):
            await forged.send(url=receiver.url("/hook"), payload=PAYLOAD, delivery_id="dlv-7")
    assert receiver.received[1].verified is False


async def test_webhook_uses_an_injected_client(receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient() as client:
        webhook = WebhookChannel(secret=SECRET, client=client)
        await webhook.send(url=receiver.url("/hook"), payload=PAYLOAD, delivery_id="dlv-8")
        await webhook.aclose()  # does not close a client it does not own
        assert not client.is_closed
    assert receiver.received[0].verified is True


async def test_webhook_bad_url_or_payload_is_permanent(channel: WebhookChannel) -> None:
    with pytest.raises(ChannelError) as info:
        await channel.send(url="ftp://example.com/x", payload=PAYLOAD, delivery_id="d")
    assert info.value.transient is False
    with pytest.raises(ChannelError) as info:
        await channel.send(url="http://127.0.0.1:1/x", payload={"x": object()}, delivery_id="d")
    assert info.value.transient is False


# ------------------------------------------------------------------------- signatures, masking


def test_verify_signature_rules() -> None:
    body = b'{"a":1}'
    now = 1_800_000_000.0
    good = sign(SECRET, int(now), body)
    assert verify_signature(SECRET, str(int(now)), good, body, now=now)
    assert verify_signature(SECRET, str(int(now)), good, body, now=now + 299)
    # replayed later than the tolerance, or from the future
    assert not verify_signature(SECRET, str(int(now)), good, body, now=now + 301)
    assert not verify_signature(
        SECRET, str(int(now) + 600), sign(SECRET, int(now) + 600, body), body, now=now
    )
    # tampered body, timestamp moved, wrong secret, malformed headers
    assert not verify_signature(SECRET, str(int(now)), good, b'{"a":2}', now=now)
    assert not verify_signature(SECRET, str(int(now) - 1), good, body, now=now)
    assert not verify_signature("otro", str(int(now)), good, body, now=now)
    assert not verify_signature(SECRET, "abc", good, body, now=now)
    assert not verify_signature(SECRET, "", good, body, now=now)
    assert not verify_signature(SECRET, str(int(now)), good[len("sha256=") :], body, now=now)
    assert not verify_signature(SECRET, str(int(now)), "sha256=ñ", body, now=now)
    assert verify_signature(SECRET, str(int(now)), good, body, now=now, tolerance_s=0)


def test_masking() -> None:
    assert mask_email("juan.perez@example.com") == "j***@e***.com"
    assert mask_email("Ana Ruiz <ana@correo.gob.pa>") == "a***@c***.pa"
    assert mask_email("no-es-correo") == "***"
    assert mask_phone("+507 6123-4567") == "+507****4567"
    assert mask_phone("+50761234567") == "+507****4567"
    assert mask_phone("6123-4567") == "****4567"
    assert mask_phone("+1 202 555 0123") == "+****0123"
    assert mask_phone("123") == "****"
