"""The deliverer's groups on PostgreSQL: two deliverers at once (two notifier instances) split
the due rows and never send one twice, and a group of e-mails costs a handful of statements,
not a transaction each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notifier.delivery import CONCURRENCY, Deliverer, DeliveryPolicy
from services.notifier.models import NotificationRow
from services.notifier.templates import RenderedMessage
from shared.cases import history
from shared.clock import FixedClock
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import CaseRow
from shared.uow import UnitOfWork
from tests.factories import NOW, case_in

pytestmark = pytest.mark.connected


class Renderer:
    def render(self, template: str, context: Any) -> RenderedMessage:
        return RenderedMessage(subject="Asunto", text="Texto", html="<p>Texto</p>")


class Email:
    """Takes a little while per e-mail, so two deliverers are sending at the same time."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, *, to: str, message: RenderedMessage, message_id: str) -> None:
        await asyncio.sleep(0.01)
        self.sent.append(message_id)


def deliverer(sessionmaker: async_sessionmaker[AsyncSession], email: Email) -> Deliverer:
    return Deliverer(
        sessionmaker,
        FixedClock(NOW),
        Renderer(),  # type: ignore[arg-type]
        email,
        email,  # type: ignore[arg-type]
        DeliveryPolicy(),  # PostgreSQL's: groups of CONCURRENCY
    )


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(pg_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


async def due(engine: AsyncEngine, cases: int, per_case: int) -> list[CaseRow]:
    """``cases`` cases with ``per_case`` e-mails due each, queued one case after the other."""
    rows = [case_in("received", tracking_code=f"D311-2026-{i:04d}-TEST") for i in range(cases)]
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        uow.session.add_all(rows)
        await uow.session.flush()
        for case in rows:
            for n in range(per_case):
                uow.session.add(notification(case, "email", f"c{n}@example.com"))
    return rows


def notification(case: CaseRow, channel: str, recipient: str) -> NotificationRow:
    """A notification of ``case`` due now."""
    return NotificationRow(
        event_id=f"event-{case.tracking_code}",
        event_type="CaseReceived",
        case_id=case.id,
        tracking_code=case.tracking_code,
        template="case_received",
        channel=channel,
        recipient=recipient,
        recipient_masked="c***@e***.com",
        status="pending",
        attempts=0,
        next_attempt_at=NOW,
        last_error=None,
        context={"event": {}},
        created_at=NOW,
    )


async def test_two_deliverers_at_once_split_the_rows_and_send_each_once(
    engine: AsyncEngine, pg_url: str
) -> None:
    await due(engine, cases=15, per_case=4)
    other = make_engine(pg_url)  # another notifier instance: its own connections
    try:
        emails = [Email(), Email()]
        deliverers = [
            deliverer(make_sessionmaker(e), email)
            for e, email in zip((engine, other), emails, strict=True)
        ]
        tried = await asyncio.gather(*(d.deliver_due() for d in deliverers))
    finally:
        await other.dispose()
    sent = [m for email in emails for m in email.sent]
    assert sum(tried) == len(sent) == len(set(sent)) == 60
    assert all(email.sent for email in emails)  # SKIP LOCKED: the second took other rows
    async with make_sessionmaker(engine)() as session:
        statuses = list(await session.scalars(select(NotificationRow.status)))
    assert statuses == ["sent"] * 60


async def test_a_group_of_e_mails_costs_a_few_statements_not_a_transaction_each(
    engine: AsyncEngine,
) -> None:
    cases = await due(engine, cases=2, per_case=CONCURRENCY // 2)
    statements: list[str] = []
    commits: list[object] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def committed(connection: object) -> None:
        commits.append(connection)

    email = Email()
    event.listen(engine.sync_engine, "before_cursor_execute", executed)
    event.listen(engine.sync_engine, "commit", committed)
    try:
        assert await deliverer(make_sessionmaker(engine), email).deliver_due() == CONCURRENCY
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", executed)
        event.remove(engine.sync_engine, "commit", committed)

    assert len(email.sent) == CONCURRENCY
    # The group: its claim, the updates, one read of both cases' states, the notes; then the
    # claim that finds nothing more due, and the other channels' lane's claim.
    assert sum("FROM cases" in s for s in statements) == 1
    assert len(statements) <= 7, statements
    assert len(commits) == 3
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        for case in cases:
            notes = [r for r in await history(uow, case.id) if r.action == "notification_sent"]
            assert len(notes) == CONCURRENCY // 2


class HangingWebhook:
    """A receiver that never answers; records how many e-mails had gone when it gave up."""

    def __init__(self, email: Email) -> None:
        self.email = email
        self.emails_sent_meanwhile: list[int] = []

    async def send(self, *, url: str, payload: Any, delivery_id: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            self.emails_sent_meanwhile.append(len(self.email.sent))


async def test_a_receiver_that_never_answers_holds_back_neither_email_nor_its_own_lane(
    engine: AsyncEngine,
) -> None:
    [case] = await due(engine, cases=1, per_case=CONCURRENCY)
    async with UnitOfWork(make_sessionmaker(engine)) as uow:
        uow.session.add(notification(case, "webhook", "http://127.0.0.1:9/never"))
    email = Email()
    webhook = HangingWebhook(email)
    sessionmaker = make_sessionmaker(engine)
    hurried = Deliverer(
        sessionmaker,
        FixedClock(NOW),
        Renderer(),  # type: ignore[arg-type]
        email,
        webhook,
        DeliveryPolicy(try_seconds=0.5),
    )
    assert await hurried.deliver_due() == CONCURRENCY + 1
    # Every e-mail went while the webhook waited; the webhook's try ended at the deadline.
    assert webhook.emails_sent_meanwhile == [CONCURRENCY]
    async with sessionmaker() as session:
        [row] = await session.scalars(
            select(NotificationRow).where(NotificationRow.channel == "webhook")
        )
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "no answer within 0.5 s")
