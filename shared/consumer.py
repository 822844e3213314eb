"""How every consumer handles a delivery (DESIGN §4–5).

- before anything else, the delivery is checked against the routing-key table
  (:mod:`shared.routing`): its key must admit the body's ``event_type`` and, on a department
  key, its ``user_id``; anything else goes to ``<queue>.dlq`` with the reason;
- the body is parsed into the model the routing table names for its ``event_type`` (a body
  that does not fit is :class:`Poison`); on a department key, the event's ``department`` must
  be the key's;
- a service's handlers are plain ``async def handler(event, uow, deps)`` functions in one map
  (:class:`Handlers`: event type → handler); the consumer claims the event in the inbox (a
  redelivery has no second effect) and reads in advance what the service's handlers look up
  (:class:`Prefetch`), then calls the handler mapped to the event's type (none: acked, nothing
  to do). It runs the deliveries waiting at that moment in **one** transaction (a batch: one
  commit instead of many). If the batch fails for any reason but an outage, it is rolled back
  and each delivery is run alone, so one bad message never takes good ones with it;
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import aio_pika
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.messaging import QueueSpec
from shared.routing import Identities, Refused, Route, check, route_of
from shared.routing import event_type as event_type_of
from shared.uow import UnitOfWork
from shared.validation import spanish_errors

log = logging.getLogger("defensa311.consumer")

D = TypeVar("D")


class Poison(Exception):
    """A message that can never be handled: dead-letter it with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Prefetch(Enum):
    """What a service's handlers look up by the event's ids: a batch reads it for every
    delivery at once (one statement each instead of one per delivery)."""

    NOTHING = "nothing"
    CASE = "case"  # the case named by ``case_id``
    CASE_LOCKED = "case_locked"  # the same, read FOR UPDATE
    EXTERNAL_REF = "external_ref"  # a case filed under the event's ``external_ref``


EventHandler = Callable[[Any, UnitOfWork, Any], Awaitable[None]]
"""``async def handler(event, uow, deps) -> None``: the work of one event, in a transaction
that may be shared with other deliveries. It keeps no state of its own between calls: a
failed batch runs it again alone. It raises :class:`Poison` for an event it can never use."""


@dataclass(frozen=True)
class Handlers(Generic[D]):
    """One service's map of event type → handler, with its typed dependencies."""

    consumer: str  # the name its inbox claims go under
    deps: D
    on: Mapping[type[Any], EventHandler]
    prefetch: Prefetch = Prefetch.NOTHING
    # A look-ahead for a batch: called once with the batch's events before any handler runs.
    prepare: Callable[[UnitOfWork, list[Any], D], Awaitable[None]] | None = None
    # How a body becomes what the handlers take (default: :func:`parse` into the model the
    # routing table names). The result has an ``event_id``.
    decode: Callable[[bytes, RabbitMessage, type[BaseModel]], Any] | None = None

    def handler_of(self, event: Any) -> EventHandler | None:
        """The handler of the event's type or of its nearest base type in the map."""
        for kind in type(event).__mro__:
            if kind in self.on:
                return self.on[kind]
        return None

    async def handle(self, event: Any, uow: UnitOfWork) -> bool:
        """Run the event's handler in ``uow`` (no inbox claim); False if none is mapped."""
        handler = self.handler_of(event)
        if handler is None:
            return False
        await handler(event, uow, self.deps)
        return True


def parse(model: type[BaseModel], body: bytes) -> Any:
    """The body as ``model``, or :class:`Poison` naming the fields and rules it breaks."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Poison("el cuerpo no es JSON válido") from exc
        errors = spanish_errors(list(exc.errors()))[:10]
        fields = ", ".join(f"{e['field'] or '·'}:{e['rule']}" for e in errors)
        raise Poison(f"no cumple el esquema del evento {model.__name__}: {fields}") from exc


@dataclass(frozen=True)
class Work:
    """One delivery's event and handler, with what a batch reads in advance for it."""

    event: Any
    handler: EventHandler
    claim: tuple[str, str]  # (consumer, event_id): claimed in the inbox in the same transaction
    case_id: str | None = None
    lock: bool = False
    external_ref: str | None = None


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
        handlers: Handlers[Any],
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
        self._handlers = handlers
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
        key = raw.routing_key or ""
        try:
            event_type = check(key, body, raw.user_id, self._identities, self._consumes)
        except Refused as exc:
            await self._dead_letter(body, msg, exc.reason)
            return
        try:
            work = self._work(key, event_type, body, msg)
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

    def _work(self, key: str, event_type: str, body: bytes, msg: RabbitMessage) -> Work | None:
        """Parse the body, check it against its key, and find its handler (pure)."""
        route = route_of(key)
        assert route is not None  # ``check`` refused any key outside the table
        model = next(m for m in route.events if event_type_of(m) == event_type)
        handlers = self._handlers
        event = handlers.decode(body, msg, model) if handlers.decode else parse(model, body)
        _check_department(route, key, event)
        handler = handlers.handler_of(event)
        if handler is None:
            return None
        prefetch = handlers.prefetch
        case_id = getattr(event, "case_id", None)
        return Work(
            event,
            handler,
            claim=(handlers.consumer, str(event.event_id)),
            case_id=str(case_id)
            if case_id is not None and prefetch in (Prefetch.CASE, Prefetch.CASE_LOCKED)
            else None,
            lock=prefetch is Prefetch.CASE_LOCKED,
            external_ref=getattr(event, "external_ref", None)
            if prefetch is Prefetch.EXTERNAL_REF
            else None,
        )

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
                    if self._handlers.prepare is not None:
                        events = [w.event for w in works]
                        await self._handlers.prepare(uow, events, self._handlers.deps)
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
        if not await uow.claim(*work.claim, self._now()):
            return
        await work.handler(work.event, uow, self._handlers.deps)

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


def _check_department(route: Route, key: str, event: Any) -> None:
    """On a department key, the event speaks for the department the key names."""
    if (
        route.publisher == "department"
        and getattr(event, "department", None) != key.rsplit(".", 1)[-1]
    ):
        raise Poison("el departamento del mensaje no coincide con su clave de enrutamiento")
