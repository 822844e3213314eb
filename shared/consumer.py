"""How every consumer handles a delivery (DESIGN §5).

- manual ack, only after the handler's transaction committed;
- a body that cannot be used (:class:`Poison`) goes to ``<queue>.dlq`` at once, with
  the reason in the ``x-defensa311-reason`` header;
- an infrastructure outage (database or broker unreachable) is waited out with
  backoff — the message stays unacked and is not counted as a failure;
- any other error is retried a bounded number of times, then dead-lettered with
  the reason. No broker-side delivery counting is relied upon.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.messaging import QueueSpec

log = logging.getLogger("defensa311.consumer")

Handler = Callable[[bytes, RabbitMessage], Awaitable[None]]


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


class Consumer:
    def __init__(
        self,
        spec: QueueSpec,
        handler: Handler,
        broker: RabbitBroker,
        *,
        attempts: int = 3,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._broker = broker
        self._attempts = attempts
        self._on_outcome = on_outcome or (lambda _queue, _outcome: None)

    async def __call__(self, body: bytes, msg: RabbitMessage) -> None:
        failures = 0
        backoff = 0.1
        while True:
            try:
                await self._handler(body, msg)
            except Poison as exc:
                await self._dead_letter(body, msg, exc.reason)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "infrastructure unavailable, waiting",
                        extra={"queue": self.spec.name, "error": type(exc).__name__},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
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
            await msg.ack()
            self._on_outcome(self.spec.name, "consumed")
            return

    async def _dead_letter(self, body: bytes, msg: RabbitMessage, reason: str) -> None:
        log.warning(
            "dead-lettered",
            extra={"queue": self.spec.name, "message_id": msg.message_id, "reason": reason},
        )
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
        await msg.ack()
        self._on_outcome(self.spec.name, "dead_lettered")
