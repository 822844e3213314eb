"""The deadlines service on a real PostgreSQL and a real RabbitMQ (one vhost and one database per
test). Time is injected: sweeps run as of given instants, nothing sleeps until a deadline.

The term used: filed Monday 2026-03-02, due Tuesday 2026-04-14 23:59:59 America/Panama; alerts at
00:00 of 2026-04-02 (7 business days before; 04-03 is Good Friday), 04-09 (3) and 04-13 (1).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.deadlines.app import service
from services.deadlines.handlers import policy_for
from services.deadlines.models import ClockRow
from services.deadlines.schedule import AlertPolicy
from services.deadlines.sweep import sweep
from shared.calendar import TZ, BusinessCalendar, CalendarKind
from shared.clock import FixedClock
from shared.config import load_config
from shared.contract import (
    EXCHANGE,
    CaseClosed,
    CaseReceived,
    CaseRemitted,
    CaseResolved,
    CaseReturnAccepted,
    CitizenContact,
    Event,
)
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import OutboxRow
from shared.runtime import Runtime, ServiceDefinition
from shared.settings import Settings
from shared.uow import UnitOfWork
from tests.support import ROOT, eventually, process_env, settings_for

pytestmark = pytest.mark.connected

FILED = datetime(2026, 3, 2, 10, 30, tzinfo=TZ)
DUE = datetime(2026, 4, 14, 23, 59, 59, tzinfo=TZ)
AT_7 = datetime(2026, 4, 2, 0, 0, tzinfo=TZ)
AT_3 = datetime(2026, 4, 9, 0, 0, tzinfo=TZ)
AT_1 = datetime(2026, 4, 13, 0, 0, tzinfo=TZ)
REMITTED = datetime(2026, 3, 3, 9, 0, tzinfo=TZ)
# 30 business days after Tuesday 2026-03-03 is Wednesday 2026-04-15.
DEPT_DUE = datetime(2026, 4, 15, 23, 59, 59, tzinfo=TZ)
POLICY = AlertPolicy(thresholds=(7, 3, 1), calendar=BusinessCalendar(CalendarKind.BUSINESS))


def handlers_only() -> ServiceDefinition:
    """The deadlines service without its loop: the tests sweep as of chosen instants."""
    return ServiceDefinition(name="deadlines", subscriptions=service().subscriptions)


def received(case_id: uuid.UUID, code: str = "D311-2026-000101") -> CaseReceived:
    return CaseReceived(
        case_id=case_id,
        tracking_code=code,
        channel="web",
        kind="denuncia",
        received_at=FILED,
        due_at=DUE,
        occurred_at=FILED,
    )


def remitted(
    case_id: uuid.UUID, at: datetime = REMITTED, due: datetime = DEPT_DUE, department: str = "aseo"
) -> CaseRemitted:
    return CaseRemitted(
        case_id=case_id,
        tracking_code="D311-2026-000101",
        department=department,
        kind="denuncia",
        category="Basura en vía pública",
        description="Botan basura en el lote de la esquina todas las noches",
        citizen=CitizenContact(),
        remitted_at=at,
        due_at=due,
        occurred_at=at,
    )


class Wire:
    """A publisher of case events and a queue bound to ``deadline.#`` in the test vhost."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self.connection = connection

    async def open(self) -> None:
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.alerts = await self.channel.declare_queue(exclusive=True)
        await self.alerts.bind(self.exchange, routing_key="deadline.#")

    async def publish(self, event: Event, routing_key: str | None = None) -> None:
        await self.exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=str(event.event_id),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key or event.routing_key(),
            mandatory=True,
        )

    async def dead_letter_reasons(self, count: int) -> list[str]:
        """The reasons of the first ``count`` messages in the deadlines DLQ, as they come."""
        dlq = await self.channel.declare_queue(
            "defensa311.deadlines.dlq", durable=True, arguments={"x-queue-type": "quorum"}
        )
        reasons: list[str] = []

        async def arrived() -> bool:
            message = await dlq.get(no_ack=True, fail=False)
            if message is not None:
                reasons.append(str((message.headers or {}).get("x-defensa311-reason")))
            return len(reasons) == count

        await eventually(arrived)
        return reasons

    async def drain(self, settle: float = 0.5) -> list[tuple[str, dict[str, Any]]]:
        """Every alert received until none arrived for ``settle`` seconds."""
        seen: list[tuple[str, dict[str, Any]]] = []
        quiet_since = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - quiet_since < settle:
            message = await self.alerts.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            seen.append((message.routing_key or "", json.loads(message.body)))
            quiet_since = asyncio.get_running_loop().time()
        return seen


