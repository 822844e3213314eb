"""The deliverer's groups on an in-memory SQLite database, with scripted senders: each row of a
group ends as its own try went, the history notes them in the rows' order, and a crash in the
middle of a group leaves every row of it to be sent again."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from jinja2 import TemplateError
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.channels import ChannelError
from services.notifier.delivery import Deliverer, DeliveryPolicy
from services.notifier.handlers import store
from services.notifier.models import NotificationRow
from services.notifier.planning import Plan, Planned
from services.notifier.templates import RenderedMessage
from shared.cases import file_case, history
from shared.clock import FixedClock
from shared.db.models import CaseRow, OutboxRow
from shared.uow import UnitOfWork
from tests.factories import NOW, case_received, services, submission

BROKEN_TEMPLATE = "plantilla_rota"


class Renderer:
    def render(self, template: str, context: Any) -> RenderedMessage:
        if template == BROKEN_TEMPLATE:
            raise TemplateError("rota")
        return RenderedMessage(subject="Asunto", text="Texto", html="<p>Texto</p>")


class Crash(BaseException):
    """The process dying in the middle of a send (nothing in the deliverer catches it)."""


class Email:
    """Answers each recipient as scripted: an exception to raise, or ``slow`` (answers after
    the others of its group)."""

    def __init__(
        self, script: dict[str, BaseException] | None = None, *, slow: str | None = None
    ) -> None:
        self.script = script or {}
        self.slow = slow
        self.sent: list[str] = []

    async def send(self, *, to: str, message: RenderedMessage, message_id: str) -> None:
        await asyncio.sleep(0.05 if to == self.slow else 0)
        failure = self.script.get(to)
        if failure is not None:
            raise failure
        self.sent.append(message_id)


def deliverer(
    sessionmaker: async_sessionmaker[AsyncSession], email: Email, *, concurrency: int
) -> Deliverer:
    return Deliverer(
        sessionmaker,
        FixedClock(NOW),
        Renderer(),  # type: ignore[arg-type]
        email,
        email,  # type: ignore[arg-type]
        DeliveryPolicy(attempts=3, backoff_seconds=60.0, concurrency=concurrency, lanes=False),
    )


async def queued(
    sessionmaker: async_sessionmaker[AsyncSession], recipients: list[str], template: str = "x"
) -> CaseRow:
    """A filed case with an e-mail queued to each recipient, as the notifier's consumer
    stores them (with their ``notification_queued`` notes)."""
    async with UnitOfWork(sessionmaker) as uow:
        case, _ = await file_case(
            uow, services(), submission(), channel="web", actor="ciudadano", now=NOW
        )
    planned = [
        Planned(
            BROKEN_TEMPLATE if to.startswith("rota") else template,
            "email",
            to,
            f"{to[0]}***@e***.com",
            "pending",
            {},
        )
        for to in recipients
    ]
    event = case_received(case_id=uuid.UUID(case.id), tracking_code=case.tracking_code)
    async with UnitOfWork(sessionmaker) as uow:
        await store(uow, event, case, Plan(notifications=planned), now=NOW)
    return case


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[NotificationRow]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(NotificationRow).order_by(NotificationRow.id)))


async def test_each_row_of_a_group_ends_as_its_own_try_went(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    recipients = [
        "c1@example.com",  # sent
        "c2@example.com",  # SMTP busy: retried, later than the backoff asks
        "c3@example.com",  # mailbox unknown: failed at once
        "rota@example.com",  # the template cannot be rendered: failed at once
        "c5@example.com",  # something unforeseen: counted as a try, retried
    ]
    case = await queued(sessionmaker, recipients)
    email = Email(
        {
            "c2@example.com": ChannelError("http 503", transient=True, retry_after=600),
            "c3@example.com": ChannelError("smtp recipient refused (550)", transient=False),
            "c5@example.com": RuntimeError("sorpresa"),
        },
        slow="c1@example.com",  # the notes follow the rows, not the order the tries ended
    )
    commits: list[object] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    engine = sessionmaker.kw["bind"].sync_engine
    event.listen(engine, "commit", committed)
    try:
        tried = await deliverer(sessionmaker, email, concurrency=8).deliver_due()
    finally:
        event.remove(engine, "commit", committed)

    assert tried == 5
    assert len(commits) == 1  # the whole group in one transaction
    one, two, three, four, five = await rows(sessionmaker)
    assert email.sent == [f"notification-{one.id}"]
    assert (one.status, one.attempts, one.sent_at, one.last_error) == ("sent", 1, NOW, None)
    assert (two.status, two.attempts, two.last_error) == ("pending", 1, "http 503")
    assert two.next_attempt_at == NOW + timedelta(seconds=600)  # Retry-After over the backoff
    assert (three.status, three.attempts, three.next_attempt_at) == ("failed", 1, None)
    assert three.last_error == "smtp recipient refused (550)"
    assert (four.status, four.last_error) == ("failed", "cannot build the message: TemplateError")
    assert (five.status, five.last_error) == ("pending", "unexpected error: RuntimeError")
    assert five.next_attempt_at == NOW + timedelta(seconds=60)

    async with UnitOfWork(sessionmaker) as uow:
        notes = [r for r in await history(uow, case.id) if r.actor == "notifier"]
        failed = list(await uow.session.scalars(select(OutboxRow).order_by(OutboxRow.id)))
    # queued first (the consumer's), then a note per row that settled, in the rows' order
    assert [(n.action, (n.details or {})["notification_id"]) for n in notes] == [
        *[("notification_queued", row.id) for row in (one, two, three, four, five)],
        ("notification_sent", one.id),
        ("notification_failed", three.id),
        ("notification_failed", four.id),
    ]
    assert all(n.from_state == n.to_state == "received" for n in notes)
    assert notes[-2].details == {
        "notification_id": three.id,
        "event_type": "CaseReceived",
        "template": "x",
        "channel": "email",
        "recipient": "c***@e***.com",
        "attempts": 1,
        "reason": "smtp recipient refused (550)",
    }
    dead_letters = [json.loads(r.body) for r in failed if r.event_type == "NotificationFailed"]
    assert [(d["notification_id"], d["reason"]) for d in dead_letters] == [
        (str(three.id), "smtp recipient refused (550)"),
        (str(four.id), "cannot build the message: TemplateError"),
    ]


async def test_a_crash_in_the_middle_of_a_group_leaves_every_row_of_it_to_send_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    case = await queued(sessionmaker, ["c1@example.com", "c2@example.com", "c3@example.com"])
    email = Email({"c3@example.com": Crash()})
    with pytest.raises(Crash):
        await deliverer(sessionmaker, email, concurrency=3).deliver_due()
    assert len(email.sent) == 2  # two went out, then the process died
    assert [(r.status, r.attempts) for r in await rows(sessionmaker)] == [("pending", 0)] * 3

    again = Email()
    assert await deliverer(sessionmaker, again, concurrency=3).deliver_due() == 3
    assert set(email.sent) < set(again.sent)  # the same Message-IDs: the receiver can tell
    assert [r.status for r in await rows(sessionmaker)] == ["sent"] * 3
    async with UnitOfWork(sessionmaker) as uow:
        sent = [r for r in await history(uow, case.id) if r.action == "notification_sent"]
    assert len(sent) == 3


async def test_deliver_tries_one_row_and_says_what_became_of_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await queued(sessionmaker, ["c1@example.com", "c2@example.com"])
    first, second = await rows(sessionmaker)
    email = Email()
    notifier = deliverer(sessionmaker, email, concurrency=8)
    assert await notifier.deliver(second.id) == "sent"
    assert await notifier.deliver(second.id) is None  # not pending any more
    assert email.sent == [f"notification-{second.id}"]
    assert [r.status for r in await rows(sessionmaker)] == ["pending", "sent"]
    assert await notifier.deliver_due() == 1
    assert email.sent[-1] == f"notification-{first.id}"


async def test_a_round_tries_each_due_row_once_even_without_backoff(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await queued(sessionmaker, [f"c{i}@example.com" for i in range(2, 7)])
    down = ChannelError("smtp connection failed", transient=True)
    email = Email({f"c{i}@example.com": down for i in range(2, 7)})
    notifier = Deliverer(
        sessionmaker,
        FixedClock(NOW),
        Renderer(),  # type: ignore[arg-type]
        email,
        email,  # type: ignore[arg-type]
        DeliveryPolicy(attempts=5, backoff_seconds=0.0, concurrency=2, lanes=False),
    )
    assert await notifier.deliver_due() == 5  # groups of 2, 2 and 1
    assert [(r.status, r.attempts) for r in await rows(sessionmaker)] == [("pending", 1)] * 5
