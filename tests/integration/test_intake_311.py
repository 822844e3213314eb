"""The 311 path: CaseSubmitted over AMQP, against the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest
from sqlalchemy import select

from services.intake.app import service as intake_service
from shared.clock import FixedClock
from shared.db.models import CaseRow, OutboxRow
from shared.messaging import INTAKE, PLATFORM311
from shared.runtime import Runtime
from tests.support import asyncpg_dsn, drain, eventually, running, settings_for
from tests.support import publish as support_publish

pytestmark = pytest.mark.connected

START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
NAME = "Rogelio Batista Caballero"
CEDULA = "PE-12-3456"
EMAIL = "rogelio.batista@example.com"
PHONE = "+50762223333"


def submitted(external_ref: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseSubmitted",
        "occurred_at": START.isoformat(),
        "schema_version": 1,
        "external_ref": external_ref,
        "kind": "denuncia",
        "description": "Queman basura todas las noches en el lote baldío de la esquina.",
        "citizen": {"full_name": NAME, "id_number": CEDULA, "phone": PHONE},
        "notify": {"email": EMAIL},
    }
    body.update(overrides)
    return body


async def publish(amqp_url: str, *bodies: dict[str, Any]) -> None:
    messages = [
        aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            message_id=body.get("event_id"),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        for body in bodies
    ]
    await support_publish(amqp_url, "case.submitted", *messages)


async def outbox(runtime: Runtime) -> list[OutboxRow]:
    async with runtime.deps.uow() as uow:
        return list(await uow.session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def cases(runtime: Runtime) -> list[CaseRow]:
    async with runtime.deps.uow() as uow:
        return list(await uow.session.scalars(select(CaseRow)))


def consumed(*runtimes: Runtime) -> float:
    return sum(
        r.deps.metrics.registry.get_sample_value(
            "defensa311_messages_total", {"queue": INTAKE.name, "outcome": "consumed"}
        )
        or 0.0
        for r in runtimes
    )


@pytest.fixture
async def intake(amqp_url: str, pg_url: str) -> AsyncIterator[Runtime]:
    async with running(
        settings_for(amqp_url, pg_url), [intake_service()], clock=FixedClock(START)
    ) as runtime:
        yield runtime


async def test_a_valid_submission_becomes_a_case(intake: Runtime, amqp_url: str) -> None:
    body = submitted("311-PA-1001")
    await publish(amqp_url, body)
    [case] = await eventually(lambda: cases(intake))
    assert case.channel == "311" and case.external_ref == "311-PA-1001"
    assert case.state == "received" and case.received_at == START
    assert case.citizen == {
        "full_name": NAME,
        "id_type": "cedula",
        "id_number": CEDULA,
        "phone": PHONE,
    }
    [row] = await outbox(intake)
    assert row.event_type == "CaseReceived"
    event = json.loads(row.body)
    assert event["external_ref"] == "311-PA-1001" and event["tracking_code"] == case.tracking_code
    for secret in (NAME, CEDULA, EMAIL, PHONE, "3456"):
        assert secret not in row.body  # 311 follows case.#: no personal data on the wire


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"citizen": {"full_name": NAME}}, "citizen.id_number", "required_for_kind"),
        ({"citizen": {"full_name": NAME, "id_number": "8-12345-1"}}, "citizen.id_number", "cedula"),
        ({"kind": "queja", "notify": None}, "notify", "notification_address_required"),
        ({"description": "corto"}, "description", "text_length"),
        ({"notify": {"email": "no-es-correo"}}, "notify.email", "email"),
        ({"location": {"lat": 19.4, "lon": -99.1}}, "location", "in_panama"),
        ({"kind": "felicitacion"}, "kind", "literal_error"),
        ({"external_ref": " "}, "external_ref", "text_length"),
    ],
)
async def test_an_invalid_submission_is_answered_and_nothing_is_stored(
    intake: Runtime, amqp_url: str, overrides: dict[str, Any], field: str, rule: str
) -> None:
    body = {**submitted("311-PA-2002"), **overrides}
    await publish(amqp_url, body)
    [row] = await eventually(lambda: outbox(intake))
    assert row.event_type == "SubmissionRejected" and row.routing_key == "case.rejected"
    rejected = json.loads(row.body)
    assert rejected["refused_event_id"] == body["event_id"]
    assert {"field": field, "rule": rule} in [
        {"field": r["field"], "rule": r["rule"]} for r in rejected["reasons"]
    ]
    assert all(r["message"] for r in rejected["reasons"])
    assert await cases(intake) == []


async def test_a_ticket_seen_before_returns_the_existing_case(
    intake: Runtime, amqp_url: str
) -> None:
    first = submitted("311-PA-3003")
    await publish(amqp_url, first)
    await eventually(lambda: consumed(intake) == 1)
    # A second message for the same ticket, and a redelivered copy of the first.
    await publish(amqp_url, submitted("311-PA-3003"), first)
    await eventually(lambda: consumed(intake) == 3)
    assert len(await cases(intake)) == 1
    assert [r.event_type for r in await outbox(intake)] == ["CaseReceived"]


@pytest.mark.parametrize("same_event", [False, True], ids=["two-messages", "one-message-twice"])
async def test_two_copies_at_once_on_two_instances_make_one_case(
    amqp_url: str, pg_url: str, same_event: bool
) -> None:
    settings = settings_for(amqp_url, pg_url)
    clock = FixedClock(START)
    async with (
        running(settings, [intake_service()], clock=clock) as one,
        running(settings, [intake_service()], clock=clock) as two,
    ):
        ref = "311-PA-4004"
        first = submitted(ref)
        second = dict(first) if same_event else submitted(ref)
        # Force the race: an uncommitted row holding the ticket makes both instances pass
        # their "seen before?" look-up and then wait on the unique index together.
        async with one.deps.sessionmaker() as blocker:
            await blocker.begin()
            blocker.add(
                CaseRow(
                    id=str(uuid.uuid4()), tracking_code="BLOCKER", external_ref=ref,
                    channel="311", description="x", anonymous=False, state="received",
                    received_at=START, due_at=START, return_count=0, flagged=False,
                    updated_at=START,
                )
            )  # fmt: skip
            await blocker.flush()
            await publish(amqp_url, first, second)
            database = pg_url.rsplit("/", 1)[1]
            await eventually(lambda: lock_waiters(pg_url, database, 2), timeout=20)
            await blocker.rollback()

        await eventually(lambda: consumed(one, two) == 2)
        assert consumed(one) == 1 and consumed(two) == 1  # each instance took one copy
        [case] = await cases(one)
        assert case.external_ref == ref and case.tracking_code != "BLOCKER"
        rows = await outbox(one)
        assert [r.event_type for r in rows] == ["CaseReceived"]
        # Published once, and nothing dead-lettered.
        # Published once, and nothing dead-lettered.
        delivered: list[Any] = []

        async def on_the_wire() -> bool:
            delivered.extend(await drain(amqp_url, PLATFORM311.name))
            return len(delivered) >= 1

        await eventually(on_the_wire)
        received = [m for m in delivered if m.routing_key == "case.received"]
        assert [m.message_id for m in received] == [rows[0].event_id]
        assert len(delivered) == 1
        assert await drain(amqp_url, INTAKE.dlq) == []
        assert await drain(amqp_url, PLATFORM311.name) == []


async def lock_waiters(pg_url: str, database: str, n: int) -> bool:
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            database,
        )
    finally:
        await conn.close()
    return bool(waiting >= n)
