"""How every consumer handles a delivery (DESIGN §4–5).

- before anything else, the delivery is checked against the routing-key table
  (:mod:`shared.routing`): its key must admit the body's ``event_type`` and, on a department
  key, its ``user_id``; anything else goes to ``<queue>.dlq`` with the reason;
- a handler first *decodes* the body (pure; a :class:`Poison` body is refused there) and
  returns the *work* to do in a transaction; the consumer runs the work of the deliveries
  waiting at that moment in **one** transaction (a batch: one commit instead of many). If the
  batch fails for any reason but an outage, it is rolled back and each delivery is run alone,
  so one bad message never takes good ones with it;
- manual ack, only after the transaction that holds the delivery's work committed;
- a body that cannot be used (:class:`Poison`) goes to ``<queue>.dlq`` at once, with
  the reason in the ``x-defensa311-reason`` header;
- an infrastructure outage (database or broker unreachable) is waited out with
  backoff — the message stays unacked and is not counted as a failure;
- any other error is retried a bounded number of times, then dead-lettered with
  the reason. No broker-side delivery counting is relied upon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.messaging import QueueSpec
from shared.routing import Identities, Refused, check, route_of
from shared.uow import UnitOfWork

log = logging.getLogger("defensa311.consumer")


@dataclass(frozen=True)
class Work:
    """What a delivery asks for: ``run`` inside a unit of work that may be shared with other
    deliveries. ``run`` must keep no state of its own between calls: a failed batch runs it
    again alone. The other fields say what ``run`` will look up, so that a batch fetches it
    for every delivery at once (one statement each instead of one per delivery)."""

    run: Callable[[UnitOfWork], Awaitable[None]]
    # (consumer, event_id): the consumer claims it in the inbox in the same transaction and
    # skips ``run`` if it was claimed before (a redelivery has no second effect).
    claim: tuple[str, str] | None = None
    case_id: str | None = None
    lock: bool = False  # the case is read FOR UPDATE
    external_ref: str | None = None
    # A service's own look-ahead for a batch: called once with the batch's works that name
    # it, before any of them runs.
    prepare: Callable[[UnitOfWork, list[Work]], Awaitable[None]] | None = None
    subject: Any = None  # what ``prepare`` needs to know of this delivery (its event)


Handler = Callable[[bytes, RabbitMessage], Work | None]
"""Decode a delivery: raise :class:`Poison`, return None (nothing to do) or the work."""


class Poison(Exception):
    """A message that can never be handled: dead-letter it with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_error(exc: BaseException) -> str:
    """A reason fit for a header or a log line: SQL errors carry parameters (personal
    data), so only their type is kept."""
    if isinstance(exc, DBAPIError):
        return f"{type(exc).__name__}({type(exc.orig).__name__})"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# SQLSTATEs that say "the database cannot serve you right now", not "this message is bad":
# connection exceptions (08), insufficient resources such as "too many clients" (53),
# operator intervention such as a shutdown or "the database system is starting up" (57P),
# and the concurrency failures a retry resolves (serialization failure, deadlock).
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "40001", "40P01")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES):
            return True
    return isinstance(exc, ConnectionError | OSError | TimeoutError | aio_pika.exceptions.AMQPError)


@dataclass
class _Delivery:
    body: bytes
    msg: RabbitMessage
    work: Work
    done: asyncio.Future[None]