@pytest.fixture
async def wire(amqp_url: str) -> AsyncIterator[Wire]:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        result = Wire(connection)
        await result.open()
        yield result
    finally:
        await connection.close()


def summary(alerts: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, int | None]]:
    return [(key, body["clock"], body.get("days_before")) for key, body in alerts]


async def clocks(runtime: Runtime) -> list[ClockRow]:
    async with runtime.deps.sessionmaker() as session:
        return list(await session.scalars(select(ClockRow).order_by(ClockRow.id)))


async def sweep_at(runtime: Runtime, at: datetime) -> int:
    result = await sweep(runtime.deps.uow, policy_for(runtime.deps), at)
    return result.sent


async def start(settings: Settings, clock: FixedClock) -> Runtime:
    runtime = Runtime(settings, [handlers_only()], clock=clock)
    await runtime.start()
    return runtime


async def test_alerts_fire_once_as_time_advances_and_across_a_restart(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    settings = settings_for(amqp_url, pg_url)
    clock = FixedClock(FILED)
    case_id = uuid.uuid4()
    runtime = await start(settings, clock)
    try:
        event = received(case_id)
        await wire.publish(event)
        await wire.publish(event)  # a redelivery: no second clock
        rows = await eventually(lambda: clocks(runtime))
        assert await sweep_at(runtime, AT_7 - timedelta(microseconds=1)) == 0
        assert await sweep_at(runtime, AT_7) == 1
        assert await sweep_at(runtime, AT_7 + timedelta(hours=3)) == 0
        assert summary(await wire.drain()) == [("deadline.near", "legal", 7)]
    finally:
        await runtime.stop()
    (row,) = rows
    assert (row.clock, row.due_at, row.next_threshold) == ("legal", DUE, 7)

    runtime = await start(settings, clock)  # a new process on the same database
    try:
        assert await sweep_at(runtime, AT_7 + timedelta(hours=4)) == 0
        assert await sweep_at(runtime, AT_3) == 1
        assert await sweep_at(runtime, AT_3) == 0
        assert await sweep_at(runtime, AT_1 + timedelta(hours=1)) == 1
        assert await sweep_at(runtime, DUE) == 0  # the due instant itself is on time
        assert await sweep_at(runtime, DUE + timedelta(seconds=1)) == 1
        assert await sweep_at(runtime, DUE + timedelta(days=60)) == 0
        alerts = await wire.drain()
        (row,) = await clocks(runtime)
    finally:
        await runtime.stop()
    assert summary(alerts) == [
        ("deadline.near", "legal", 3),
        ("deadline.near", "legal", 1),
        ("deadline.missed", "legal", None),
    ]
    body = alerts[0][1]
    assert body["case_id"] == str(case_id)
    assert body["tracking_code"] == "D311-2026-000101"
    assert body["department"] is None
    assert datetime.fromisoformat(body["due_at"]) == DUE
    assert (row.next_fire_at, row.next_threshold, row.last_alert) == (None, None, 0)


async def test_after_downtime_only_the_most_urgent_alert_is_sent(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    runtime = await start(settings_for(amqp_url, pg_url), FixedClock(FILED))
    try:
        late, later = uuid.uuid4(), uuid.uuid4()
        await wire.publish(received(late, "D311-2026-000201"))
        await wire.publish(received(later, "D311-2026-000202"))
        await eventually(lambda: _count(runtime, 2))
        # Down from before the first alert until after the 1-day one: one alert, the 1-day one.
        assert await sweep_at(runtime, AT_1 + timedelta(hours=2)) == 2
        first = await wire.drain()
        # Down again until well past the due date: one DeadlineMissed each.
        assert await sweep_at(runtime, DUE + timedelta(days=10)) == 2
        second = await wire.drain()
    finally:
        await runtime.stop()
    assert sorted(summary(first)) == [("deadline.near", "legal", 1)] * 2
    assert sorted(summary(second)) == [("deadline.missed", "legal", None)] * 2


async def _count(runtime: Runtime, n: int) -> bool:
    return len(await clocks(runtime)) >= n


async def test_an_accepted_return_and_the_resolution_stop_the_clocks(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    runtime = await start(settings_for(amqp_url, pg_url), FixedClock(FILED))
    case_id = uuid.uuid4()
    try:
        await wire.publish(received(case_id))
        await wire.publish(remitted(case_id))
        await eventually(lambda: _count(runtime, 2))
        assert await sweep_at(runtime, AT_7) == 1  # legal 7 (the department's 7 is on 04-06)
        await wire.publish(
            CaseReturnAccepted(
                case_id=case_id,
                tracking_code="D311-2026-000101",
                department="aseo",
                reason="No es de nuestra competencia.",
                occurred_at=AT_7 + timedelta(days=1),
            )
        )
        await eventually(lambda: _stopped(runtime, "department"))
        assert await sweep_at(runtime, AT_3) == 1  # only the legal clock is left
        await wire.publish(
            CaseResolved(
                case_id=case_id,
                tracking_code="D311-2026-000101",
                path="department",
                resolution="Se limpió el lote.",
                department="aseo",
                resolved_at=AT_3 + timedelta(hours=10),
                occurred_at=AT_3 + timedelta(hours=10),
            )
        )
        await eventually(lambda: _stopped(runtime, "legal"))
        assert await sweep_at(runtime, DUE + timedelta(days=5)) == 0
        alerts = await wire.drain()
    finally:
        await runtime.stop()
    assert summary(alerts) == [("deadline.near", "legal", 7), ("deadline.near", "legal", 3)]


async def _stopped(runtime: Runtime, clock: str) -> bool:
    return any(r.clock == clock and r.stopped_at is not None for r in await clocks(runtime))


async def test_out_of_order_stops_and_a_re_remittance(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    """A stop that arrives before its start is kept; a stale stop does not stop a later clock."""
    runtime = await start(settings_for(amqp_url, pg_url), FixedClock(FILED))
    case_id, closed_case = uuid.uuid4(), uuid.uuid4()
    returned_at = REMITTED + timedelta(days=2)
    again_at = REMITTED + timedelta(days=5)
    again_due = datetime(2026, 4, 21, 23, 59, 59, tzinfo=TZ)
    try:
        # Closed (declined) before its CaseReceived was seen.
        await wire.publish(
            CaseClosed(
                case_id=closed_case,
                tracking_code="D311-2026-000301",
                declined=True,
                reason="duplicado",
                occurred_at=FILED + timedelta(hours=1),
            )
        )
        await wire.publish(received(closed_case, "D311-2026-000301"))
        # Returned by «aseo», re-remitted to «aseo»: the re-remittance arrives before the return.
        await wire.publish(remitted(case_id, at=again_at, due=again_due))
        await wire.publish(
            CaseReturnAccepted(
                case_id=case_id,
                tracking_code="D311-2026-000101",
                department="aseo",
                reason="No es de nuestra competencia",
                occurred_at=returned_at,
            )
        )
        await wire.publish(remitted(case_id))  # the first remittance, redelivered last
        await eventually(lambda: _count(runtime, 3))
        rows = {(r.case_id, r.started_at): r for r in await clocks(runtime)}
        assert rows[(str(closed_case), FILED)].stopped_at == FILED + timedelta(hours=1)
        assert rows[(str(case_id), REMITTED)].stopped_at == returned_at
        assert rows[(str(case_id), again_at)].stopped_at is None
        assert rows[(str(closed_case), FILED)].next_fire_at is None
        assert await sweep_at(runtime, DUE + timedelta(days=30)) == 1
        alerts = await wire.drain()
    finally:
        await runtime.stop()
    assert summary(alerts) == [("deadline.missed", "department", None)]
    assert alerts[0][1]["department"] == "aseo"
    assert datetime.fromisoformat(alerts[0][1]["due_at"]) == again_due


async def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    runtime = await start(settings_for(amqp_url, pg_url), FixedClock(FILED))
    try:
        await wire.exchange.publish(
            aio_pika.Message(b"{not json", message_id="bad-1"), routing_key="case.received"
        )
        await wire.exchange.publish(
            aio_pika.Message(b'{"event_type": "CaseReceived"}', message_id="bad-2"),
            routing_key="case.received",
        )
        await wire.publish(received(uuid.uuid4()))
        await eventually(lambda: _count(runtime, 1))
        reasons = await wire.dead_letter_reasons(2)
    finally:
        await runtime.stop()
    assert reasons[0] == "el cuerpo no es JSON válido"
    assert reasons[1].startswith("no cumple el esquema del evento")


def uow_factory(engine: AsyncEngine) -> Callable[[], UnitOfWork]:
    sessionmaker = make_sessionmaker(engine)
    return lambda: UnitOfWork(sessionmaker)


async def _open_clocks(url: str, n: int) -> None:
    """``n`` legal clocks written straight through the handler's code path, no broker."""
    from services.deadlines.handlers import apply

    engine = make_engine(url)
    try:
        await upgrade(engine)
        sessionmaker = make_sessionmaker(engine)
        for i in range(n):
            async with UnitOfWork(sessionmaker) as uow:
                await apply(uow, POLICY, received(uuid.uuid4(), f"D311-2026-{i:06d}"))
    finally:
        await engine.dispose()


async def test_two_sweepers_at_once_send_each_alert_once(pg_url: str) -> None:
    clocks_n = 300
    await _open_clocks(pg_url, clocks_n)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    try:
        factories = [uow_factory(engine) for engine in engines]
        for at in (AT_7, AT_3, AT_3, AT_1 + timedelta(hours=1), DUE + timedelta(days=1)):
            results = await asyncio.gather(
                *(sweep(factory, POLICY, at, batch=25) for factory in factories)
            )
            sent = sum(r.sent for r in results)
            assert sent in (0, clocks_n)
        async with make_sessionmaker(engines[0])() as session:
            rows = list(await session.execute(select(OutboxRow.event_type, OutboxRow.body)))
    finally:
        for engine in engines:
            await engine.dispose()
    keys = [(json.loads(body)["case_id"], json.loads(body).get("days_before")) for _, body in rows]
    assert len(keys) == len(set(keys)) == clocks_n * 4
    assert sorted({days for _, days in keys}, key=lambda d: d or 0) == [None, 1, 3, 7]


async def test_two_sweepers_split_the_work(pg_url: str) -> None:
    """With SKIP LOCKED, the second sweeper takes other rows instead of waiting or repeating."""
    await _open_clocks(pg_url, 200)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    try:
        results = await asyncio.gather(
            *(sweep(uow_factory(engine), POLICY, AT_7, batch=10) for engine in engines)
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(r.sent for r in results) == 200
    assert all(r.claimed > 0 for r in results)


async def test_the_sweep_command_publishes_through_the_outbox(
    amqp_url: str, pg_url: str, wire: Wire
) -> None:
    await _open_clocks(pg_url, 3)
    env = process_env(amqp_url, pg_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        "deadlines",
        "sweep",
        "--at",
        "2026-04-09T00:00:00-05:00",
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "3 alertas de plazo próximo" in out.decode()
    alerts = await wire.drain()
    assert summary(alerts) == [("deadline.near", "legal", 3)] * 3
    # Nothing left in the outbox: the command relayed before exiting.
    engine = make_engine(pg_url)
    try:
        async with make_sessionmaker(engine)() as session:
            pending = await session.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))
            )
    finally:
        await engine.dispose()
    assert pending == 0
    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.cli",
        "deadlines",
        "sweep",
        "--at",
        "2026-04-09T00:00:00",
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode == 2
    assert "zona horaria" in err.decode()


async def test_the_service_loop_sweeps_by_itself(amqp_url: str, pg_url: str, wire: Wire) -> None:
    config = load_config(Settings().config)
    config.deadlines.sweep_interval_seconds = 0.1
    settings = settings_for(amqp_url, pg_url)
    clock = FixedClock(FILED)
    runtime = Runtime(settings, [service()], clock=clock, config=config)
    await runtime.start()
    try:
        await wire.publish(received(uuid.uuid4()))
        await eventually(lambda: _count(runtime, 1))
        clock.at = AT_3 + timedelta(hours=1)
        first = await eventually(wire.drain)
        await asyncio.sleep(0.5)  # several more loop turns at the same instant: no repeat
        again = await wire.drain()
    finally:
        await runtime.stop()
    assert summary(first) == [("deadline.near", "legal", 3)]
    assert again == []


async def test_one_process_on_sqlite(sqlite_url: str) -> None:
    """SQLite (no FOR UPDATE) serves a single process with the same once-only alerts."""
    await _open_clocks(sqlite_url, 5)
    engine = make_engine(sqlite_url)
    try:
        factory = uow_factory(engine)
        case_id = uuid.uuid4()
        async with factory() as uow:
            from services.deadlines.handlers import apply

            await apply(uow, POLICY, received(case_id, "D311-2026-000999"))
            await apply(
                uow,
                POLICY,
                CaseClosed(case_id=case_id, tracking_code="D311-2026-000999", occurred_at=AT_3),
            )
        sent = [(await sweep(factory, POLICY, at)).sent for at in (AT_7, AT_7, AT_3, AT_1)]
        async with make_sessionmaker(engine)() as session:
            outbox = await session.scalar(select(func.count()).select_from(OutboxRow))
    finally:
        await engine.dispose()
    # The closed case's clock never alerts; the five others alert once per threshold.
    assert sent == [5, 0, 5, 5]
    assert outbox == 15
