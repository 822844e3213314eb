"""The skeleton every service shares: one process runs one service or all four.

A :class:`ServiceDefinition` names its consumers (queue + handler), its background
loops and, for intake, its HTTP app. :class:`Runtime` wires them to one engine, one
broker and one outbox relay, migrates the database, declares the whole topology
before consuming or publishing, and reports readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import TokenStore
from shared.cases import CaseServices
from shared.clock import Clock, SystemClock
from shared.closures import keep_calendar_current, reload_calendar
from shared.config import InstitutionConfig, load_config
from shared.consumer import Consumer, Handlers
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.domain.clocks import Terms
from shared.domain.key_link import KeyLinks
from shared.evidence import RemitLinks
from shared.key_links import load_key_links
from shared.messaging import (
    QueueSpec,
    declare_topology,
    exchange,
    make_broker,
    rabbit_queue,
    system_topology,
)
from shared.metrics import Gauges, Metrics
from shared.outbox import OutboxRelay, Retention, prune_forever
from shared.routing import Identities, account_of
from shared.settings import Settings
from shared.storage import StorageSettings, make_store
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger("defensa311.runtime")

# How often a service without HTTP re-reads its gauges for its metrics port.
GAUGES_SECONDS = 15.0


@dataclass
class Deps:
    """Everything a handler, a loop or an HTTP route may need."""

    settings: Settings
    config: InstitutionConfig
    clock: Clock
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    broker: RabbitBroker
    cases: CaseServices
    relay: OutboxRelay
    metrics: Metrics
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker, self.relay)

    @cached_property
    def tokens(self) -> TokenStore:
        """The bearer tokens every HTTP door of this process checks (built once)."""
        return TokenStore.build(
            self.settings.api_tokens, self.config.tokens, set(self.config.department_codes)
        )

    @cached_property
    def key_links(self) -> KeyLinks | None:
        """The receipt e-mail's clave links: signed by the notifier, checked by intake (built
        once; ``None`` when links are off, :mod:`shared.key_links`)."""
        return load_key_links(self.settings)

    async def check_ready(self) -> dict[str, bool]:
        database = False
        with contextlib.suppress(Exception):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                database = True
        broker = False
        with contextlib.suppress(Exception):
            broker = bool(await self.broker.ping(timeout=2.0))
        return {"database": database, "broker": broker, "topology": self.ready.is_set()}


HandlerFactory = Callable[[Deps], Handlers[Any]]
"""Builds a service's handler map with its typed dependencies from the process's."""
LoopFactory = Callable[[Deps], Coroutine[Any, Any, None]]
HttpFactory = Callable[[Deps], "FastAPI"]


@dataclass(frozen=True)
class Subscription:
    queue: QueueSpec
    handlers: HandlerFactory
    description: str = ""
    # How long a delivery may wait for others to share its transaction. Zero where
    # latency matters (the path to the department); a fraction of a second where it does not
    # (clocks, notifications) buys far fewer transactions under a steady flow.
    gather_seconds: float = 0.0


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    subscriptions: tuple[Subscription, ...] = ()
    loops: tuple[LoopFactory, ...] = ()
    http: HttpFactory | None = None
    # Routers (``fastapi.APIRouter``) of the service's own HTTP routes: mounted on the app the
    # process serves (:func:`shared.http.http_app`), intake's or a small one of their own.
    routers: tuple[Any, ...] = ()
    # What stops the service from starting, one line each for the operator (``run`` prints
    # them and exits before connecting to anything).
    checks: tuple[Callable[[Settings], list[str]], ...] = ()
    # The service's own tables (ORM classes on the shared declarative base): the one
    # Alembic history and the schema tests see them through the service definitions.
    models: tuple[type[Any], ...] = ()
    # Gauges read from the service's own tables (its /metrics figures).
    gauges: tuple[Gauges, ...] = ()
    # Connections the service's own loops hold at once, if more than DEFENSA311_DB_POOL_SIZE:
    # a pool smaller than that opens and closes overflow connections all the time (each one a
    # PostgreSQL backend forked and its statements prepared anew).
    db_pool_size: int = 0


async def _the_message(msg: Any) -> Any:
    # The handler gets the message itself and validates the raw bytes (a bad 311 body must
    # be answered). Not a ``Context("message")`` parameter: FastStream resolves that with a
    # thread hop per delivery (fast-depends runs the sync resolver in a thread pool).
    return msg


def pool_size(settings: Settings, services: list[ServiceDefinition]) -> int:
    """The setting, or more if a service needs more (``run all``: the largest need)."""
    return max([settings.db_pool_size, *(service.db_pool_size for service in services)])


def http_server_config(settings: Settings, app: Any, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration: forwarded headers are believed only from trusted proxies
    (uvicorn's own default trusts 127.0.0.1, which is every client behind a local tunnel)."""
    import uvicorn

    trusted = [ip.strip() for ip in settings.trusted_proxies.split(",") if ip.strip()]
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port if port is None else port,
        log_config=None,
        access_log=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
    )


def remit_links(config: InstitutionConfig) -> RemitLinks:
    """The attachment store every part of this process shares (one local signing key)."""
    storage = StorageSettings()
    store = make_store(storage, base_url=config.institution.public_url)
    return RemitLinks(store, timedelta(days=storage.storage_link_days))


