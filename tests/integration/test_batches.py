"""Deliveries waiting together are handled in one transaction (shared/consumer.py), on the
real RabbitMQ and on PostgreSQL or SQLite: a backlog gives every effect exactly once, and a
bad delivery in a batch does not take the good ones with it."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import aio_pika
import pytest
from sqlalchemy import func, select

from services.intake.app import service as intake_service
from services.router.app import service as router_service
from shared.clock import FixedClock
from shared.contract import CaseClosed, CaseEvent, CaseReceived, CaseReturnAccepted
from shared.db.models import CaseHistoryRow, CaseRow, OutboxRow
from shared.messaging import DEADLINES, INTAKE, ROUTER
from shared.runtime import Runtime
from tests.integration.test_deadlines_service import (
    DEPT_DUE,
    FILED,
    REMITTED,
    clocks,
    handlers_only,
    received,
    remitted,
)
from tests.integration.test_intake_311 import START, publish, submitted
from tests.support import drain, eventually, running, settings_for
from tests.support import publish as support_publish

pytestmark = pytest.mark.connected


def consumed(runtime: Runtime, queue: str) -> float:
    value = runtime.deps.metrics.registry.get_sample_value(
        "defensa311_messages_total", {"queue": queue, "outcome": "consumed"}
    )
    return value or 0.0


def largest_batch_seen(runtime: Runtime, queue: str) -> int:
    """The smallest histogram bucket holding every transaction: an upper bound that is > 1
    only if some transaction held several deliveries."""
    registry = runtime.deps.metrics.registry
    count = registry.get_sample_value("defensa311_batch_deliveries_count", {"queue": queue})
    for bound in (1, 2, 4, 8, 16, 32, 64, 128):
        in_bucket = registry.get_sample_value(
            "defensa311_batch_deliveries_bucket", {"queue": queue, "le": f"{float(bound)}"}
        )
        if in_bucket == count:
            return bound
    return 256


async def publish_raw(amqp_url: str, routing_key: str, *bodies: bytes) -> None:
    messages = [aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT) for b in bodies]
    await support_publish(amqp_url, routing_key, *messages)


def of_no_case(tracking_code: str) -> CaseReceived:
    """A well-formed CaseReceived of a case nobody filed."""
    return CaseReceived(
        case_id=uuid.uuid4(),
        tracking_code=tracking_code,
        channel="311",
        received_at=START,
        due_at=START + timedelta(days=42),
        occurred_at=START,
    )


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_a_backlog_of_submissions_is_filed_in_batches_each_once(
    amqp_url: str, pg_url: str, sqlite_url: str, database: str
) -> None:
    url = pg_url if database == "postgresql" else sqlite_url
    settings = settings_for(amqp_url, url, prefetch=16, batch_size=16)
    clock = FixedClock(START)
    goods = [submitted(f"311-PA-B{i:03}") for i in range(40)]
    pair = [submitted("311-PA-PAIR"), submitted("311-PA-PAIR")]  # two events, one ticket
    invalid = submitted("311-PA-BAD", description="corto")
    # The router's runtime declares the whole topology; intake's queue fills meanwhile.
    async with running(settings, [router_service()], clock=clock):
        await publish(amqp_url, *goods[:20], goods[0], pair[0], invalid, *goods[20:], pair[1])
        await publish_raw(amqp_url, "case.submitted", b"{not json")
    async with running(settings, [intake_service()], clock=clock) as intake:
        await eventually(lambda: consumed(intake, INTAKE.name) == 44, timeout=30)
        async with intake.deps.uow() as uow:
            refs = list(await uow.session.scalars(select(CaseRow.external_ref)))
            events = list(await uow.session.scalars(select(OutboxRow.event_type)))
            filed = await uow.session.scalar(
                select(func.count()).where(CaseHistoryRow.action == "file")
            )
        assert sorted(refs) == sorted({g["external_ref"] for g in goods} | {"311-PA-PAIR"})
        assert sorted(events) == ["CaseReceived"] * 41 + ["SubmissionRejected"]
        assert filed == 41
        [poison] = await drain(amqp_url, INTAKE.dlq)
        assert poison.body == b"{not json"
        assert largest_batch_seen(intake, INTAKE.name) > 1


async def test_a_bad_delivery_in_a_batch_does_not_take_the_good_ones_with_it(
    amqp_url: str, pg_url: str
) -> None:
    settings = settings_for(amqp_url, pg_url, prefetch=16, batch_size=16)
    clock = FixedClock(START)
    async with running(settings, [intake_service()], clock=clock) as intake:
        await publish(amqp_url, *(submitted(f"311-PA-R{i:03}") for i in range(60)))

        async def all_announced() -> list[OutboxRow]:
            async with intake.deps.uow() as uow:
                rows = list(
                    await uow.session.scalars(
                        select(OutboxRow).where(OutboxRow.published_at.is_not(None))
                    )
                )
            return rows if len(rows) == 60 else []

        announced = await eventually(all_announced, timeout=30)
        # Waiting in the router's queue behind the 60: a copy of one CaseReceived (a
        # redelivery) and a well-formed CaseReceived of a case nobody filed.
        unknown = of_no_case("2025-AAA-AAA-AAA")
        await publish_raw(
            amqp_url,
            "case.received",
            announced[0].body.encode(),
            unknown.model_dump_json().encode(),
        )
        async with running(settings, [router_service()], clock=clock) as router:
            await eventually(lambda: consumed(router, ROUTER.name) == 61, timeout=30)
            async with router.deps.uow() as uow:
                states = list(await uow.session.scalars(select(CaseRow.state)))
                classified = list(
                    await uow.session.scalars(
                        select(CaseHistoryRow.case_id).where(CaseHistoryRow.action == "classify")
                    )
                )
            assert len(states) == 60 and "received" not in states
            assert len(classified) == len(set(classified)) == 60  # the copy changed nothing
            [dead] = await eventually(lambda: drain(amqp_url, ROUTER.dlq))
            assert json.loads(dead.body)["case_id"] == str(unknown.case_id)
            assert dead.headers["x-defensa311-reason"] == "caso desconocido"
            assert largest_batch_seen(router, ROUTER.name) > 1


async def test_out_of_order_clock_events_in_one_batch(amqp_url: str, pg_url: str) -> None:
    """The deadlines service's look-ahead (locks and "which cases have stops") must not hide a
    stop that arrives earlier in the same batch than its start."""
    settings = settings_for(amqp_url, pg_url, prefetch=16, batch_size=16)
    case_id, closed_case = uuid.uuid4(), uuid.uuid4()
    returned_at = REMITTED + timedelta(days=2)
    again_at = REMITTED + timedelta(days=5)
    closed = CaseClosed(
        case_id=closed_case,
        tracking_code="D311-2026-000301",
        declined=True,
        reason="duplicado",
        occurred_at=FILED + timedelta(hours=1),
    )
    returned = CaseReturnAccepted(
        case_id=case_id,
        tracking_code="D311-2026-000101",
        department="aseo",
        reason="No es de nuestra competencia",
        occurred_at=returned_at,
    )
    sequence: list[CaseEvent] = [
        closed,
        received(closed_case, "D311-2026-000301"),
        remitted(case_id, at=again_at, due=DEPT_DUE + timedelta(days=5)),
        returned,
        remitted(case_id),  # the first remittance, redelivered last
        *(received(uuid.uuid4(), f"D311-2026-{i:06}") for i in range(20)),
    ]
    clock = FixedClock(FILED)
    async with running(settings, [router_service()], clock=clock):
        for event in sequence:
            await publish_raw(amqp_url, event.routing_key(), event.model_dump_json().encode())
    async with running(settings, [handlers_only()], clock=clock) as deadlines:
        await eventually(lambda: consumed(deadlines, DEADLINES.name) == len(sequence))
        rows = {(r.case_id, r.started_at): r for r in await clocks(deadlines)}
        assert len(rows) == 23
        assert rows[(str(closed_case), FILED)].stopped_at == FILED + timedelta(hours=1)
        assert rows[(str(case_id), REMITTED)].stopped_at == returned_at
        assert rows[(str(case_id), again_at)].stopped_at is None
        assert largest_batch_seen(deadlines, DEADLINES.name) > 1


async def test_a_dead_letter_that_cannot_be_published_keeps_its_message(
    amqp_url: str, pg_url: str
) -> None:
    """With its DLQ gone (deleted by hand), a poison delivery is not acked into nothing: it
    goes back to the queue and reaches the DLQ once the DLQ is there again."""
    settings = settings_for(amqp_url, pg_url)
    unknown = of_no_case("2025-BBB-BBB-BBB")
    async with running(settings, [router_service()], clock=FixedClock(START)) as router:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(ROUTER.dlq)
            await publish_raw(amqp_url, "case.received", unknown.model_dump_json().encode())
            await asyncio.sleep(2.5)  # two or three tries while the DLQ is missing
            outcomes = router.deps.metrics.registry
            assert not outcomes.get_sample_value(
                "defensa311_messages_total", {"queue": ROUTER.name, "outcome": "dead_lettered"}
            )
            await channel.declare_queue(
                ROUTER.dlq, durable=True, arguments={"x-queue-type": "quorum"}
            )
        [dead] = await eventually(lambda: drain(amqp_url, ROUTER.dlq), timeout=20)
        assert json.loads(dead.body)["case_id"] == str(unknown.case_id)
        assert dead.headers["x-defensa311-reason"] == "caso desconocido"
        assert consumed(router, ROUTER.name) == 0
