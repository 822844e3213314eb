"""The delivery loop: sends due notifications, retries with backoff, gives up loudly.

Due ``pending`` rows are claimed in groups, each group in one transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so several notifier instances never send one row twice at once): its
rows are sent at once and marked in that same transaction, which held their locks while they
were sent:

- sent → ``sent`` with ``sent_at``, and a ``notification_sent`` row in the case's history;
- a transient failure (SMTP down, HTTP 5xx/429/timeout) → ``attempts + 1`` and
  ``next_attempt_at = now + backoff · 2^(attempts-1)`` (an HTTP ``Retry-After`` may ask for
  more), so one failing channel never holds the others; when it comes back the rows go out;
- a permanent failure, or ``NotifierSettings.notify_attempts`` used up → ``failed`` with the reason,
  a ``notification_failed`` row in the history and a ``NotificationFailed`` event through
  the outbox (the dead letter, with the reason).

One row's failure is its own: the other rows of its group are marked as their tries went.
Time comes from the injected clock, so tests advance it instead of sleeping. A crash between
sending and committing rolls the whole group back: its rows are sent again later with the same
``Message-ID`` / ``X-Defensa311-Delivery`` (both derive from the notification id), which
receivers recognise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.channels import (
    ChannelError,
    EmailChannel,
    MailboxChannel,
    SmtpSettings,
    WebhookChannel,
)
from services.notifier.models import NotificationRow
from services.notifier.planning import EMAIL, FAILED, IN_PERSON, PENDING, SENT, SMS, WEBHOOK
from services.notifier.settings import NotifierSettings
from services.notifier.templates import RenderedMessage, TemplateRenderer
from shared.cases import CaseNote, record_notes_on
from shared.clock import Clock
from shared.contract import NotificationFailed
from shared.domain.key_link import KeyLinks
from shared.mailbox import MailSettings, uses_mailbox
from shared.outbox import OutboxRelay
from shared.runtime import Deps
from shared.settings import Settings
from shared.uow import UnitOfWork

ACTOR = "notifier"
MAX_BACKOFF_SECONDS = 3600.0
log = logging.getLogger("defensa311.notifier.delivery")


class EmailSender(Protocol):
    async def send(self, *, to: str, message: RenderedMessage, message_id: str) -> None: ...


class WebhookSender(Protocol):
    async def send(self, *, url: str, payload: Mapping[str, Any], delivery_id: str) -> None: ...


# Notifications sent at once on PostgreSQL: one group, claimed and marked in one transaction.
CONCURRENCY = 8
#: The longest one try may take, whatever the channel's own timeouts allow.
TRY_SECONDS = 30.0


@dataclass(frozen=True)
class DeliveryPolicy:
    attempts: int = 6
    backoff_seconds: float = 2.0
    sms_webhook_url: str | None = None
    concurrency: int = CONCURRENCY
    batch: int = 100
    # E-mail and the other channels (webhooks, SMS) in two lanes at once: a slow webhook
    # receiver holds back webhooks, not the citizens' e-mail. One lane on SQLite.
    lanes: bool = True
    # A try that takes longer than this is a transient failure (its group waits no longer).
    try_seconds: float = TRY_SECONDS

    @classmethod
    def from_settings(cls, settings: NotifierSettings, *, sqlite: bool) -> DeliveryPolicy:
        return cls(
            attempts=max(1, settings.notify_attempts),
            backoff_seconds=max(0.0, settings.notify_backoff_seconds),
            sms_webhook_url=settings.sms_webhook_url,
            concurrency=1 if sqlite else CONCURRENCY,  # SQLite: one writer at a time
            lanes=not sqlite,
        )


def retry_delay(attempts: int, base_seconds: float, retry_after: float | None = None) -> timedelta:
    """Exponential backoff after the ``attempts``-th failed try (1, 2, …), capped at an hour."""
    delay = base_seconds * 2 ** max(0, attempts - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return timedelta(seconds=min(delay, MAX_BACKOFF_SECONDS))


def message_id(row: NotificationRow) -> str:
    """The same on every try of one notification: a resend is recognisable."""
    return f"notification-{row.id}"


def with_clave_url(context: Mapping[str, Any], links: KeyLinks | None) -> Mapping[str, Any]:
    """The receipt's ``clave_url``, signed as the e-mail goes out: the token is never stored
    (the log keeps only what it is made of). Without a signer, the e-mail has no link."""
    made_of = context.get("clave_link")
    if links is None or not isinstance(made_of, Mapping):
        return context
    url = links.url(
        str(context["public_url"]),
        str(context["tracking_code"]),
        str(made_of["binding"]),
        datetime.fromisoformat(str(made_of["expires_at"])),
    )
    return {**context, "clave_url": url}


@dataclass(frozen=True)
class Failure:
    """Why a try did not deliver; ``reason`` is loggable (no personal data)."""

    reason: str
    transient: bool
    retry_after: float | None = None


class Deliverer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        renderer: TemplateRenderer,
        email: EmailSender,
        webhook: WebhookSender,
        policy: DeliveryPolicy,
        *,
        relay: OutboxRelay | None = None,
        links: KeyLinks | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._links = links
        self._clock = clock
        self._renderer = renderer
        self._email = email
        self._webhook = webhook
        self._policy = policy
        self._relay = relay

    def _uow(self) -> UnitOfWork:
        return UnitOfWork(self._sessionmaker, self._relay)

    async def deliver_due(self) -> int:
        """Try every due notification once (up to ``policy.batch`` per lane); return how many
        were tried.

        Groups of ``policy.concurrency`` rows (8 on PostgreSQL, 1 on SQLite) go one after the
        other in each lane, each in one transaction: the claim, the sends at once, the
        updates, one read of the cases' states for the notes, the commit — four statements and
        a commit for eight e-mails (one more for the outbox if one failed for good).

        One group at a time per lane, because a crash sends again every row claimed and not
        yet committed: that stays at ``concurrency`` rows per lane. The price: a group waits
        for its slowest send (at most ``policy.try_seconds``) before the next one starts, so
        e-mail has a lane of its own: a slow webhook receiver does not hold it back.
        """
        if not self._policy.lanes:
            return await self._deliver_lane(None)
        tried = await asyncio.gather(self._deliver_lane(True), self._deliver_lane(False))
        return sum(tried)

    async def _deliver_lane(self, email: bool | None) -> int:
        tried: set[int] = set()
        while len(tried) < self._policy.batch:
            size = min(self._policy.concurrency, self._policy.batch - len(tried))
            statuses = await self._deliver_group(size, skip=tried, email=email)
            tried.update(statuses)
            if len(statuses) < size:  # nothing more is due, or the rest is being sent elsewhere
                break
        return len(tried)

    async def deliver(self, notification_id: int) -> str | None:
        """Claim and try one notification; return its new status (None: not due or taken)."""
        statuses = await self._deliver_group(1, only=notification_id)
        return statuses.get(notification_id)

    async def _deliver_group(
        self,
        size: int,
        *,
        only: int | None = None,
        skip: Collection[int] = (),
        email: bool | None = None,
    ) -> dict[int, str]:
        """Claim up to ``size`` due rows (of e-mail, of the other channels, or of any: ``email``
        True, False or None), send them at once and mark them, in one transaction that holds
        their locks while they are sent. Returns each claimed row's new status."""
        async with self._uow() as uow:
            now = self._clock.now()
            rows = await self._claim(uow, now, size, only=only, skip=skip, email=email)
            for row in rows:
                row.attempts += 1
            failures = await asyncio.gather(*(self._try(row) for row in rows))
            notes = [
                self._settle(uow, row, failure, now)
                for row, failure in zip(rows, failures, strict=True)
            ]
            # The notes in the rows' order, their cases' states read at once, last: the read
            # flushes the group's updates in one go.
            await record_notes_on(
                uow, [note for note in notes if note is not None], actor=ACTOR, now=now
            )
            return {row.id: row.status for row in rows}

    @staticmethod
    async def _claim(
        uow: UnitOfWork,
        now: datetime,
        size: int,
        *,
        only: int | None,
        skip: Collection[int],
        email: bool | None,
    ) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(NotificationRow.status == PENDING, NotificationRow.next_attempt_at <= now)
            .order_by(NotificationRow.next_attempt_at, NotificationRow.id)
            .limit(size)
        )
        if only is not None:
            query = query.where(NotificationRow.id == only)
        if email is not None:
            is_email = NotificationRow.channel == EMAIL
            query = query.where(is_email if email else ~is_email)
        if skip:  # tried this round: a failed try with no backoff would be due again at once
            query = query.where(NotificationRow.id.not_in(sorted(skip)))
        if uow.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return list(await uow.session.scalars(query))

    async def _try(self, row: NotificationRow) -> Failure | None:
        """Send one row; a failure is returned, not raised, so the group's other rows go on."""
        try:
            async with asyncio.timeout(self._policy.try_seconds):
                await self._send(row)
        except TimeoutError:
            return Failure(f"no answer within {self._policy.try_seconds:g} s", transient=True)
        except ChannelError as exc:
            return Failure(exc.reason, exc.transient, exc.retry_after)
        except (TemplateError, ValueError, KeyError, TypeError) as exc:
            # a broken (overridden) template or a malformed stored context: no retry helps
            return Failure(f"cannot build the message: {type(exc).__name__}", transient=False)
        except Exception as exc:  # unforeseen: count it as a try, keep the row moving
            return Failure(f"unexpected error: {type(exc).__name__}", transient=True)
        return None

    # ------------------------------------------------------------------------------ sending

    async def _send(self, row: NotificationRow) -> None:
        context = row.context
        if row.channel == EMAIL:
            message = self._renderer.render(row.template, with_clave_url(context, self._links))
            await self._email.send(to=row.recipient, message=message, message_id=message_id(row))
        elif row.channel == WEBHOOK:
            payload = {
                "notification_id": message_id(row),
                "template": row.template,
                "event": context["event"],
            }
            await self._webhook.send(
                url=row.recipient, payload=payload, delivery_id=message_id(row)
            )
        elif row.channel == SMS:
            url = self._policy.sms_webhook_url
            if not url:
                raise ChannelError("no SMS gateway configured", transient=False)
            payload = {
                "notification_id": message_id(row),
                "to": row.recipient,
                "text": self._renderer.render_sms(row.template, context),
                "tracking_code": row.tracking_code,
            }
            await self._webhook.send(url=url, payload=payload, delivery_id=message_id(row))
        elif row.channel == IN_PERSON:
            raise ChannelError("in-person notifications are staff tasks", transient=False)
        else:
            raise ChannelError(f"unknown channel {row.channel!r}", transient=False)

    def _settle(
        self, uow: UnitOfWork, row: NotificationRow, failure: Failure | None, now: datetime
    ) -> CaseNote | None:
        """Mark a row as its try went; return the note for its case's history, if any."""
        if failure is None:
            row.status = SENT
            row.sent_at = now
            row.last_error = None
            log.info("notification sent", extra=self._log_fields(row))
            return self._note(row, "notification_sent", {})
        row.last_error = failure.reason
        if failure.transient and row.attempts < self._policy.attempts:
            row.next_attempt_at = now + retry_delay(
                row.attempts, self._policy.backoff_seconds, failure.retry_after
            )
            log.warning(
                "notification not sent, will retry",
                extra=self._log_fields(row) | {"reason": failure.reason},
            )
            return None
        row.status = FAILED
        row.next_attempt_at = None
        if row.case_id is not None and row.tracking_code is not None:
            uow.publish(
                NotificationFailed(
                    case_id=uuid.UUID(row.case_id),
                    tracking_code=row.tracking_code,
                    notification_id=str(row.id),
                    channel=row.channel,
                    reason=failure.reason,
                    occurred_at=now,
                )
            )
        log.error("notification failed", extra=self._log_fields(row) | {"reason": failure.reason})
        return self._note(row, "notification_failed", {"reason": failure.reason})

    @staticmethod
    def _note(row: NotificationRow, action: str, extra: dict[str, Any]) -> CaseNote | None:
        if row.case_id is None:
            return None
        return CaseNote(
            row.case_id,
            action,
            {
                "notification_id": row.id,
                "event_type": row.event_type,
                "template": row.template,
                "channel": row.channel,
                "recipient": row.recipient_masked,
                "attempts": row.attempts,
                **extra,
            },
        )

    @staticmethod
    def _log_fields(row: NotificationRow) -> dict[str, Any]:
        return {
            "notification_id": row.id,
            "case_id": row.case_id,
            "tracking_code": row.tracking_code,
            "channel": row.channel,
            "recipient": row.recipient_masked,
            "attempts": row.attempts,
        }