class Consumer:
    def __init__(
        self,
        spec: QueueSpec,
        handler: Handler,
        broker: RabbitBroker,
        uow: Callable[[], UnitOfWork],
        *,
        identities: Identities,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        attempts: int = 3,
        batch: int = 32,
        gather_seconds: float = 0.0,
        on_outcome: Callable[[str, str], None] | None = None,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._identities = identities
        self._now = now
        # What this queue's bindings admit: a binding left from an older topology brings
        # nothing else to the handler.
        self._consumes = tuple(
            name
            for key in spec.bindings
            if (route := route_of(key)) is not None
            for name in route.event_types
        )
        self._broker = broker
        self._uow = uow
        self._attempts = attempts
        self._batch = max(1, batch)
        self._gather = gather_seconds
        self._on_outcome = on_outcome or (lambda _queue, _outcome: None)
        self._on_batch = on_batch or (lambda _queue, _deliveries: None)
        self._waiting: list[_Delivery] = []
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, body: bytes, msg: RabbitMessage) -> None:
        raw = msg.raw_message
        try:
            check(raw.routing_key or "", body, raw.user_id, self._identities, self._consumes)
        except Refused as exc:
            await self._dead_letter(body, msg, exc.reason)
            return
        try:
            work = self._handler(body, msg)
        except Poison as exc:
            await self._dead_letter(body, msg, exc.reason)
            return
        except Exception as exc:  # decoding is deterministic: trying again cannot help
            log.exception("could not decode", extra={"queue": self.spec.name})
            await self._dead_letter(body, msg, f"handler failed: {describe_error(exc)}")
            return
        if work is None:
            await self._ack(msg)
            return
        delivery = _Delivery(body, msg, work, asyncio.get_running_loop().create_future())
        self._waiting.append(delivery)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name=f"consume-{self.spec.name}")
        # The worker acks; waiting here keeps the delivery's task alive until it has.
        await asyncio.shield(delivery.done)

    async def close(self) -> None:
        """Stop the worker; unacked deliveries go back to the queue with the channel."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for delivery in self._waiting:
            delivery.done.cancel()
        self._waiting.clear()

    async def _drain(self) -> None:
        # The deliveries that arrived while a batch ran form the next batch: one at a time
        # under light load (no added latency), up to ``batch`` under heavy load.
        while self._waiting:
            if self._gather and len(self._waiting) < self._batch:
                await asyncio.sleep(self._gather)
            batch = self._waiting[: self._batch]
            del self._waiting[: len(batch)]
            try:
                if len(batch) == 1 or not await self._together(batch):
                    for delivery in batch:
                        await self._alone(delivery)
            except Exception:  # e.g. a dead letter that could not be published: broker away
                log.exception("deliveries returned to the queue", extra={"queue": self.spec.name})
                for delivery in batch:
                    with contextlib.suppress(Exception):  # a no-op on one already settled
                        await delivery.msg.nack(requeue=True)
            finally:
                for delivery in batch:
                    if not delivery.done.done():
                        delivery.done.set_result(None)

    async def _together(self, batch: list[_Delivery]) -> bool:
        """Run a batch in one transaction and ack it; False if it must be run one by one."""
        backoff = 0.1
        while True:
            try:
                async with self._uow() as uow:
                    works = [delivery.work for delivery in batch]
                    await uow.prefetch(
                        claims=[w.claim for w in works if w.claim],
                        case_ids=[w.case_id for w in works if w.case_id],
                        lock=any(w.lock for w in works),
                        external_refs=[w.external_ref for w in works if w.external_ref],
                        at=self._now(),
                    )
                    for prepare in dict.fromkeys(w.prepare for w in works if w.prepare):
                        await prepare(uow, [w for w in works if w.prepare is prepare])
                    for work in works:
                        await self._run(uow, work)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    backoff = await self._wait_out(exc, backoff)
                    continue
                return False
            self._on_batch(self.spec.name, len(batch))
            for delivery in batch:
                await self._ack(delivery.msg)
            return True

    async def _alone(self, delivery: _Delivery) -> None:
        failures = 0
        backoff = 0.1
        body, msg = delivery.body, delivery.msg
        while True:
            try:
                async with self._uow() as uow:
                    await self._run(uow, delivery.work)
            except Poison as exc:
                await self._dead_letter(body, msg, exc.reason)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    backoff = await self._wait_out(exc, backoff)
                    continue
                failures += 1
                self._on_outcome(self.spec.name, "failed")
                if failures >= self._attempts:
                    log.exception(
                        "handler kept failing; dead-lettering",
                        extra={"queue": self.spec.name, "message_id": msg.message_id},
                    )
                    await self._dead_letter(body, msg, f"handler failed: {describe_error(exc)}")
                    return
                continue
            self._on_batch(self.spec.name, 1)
            await self._ack(msg)
            return

    async def _run(self, uow: UnitOfWork, work: Work) -> None:
        if work.claim is not None and not await uow.claim(*work.claim, self._now()):
            return
        await work.run(uow)

    async def _ack(self, msg: RabbitMessage) -> None:
        try:
            await msg.ack()
        except Exception as exc:  # the channel closed: the broker redelivers, the inbox dedups
            log.warning("ack failed", extra={"queue": self.spec.name, "error": repr(exc)})
            return
        self._on_outcome(self.spec.name, "consumed")

    async def _wait_out(self, exc: BaseException, backoff: float) -> float:
        log.warning(
            "infrastructure unavailable, waiting",
            extra={"queue": self.spec.name, "error": type(exc).__name__},
        )
        await asyncio.sleep(backoff)
        return min(backoff * 2, 5.0)

    async def _dead_letter(self, body: bytes, msg: RabbitMessage, reason: str) -> None:
        try:
            await self._publish_dead_letter(body, msg, reason)
        except Exception as exc:  # the DLQ is missing or the broker is away: keep the message
            log.warning(
                "dead letter not published; delivery returned to the queue",
                extra={"queue": self.spec.name, "error": type(exc).__name__},
            )
            await asyncio.sleep(1.0)  # not a hot loop of redeliveries while it lasts
            with contextlib.suppress(Exception):
                await msg.nack(requeue=True)
            return
        log.warning(
            "dead-lettered",
            extra={"queue": self.spec.name, "message_id": msg.message_id, "reason": reason},
        )
        await msg.ack()
        self._on_outcome(self.spec.name, "dead_lettered")

    async def _publish_dead_letter(self, body: bytes, msg: RabbitMessage, reason: str) -> None:
        raw = msg.raw_message
        await self._broker.publish(
            body,
            exchange=None,
            routing_key=self.spec.dlq,
            mandatory=True,
            persist=True,
            message_id=msg.message_id or None,
            content_type=raw.content_type,
            headers={
                **{k: v for k, v in (raw.headers or {}).items() if isinstance(v, str | int)},
                "x-defensa311-reason": reason,
                "x-defensa311-queue": self.spec.name,
                "x-defensa311-routing-key": raw.routing_key or "",
                "x-defensa311-failed-at": datetime.now(UTC).isoformat(),
            },
            timeout=10,
        )