class Runtime:
    def __init__(
        self,
        settings: Settings,
        services: list[ServiceDefinition],
        *,
        clock: Clock | None = None,
        config: InstitutionConfig | None = None,
    ) -> None:
        self.settings = settings
        self.services = services
        config = config or load_config(settings.config)
        engine = make_engine(
            settings.database_url,
            **({} if settings.is_sqlite else {"pool_size": pool_size(settings, services)}),
        )
        broker = make_broker(settings.amqp_url, prefetch=settings.prefetch)
        sessionmaker = make_sessionmaker(engine)
        clock = clock or SystemClock()
        self.relay = OutboxRelay(
            sessionmaker,
            broker,
            clock,
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.outbox_lease_seconds,
            user_id=account_of(settings.amqp_url),
        )
        self.deps = Deps(
            settings=settings,
            config=config,
            clock=clock,
            engine=engine,
            sessionmaker=sessionmaker,
            broker=broker,
            cases=CaseServices(
                config=config, terms=Terms.from_config(config), complete_event=remit_links(config)
            ),
            relay=self.relay,
            metrics=Metrics(),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._servers: list[Any] = []
        self._consumers: list[Consumer] = []
        self.deps.metrics.gauges = [g for service in services for g in service.gauges]
        for service in services:
            for sub in service.subscriptions:
                self._subscribe(sub)

    @property
    def names(self) -> str:
        return "+".join(s.name for s in self.services)

    def _subscribe(self, sub: Subscription) -> None:
        consumer = Consumer(
            sub.queue,
            sub.handlers(self.deps),
            self.deps.broker,
            self.deps.uow,
            identities=Identities(
                system=account_of(self.settings.amqp_url),
                department_prefix=self.settings.broker_account_prefix,
            ),
            now=self.deps.clock.now,
            attempts=self.settings.handler_attempts,
            batch=self.settings.batch_size,
            gather_seconds=sub.gather_seconds,
            on_outcome=self.deps.metrics.message_outcome,
            on_batch=self.deps.metrics.batch,
        )
        self._consumers.append(consumer)

        async def handle(msg: Any) -> None:
            await consumer(msg.body, msg)

        self.deps.broker.subscriber(
            rabbit_queue(sub.queue),
            exchange(),
            ack_policy=AckPolicy.MANUAL,
            decoder=_the_message,
            description=sub.description or sub.queue.description,
        )(handle)

    async def start(self) -> None:
        deps = self.deps
        await upgrade(deps.engine)
        # Closures by decree added at run time count from the start, and are re-read as added.
        await reload_calendar(deps.sessionmaker, deps.config, deps.cases.terms)
        await deps.broker.connect()
        await declare_topology(deps.broker, system_topology(deps.config.department_codes))
        await deps.broker.start()
        deps.ready.set()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        self._tasks.append(
            asyncio.create_task(
                prune_forever(
                    deps.sessionmaker,
                    deps.clock,
                    Retention.from_settings(self.settings),
                    timedelta(seconds=self.settings.prune_interval_seconds),
                    lambda pruned: deps.metrics.rows_pruned(pruned.outbox, pruned.inbox),
                ),
                name="retention",
            )
        )
        self._tasks.append(
            asyncio.create_task(
                keep_calendar_current(deps.sessionmaker, deps.config, deps.cases.terms),
                name="calendar-closures",
            )
        )
        for service in self.services:
            for loop in service.loops:
                self._tasks.append(asyncio.create_task(loop(deps), name=f"{service.name}-loop"))
        log.info("started", extra={"service": self.names})

    async def _refresh_gauges(self) -> None:
        while True:
            await self.deps.metrics.refresh(self.deps.engine, self.deps.clock.now())
            await asyncio.sleep(GAUGES_SECONDS)

    async def stop(self) -> None:
        # Cancel until every loop has really stopped: a task may absorb one cancellation.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=5)
        self._tasks.clear()
        for consumer in self._consumers:
            await consumer.close()
        with contextlib.suppress(Exception):
            await self.deps.broker.stop()
        await self.deps.engine.dispose()

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or forever), serving HTTP where a service has it."""
        import uvicorn

        from shared.http import http_app

        stop = stop or asyncio.Event()
        await self.start()
        # Everything built so far (modules, models, compiled rules, pools) lives as long as
        # the process: take it out of the collector's sight. A full collection otherwise
        # walked all of it — 70-110 ms pauses every few seconds under load, the worst tail
        # latencies of the pipeline.
        gc.collect()
        gc.freeze()
        try:
            # Intake's app serves /metrics itself; without it, the metrics port does.
            if self.settings.metrics_port and not any(s.http for s in self.services):
                await self.deps.metrics.serve(self.settings.http_host, self.settings.metrics_port)
                if self.deps.metrics.gauges:
                    self._tasks.append(
                        asyncio.create_task(self._refresh_gauges(), name="metrics-gauges")
                    )
            with_intake = any(s.http for s in self.services)
            port = self.settings.http_port if with_intake else self.settings.service_http_port
            app = http_app(self.deps, self.services) if port is not None else None
            if app is not None:
                server = uvicorn.Server(http_server_config(self.settings, app, port))
                server_task = asyncio.create_task(server.serve())
                await stop.wait()
                server.should_exit = True
                await server_task
            else:
                await stop.wait()
        finally:
            await self.stop()
