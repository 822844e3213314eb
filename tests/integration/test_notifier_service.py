"""The notifier service end to end: real RabbitMQ, PostgreSQL, an aiosmtpd SMTP server started
by the test and a local HTTP receiver that checks every webhook's HMAC signature.

Cases are filed and moved through the lifecycle with the shared case functions, so the events
reach the notifier the way they do in production: outbox → RabbitMQ → the notifier's queue.
Time is a :class:`FixedClock`; backoff is driven by advancing it, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from faststream.rabbit import RabbitQueue
from sqlalchemy import select

from services.notifier.app import service
from services.notifier.channels import verify_signature
from services.notifier.delivery import Deliverer, DeliveryPolicy
from services.notifier.handlers import handlers as notifier_handlers
from services.notifier.models import NotificationRow
from services.notifier.settings import NotifierSettings
from services.notifier.templates import TemplateRenderer
from shared.cases import file_case, get_case, history, perform
from shared.clock import FixedClock
from shared.contract import (
    DeadlineMissed,
    DeadlineNear,
    Event,
    FieldError,
    Submission,
    SubmissionRejected,
)
from shared.db.models import CaseHistoryRow, CaseRow, OutboxRow
from shared.messaging import exchange
from shared.runtime import Deps, Runtime
from tests.support import eventually, free_port, running, settings_for

pytestmark = pytest.mark.connected

SECRET = "secreto-de-prueba-notifier"
START = datetime(2026, 11, 3, 14, 5, tzinfo=UTC)
SUPERVISOR = "supervision@alcaldia.example"
ASEO_SUPERVISOR = "jefe.aseo@alcaldia.example"
CEDULA = "8-123-4567"


# ------------------------------------------------------------------------------------ SMTP


class Mailbox:
    """aiosmtpd handler: keeps every accepted message; refuses ``rechazado@`` for good."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.rcpts: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("rechazado@"):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append(mail)
        self.rcpts.extend(envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


class SmtpServer:
    """An aiosmtpd server that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --------------------------------------------------------------------------------- webhooks


@dataclass
class Hit:
    path: str
    delivery: str
    body: dict[str, Any]
    verified: bool
    status: int


@dataclass
class Receiver:
    """A real HTTP server: verifies the signature, answers 401 to a bad one, and can be told
    to answer 500 to the next ``n`` requests on a path."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ok(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path and 200 <= h.status < 300]


async def _serve(
    state: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        verified = verify_signature(
            SECRET,
            headers.get("x-defensa311-timestamp", ""),
            headers.get("x-defensa311-signature", ""),
            raw,
            now=time.time(),
        )
        if state.fail_next.get(path, 0) > 0:
            state.fail_next[path] -= 1
            status = 500
        else:
            status = 204 if verified else 401
        state.hits.append(
            Hit(path, headers.get("x-defensa311-delivery", ""), json.loads(raw), verified, status)
        )
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    server = await asyncio.start_server(lambda r, w: _serve(state, r, w), "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------------- harness


def write_config(path: Path, hook: Receiver) -> Path:
    path.write_text(
        f"""
[institution]
name = "Alcaldía de Prueba"
public_url = "https://defensa311.example"
supervisor_email = "{SUPERVISOR}"

[[departments]]
code = "aseo"
name = "Dirección de Aseo"
email = "aseo@alcaldia.example"
supervisor_email = "{ASEO_SUPERVISOR}"
webhook_url = "{hook.url("/dept/aseo")}"

[[departments]]
code = "vias"
name = "Dirección de Vías"
email = "vias@alcaldia.example"
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Harness:
    runtime: Runtime
    smtp: SmtpServer
    hook: Receiver
    clock: FixedClock
    notifier: NotifierSettings

    @property
    def deps(self) -> Deps:
        return self.runtime.deps

    async def file(self, **data: Any) -> CaseRow:
        data.setdefault("description", "Hay basura acumulada en la esquina desde hace días.")
        submission = Submission.model_validate(data)
        async with self.deps.uow() as uow:
            case, _ = await file_case(
                uow,
                self.deps.cases,
                submission,
                channel="web",
                actor="prueba",
                now=self.clock.now(),
            )
        return case

    async def act(self, case: CaseRow, action: str, **params: Any) -> None:
        async with self.deps.uow() as uow:
            row = await get_case(uow, case_id=case.id, lock=True)
            await perform(
                uow, self.deps.cases, row, action, params, actor="prueba", now=self.clock.now()
            )

    async def publish(self, event: Event) -> None:
        async with self.deps.uow() as uow:
            uow.publish(event)

    async def rows(self, case: CaseRow | None = None) -> list[NotificationRow]:
        async with self.deps.sessionmaker() as session:
            query = select(NotificationRow).order_by(NotificationRow.id)
            if case is not None:
                query = query.where(NotificationRow.case_id == case.id)
            return list(await session.scalars(query))

    async def history(self, case: CaseRow) -> list[CaseHistoryRow]:
        async with self.deps.uow() as uow:
            return await history(uow, case.id)

    async def settled(self, case: CaseRow, count: int) -> list[NotificationRow]:
        """Wait until ``count`` rows of the case left ``pending``."""

        async def check() -> list[NotificationRow] | None:
            rows = await self.rows(case)
            done = [r for r in rows if r.status != "pending"]
            return rows if len(rows) == count and len(done) == count else None

        result: list[NotificationRow] = await eventually(check)
        return result

    def deliverer(self) -> Deliverer:
        """A second deliverer on the same database (what another notifier instance would do)."""
        return Deliverer(
            self.deps.sessionmaker,
            self.clock,
            TemplateRenderer(),
            _NeverCalled(),
            _NeverCalled(),
            DeliveryPolicy.from_settings(self.notifier, sqlite=self.deps.settings.is_sqlite),
        )


class _NeverCalled:
    async def send(self, **kwargs: Any) -> None:
        raise AssertionError("nothing should be due")


@contextlib.asynccontextmanager
async def harness(
    amqp_url: str, pg_url: str, tmp_path: Path, *, smtp_up: bool = True, **overrides: Any
) -> AsyncIterator[Harness]:
    smtp = SmtpServer()
    if smtp_up:
        smtp.start()
    async with receiver() as hook:
        values: dict[str, Any] = {
            "config": write_config(tmp_path / "institution.toml", hook),
            "smtp_port": smtp.port,
            "webhook_secret": SECRET,
            "sms_webhook_url": hook.url("/sms"),
            "notify_attempts": 4,
            "notify_backoff_seconds": 60.0,
        }
        values.update(overrides)
        # The notifier's own settings apart from the process's (intake's API files the cases).
        notifier = NotifierSettings(
            **{k: v for k, v in values.items() if k in NotifierSettings.model_fields}
        )
        shared = {k: v for k, v in values.items() if k not in NotifierSettings.model_fields}
        clock = FixedClock(START)
        try:
            settings = settings_for(amqp_url, pg_url, **shared)
            async with running(settings, [service(notifier)], clock) as rt:
                yield Harness(rt, smtp, hook, clock, notifier)
        finally:
            smtp.stop()


def citizen(**extra: Any) -> dict[str, Any]:
    return {"full_name": "Ana Ruiz", "id_number": CEDULA, **extra}


# ------------------------------------------------------------------------------------ tests


async def test_each_row_of_the_table(amqp_url: str, pg_url: str, tmp_path: Path) -> None:
    async with harness(amqp_url, pg_url, tmp_path) as h:
        box, hook = h.smtp.mailbox, h.hook

        # CaseReceived, citizen with an e-mail: the receipt by e-mail
        by_mail = await h.file(kind="queja", citizen=citizen(), notify={"email": "ana@example.com"})
        (row,) = await h.settled(by_mail, 1)
        assert (row.channel, row.status, row.template) == ("email", "sent", "case_received")
        assert row.recipient_masked == "a***@e***.com"
        (mail,) = box.to("ana@example.com")
        assert by_mail.tracking_code in mail["Subject"]
        assert mail["Message-ID"] == f"<defensa311.notification-{row.id}@alcaldia.example>"
        text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "Estimado(a) Ana Ruiz" in text
        assert f"https://defensa311.example/seguimiento/{by_mail.tracking_code}" in text
        assert "Fecha límite de respuesta" in text
        actions = [(r.action, (r.details or {}).get("recipient")) for r in await h.history(by_mail)]
        assert ("notification_queued", "a***@e***.com") in actions
        assert ("notification_sent", "a***@e***.com") in actions

        # only a phone: an SMS through the gateway webhook, signed
        by_phone = await h.file(kind="queja", citizen=citizen(), notify={"phone": "6123-4567"})
        (row,) = await h.settled(by_phone, 1)
        assert (row.channel, row.status, row.recipient_masked) == ("sms", "sent", "+507****4567")
        (sms,) = hook.ok("/sms")
        assert sms.verified and sms.delivery == f"notification-{row.id}"
        assert sms.body["to"] == "+50761234567"
        assert by_phone.tracking_code in sms.body["text"] and len(sms.body["text"]) <= 300

        # only a postal address: a task for staff, nothing sent
        by_post = await h.file(
            kind="queja", citizen=citizen(), notify={"address": "Calle 50, casa 12, Bella Vista"}
        )
        (row,) = await h.settled(by_post, 1)
        assert (row.channel, row.status) == ("in_person", "task")
        assert row.context["address"] == "Calle 50, casa 12, Bella Vista"
        assert "Calle 50" not in row.recipient_masked

        # anonymous sugerencia without any address: noted in the history, never silently
        anonymous = await h.file(
            kind="sugerencia",
            anonymous=True,
            description="Sugiero poner más bancas en el parque central.",
        )
        notes = await eventually(lambda: _actions(h, anonymous, "notification_skipped"), timeout=15)
        assert notes[0].details == {
            "event_type": "CaseReceived",
            "reason": "no notification address",
        }
        assert await h.rows(anonymous) == []

        # CaseRemittedToDepartment: the department's e-mail and its webhook
        remitted = await h.file(
            kind="denuncia", citizen=citizen(), notify={"email": "ana@example.com"}
        )
        await h.settled(remitted, 1)
        await h.act(remitted, "classify", kind="denuncia", category="Basura en vía pública")
        await h.act(remitted, "remit", department="aseo")
        rows = await h.settled(remitted, 3)
        dept = [r for r in rows if r.template == "case_remitted"]
        assert {(r.channel, r.recipient) for r in dept} == {
            ("email", "aseo@alcaldia.example"),
            ("webhook", hook.url("/dept/aseo")),
        }
        assert all(r.status == "sent" for r in dept)
        (remit_mail,) = box.to("aseo@alcaldia.example")
        remit_text = remit_mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "Dirección de Aseo" in remit_text and "case.responded.aseo" in remit_text
        (dept_hook,) = hook.ok("/dept/aseo")
        assert dept_hook.verified
        assert dept_hook.body["event"]["event_type"] == "CaseRemittedToDepartment"
        assert dept_hook.body["event"]["tracking_code"] == remitted.tracking_code

        # DeadlineNear, department clock: the department only
        await h.publish(
            DeadlineNear(
                case_id=uuid.UUID(remitted.id),
                tracking_code=remitted.tracking_code,
                clock="department",
                department="aseo",
                due_at=START + timedelta(days=40),
                days_before=3,
            )
        )
        rows = await h.settled(remitted, 5)
        near = {r.recipient for r in rows if r.template == "deadline_near"}
        assert near == {"aseo@alcaldia.example", hook.url("/dept/aseo")}

        # DeadlineNear, legal clock: the supervisors and the department holding the case
        await h.publish(
            DeadlineNear(
                case_id=uuid.UUID(remitted.id),
                tracking_code=remitted.tracking_code,
                clock="legal",
                due_at=START + timedelta(days=42),
                days_before=1,
            )
        )
        rows = await h.settled(remitted, 9)
        legal = [r for r in rows if r.template == "deadline_near"][2:]
        assert {r.recipient for r in legal} == {
            SUPERVISOR,
            ASEO_SUPERVISOR,
            "aseo@alcaldia.example",
            hook.url("/dept/aseo"),
        }
        near_text = box.to(SUPERVISOR)[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "plazo legal de resolución" in near_text and "1 día hábil" in near_text

        # DeadlineMissed: supervisors and department (escalation)
        await h.publish(
            DeadlineMissed(
                case_id=uuid.UUID(remitted.id),
                tracking_code=remitted.tracking_code,
                clock="department",
                department="aseo",
                due_at=START + timedelta(days=40),
            )
        )
        rows = await h.settled(remitted, 13)
        missed = {r.recipient for r in rows if r.template == "deadline_missed"}
        assert missed == {
            SUPERVISOR,
            ASEO_SUPERVISOR,
            "aseo@alcaldia.example",
            hook.url("/dept/aseo"),
        }
        assert "vencido" in box.to(ASEO_SUPERVISOR)[-1]["Subject"].lower()

        # CaseResolved: the citizen gets the resolution
        await h.act(remitted, "respond", response="Se retiró la basura el 10 de noviembre.")
        rows = await h.settled(remitted, 14)
        (resolved,) = [r for r in rows if r.template == "case_resolved"]
        assert (resolved.recipient, resolved.status) == ("ana@example.com", "sent")
        last = box.to("ana@example.com")[-1]
        body = last.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "Se retiró la basura el 10 de noviembre." in body
        assert "Dirección de Aseo" in body

        # SubmissionRejected: nobody is notified
        handlers = notifier_handlers(h.deps, h.notifier, asyncio.Event())
        rejected = SubmissionRejected(
            external_ref="311-999", reasons=[FieldError(field="x", rule="y", message="z")]
        )
        assert handlers.handler_of(rejected) is None

        # a redelivered event has no second effect
        outbox = await _outbox(h, "CaseReceived", by_mail.id)
        await h.deps.broker.publish(
            outbox.body.encode(),
            exchange=exchange(),
            routing_key="case.received",
            message_id=outbox.event_id,
            persist=True,
        )
        marker = await h.file(kind="queja", citizen=citizen(), notify={"email": "otro@example.com"})
        await h.settled(marker, 1)  # the queue is consumed in order: the duplicate went first
        assert len(await h.rows(by_mail)) == 1
        receipts = [m for m in box.messages if by_mail.tracking_code in m["Subject"]]
        assert len(receipts) == 1
        assert len(box.to("otro@example.com")) == 1

        # every e-mail carries its own Message-ID, and nothing was sent twice
        ids = [m["Message-ID"] for m in box.messages]
        assert len(ids) == len(set(ids)) == len([r for r in await h.rows() if r.channel == "email"])
        assert all(hit.verified for hit in hook.hits)
        assert await h.deliverer().deliver_due() == 0


async def _actions(h: Harness, case: CaseRow, action: str) -> list[CaseHistoryRow]:
    return [r for r in await h.history(case) if r.action == action]


async def _outbox(h: Harness, event_type: str, case_id: str) -> OutboxRow:
    async with h.deps.sessionmaker() as session:
        rows = await session.scalars(select(OutboxRow).where(OutboxRow.event_type == event_type))
        for row in rows:
            if json.loads(row.body)["case_id"] == case_id:
                return row
    raise AssertionError("no such outbox row")


async def test_smtp_outage_ends_with_every_message_delivered_exactly_once(
    amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    async with harness(amqp_url, pg_url, tmp_path, notify_attempts=10) as h:
        box = h.smtp.mailbox
        first = await h.file(kind="queja", citizen=citizen(), notify={"email": "c0@example.com"})
        await h.settled(first, 1)
        assert len(box.messages) == 1

        h.smtp.stop()  # the outage, in the middle of the run
        during = [
            await h.file(kind="queja", citizen=citizen(), notify={"email": f"c{i}@example.com"})
            for i in range(1, 7)
        ]

        async def all_tried_and_waiting() -> bool:
            rows = [r for c in during for r in await h.rows(c)]
            return len(rows) == 6 and all(
                r.status == "pending"
                and r.attempts >= 1
                and r.last_error == "smtp connection failed"
                for r in rows
            )

        await eventually(all_tried_and_waiting)
        # the webhook channel keeps working while e-mail is down
        by_phone = await h.file(kind="queja", citizen=citizen(), notify={"phone": "6555-0101"})
        (sms,) = await h.settled(by_phone, 1)
        assert sms.status == "sent"

        h.smtp.start()  # the server comes back on the same port
        h.clock.advance(timedelta(minutes=5))  # past the backoff
        rows = [r for c in during for r in await h.settled(c, 1)]
        assert all(r.status == "sent" for r in rows)
        assert sorted(box.rcpts) == sorted(f"c{i}@example.com" for i in range(7))
        ids = [m["Message-ID"] for m in box.messages]
        assert len(ids) == len(set(ids)) == 7
        assert {f"<defensa311.notification-{r.id}@alcaldia.example>" for r in rows} <= set(ids)
        # nothing is left to send, even much later
        h.clock.advance(timedelta(days=1))
        assert await h.deliverer().deliver_due() == 0
        assert len(box.messages) == 7


async def test_webhook_5xx_is_retried_with_backoff(
    amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    async with harness(amqp_url, pg_url, tmp_path) as h:
        path = "/dept/aseo"
        h.hook.fail_next[path] = 2
        case = await h.file(kind="denuncia", citizen=citizen(), notify={"email": "ana@example.com"})
        await h.act(case, "classify", kind="denuncia", category="Basura")
        await h.act(case, "remit", department="aseo")

        async def webhook_row() -> NotificationRow | None:
            rows = [r for r in await h.rows(case) if r.channel == "webhook"]
            return rows[0] if rows and rows[0].attempts == 1 else None

        row = await eventually(webhook_row)
        assert (row.status, row.last_error) == ("pending", "http 500")
        assert row.next_attempt_at == START + timedelta(seconds=60)
        h.clock.advance(timedelta(seconds=60))

        async def second_try() -> NotificationRow | None:
            rows = [r for r in await h.rows(case) if r.channel == "webhook"]
            return rows[0] if rows[0].attempts == 2 else None

        row = await eventually(second_try)
        assert row.status == "pending"
        assert row.next_attempt_at == START + timedelta(seconds=60 + 120)  # exponential
        h.clock.advance(timedelta(seconds=120))
        rows = await h.settled(case, 3)
        (row,) = [r for r in rows if r.channel == "webhook"]
        assert (row.status, row.attempts) == ("sent", 3)
        hits = [hit for hit in h.hook.hits if hit.path == path]
        assert [hit.status for hit in hits] == [500, 500, 204]
        assert {hit.delivery for hit in hits} == {f"notification-{row.id}"}
        assert all(hit.verified for hit in hits)


async def test_attempts_exhausted_fail_loudly(amqp_url: str, pg_url: str, tmp_path: Path) -> None:
    async with harness(amqp_url, pg_url, tmp_path, smtp_up=False, notify_attempts=2) as h:
        # a queue of the test's own follows NotificationFailed on the wire
        failures = await h.deps.broker.declare_queue(
            RabbitQueue(f"test.failed.{uuid.uuid4().hex[:6]}", auto_delete=True)
        )
        await failures.bind(
            await h.deps.broker.declare_exchange(exchange()), "case.notification_failed"
        )

        case = await h.file(kind="queja", citizen=citizen(), notify={"email": "ana@example.com"})
        row = (await eventually(lambda: _tried(h, case, 1)))[0]
        assert row.status == "pending"
        h.clock.advance(timedelta(seconds=60))
        (row,) = await h.settled(case, 1)
        assert (row.status, row.attempts, row.last_error) == ("failed", 2, "smtp connection failed")
        assert row.next_attempt_at is None

        (note,) = await _actions(h, case, "notification_failed")
        assert note.details is not None
        assert note.details["reason"] == "smtp connection failed"
        assert note.details["recipient"] == "a***@e***.com"
        assert "ana@example.com" not in json.dumps(note.details)

        message = await eventually(lambda: failures.get(no_ack=True, fail=False), timeout=15)
        body = json.loads(message.body)
        assert body["event_type"] == "NotificationFailed"
        assert body["tracking_code"] == case.tracking_code
        assert body["notification_id"] == str(row.id)
        assert body["reason"] == "smtp connection failed"

        # a permanent refusal fails at once, without waiting for the attempts
        h.smtp.start()
        refused = await h.file(
            kind="queja", citizen=citizen(), notify={"email": "rechazado@example.com"}
        )
        (row,) = await h.settled(refused, 1)
        assert (row.status, row.attempts, row.last_error) == (
            "failed",
            1,
            "smtp recipient refused (550)",
        )
        assert h.smtp.mailbox.messages == []


async def _tried(h: Harness, case: CaseRow, attempts: int) -> list[NotificationRow] | None:
    rows = await h.rows(case)
    return rows if rows and all(r.attempts >= attempts for r in rows) else None