def smtp_settings(settings: NotifierSettings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        sender=settings.smtp_from,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        reuse_seconds=settings.smtp_reuse_seconds,
        messages_per_connection=settings.smtp_messages_per_connection,
        idle_connections=CONCURRENCY,  # one kept per delivery in flight
    )


def email_channel(settings: NotifierSettings, shared: Settings) -> EmailChannel | MailboxChannel:
    """SMTP when a server is configured; else the local mailbox folder (:mod:`shared.mailbox`)."""
    mail = MailSettings()
    configured = bool({"smtp_host", "smtp_port"} & settings.model_fields_set)
    if uses_mailbox(shared, mail, smtp_configured=configured):
        return MailboxChannel(smtp_settings(settings), mail.mailbox_dir)
    return EmailChannel(smtp_settings(settings))


async def delivery_loop(deps: Deps, settings: NotifierSettings, signal: asyncio.Event) -> None:
    """Runs for the life of the service: deliver what is due, then wait for new rows or a poll."""
    renderer = TemplateRenderer(settings.templates_dir, tz=deps.config.institution.timezone)
    policy = DeliveryPolicy.from_settings(settings, sqlite=deps.settings.is_sqlite)
    poll = max(0.05, deps.settings.outbox_poll_seconds)
    async with (
        email_channel(settings, deps.settings) as email,
        WebhookChannel(secret=settings.webhook_secret) as webhook,
    ):
        deliverer = Deliverer(
            deps.sessionmaker,
            deps.clock,
            renderer,
            email,
            webhook,
            policy,
            relay=deps.relay,
            links=deps.key_links,
        )
        while True:
            signal.clear()
            try:
                tried = await deliverer.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again after a pause
                log.warning("delivery round failed", extra={"error": type(exc).__name__})
                tried = 0
            if tried >= policy.batch:
                continue
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see shared/outbox.py
                async with asyncio.timeout(poll):
                    await signal.wait()
