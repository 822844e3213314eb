"""``/metrics``, rate limits and the body size limit of intake's HTTP app (issue 10),
against the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from services.deadlines.app import service as deadlines_service
from services.intake.app import service as intake_service
from services.intake.http import create_app
from services.intake.observability import HttpLimits, TokenBuckets
from services.notifier.app import service as notifier_service
from shared.clock import FixedClock
from shared.db.models import CaseRow
from shared.db.schema import metadata
from shared.messaging import INTAKE
from shared.runtime import Runtime, ServiceDefinition
from tests.support import eventually, running, settings_for

pytestmark = pytest.mark.connected

START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)  # a Monday
STAFF = {"Authorization": "Bearer m3trics-staff"}
LIMITS = HttpLimits(
    rate_limit_lookup_burst=3,
    rate_limit_lookup_per_minute=1,
    rate_limit_filing_burst=2,
    rate_limit_filing_per_minute=1,
    max_body_bytes=4096,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def filing(channel: str = "web") -> dict[str, Any]:
    return {
        "channel": channel,
        "kind": "queja",
        "category": "Aseo",
        "description": "La basura no se recoge en la calle desde hace dos semanas.",
        "citizen": {"full_name": "Rogelio Batista", "id_number": "4-712-1953"},
        "notify": {"email": "rogelio.batista@example.com"},
    }


def submission311() -> dict[str, Any]:
    body = {k: v for k, v in filing().items() if k != "channel"}
    body.update(
        event_id=str(uuid.uuid4()),
        event_type="CaseSubmitted",
        occurred_at=START.isoformat(),
        schema_version=1,
        external_ref=f"311-{uuid.uuid4().hex[:8]}",
    )
    return body


@dataclass
class Intake:
    client: httpx.AsyncClient
    runtime: Runtime
    clock: FixedClock
    amqp_url: str
    app: Any

    async def samples(self) -> Samples:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        found: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return found

    async def publish(self, body: bytes) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("defensa311")
            await exchange.publish(
                aio_pika.Message(body, content_type="application/json", message_id=None),
                "case.submitted",
                mandatory=True,
            )
        finally:
            await connection.close()

    async def count_cases(self) -> int:
        async with self.runtime.deps.uow() as uow:
            return int(await uow.session.scalar(select(func.count()).select_from(CaseRow)) or 0)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def intake(amqp_url: str, pg_url: str) -> AsyncIterator[Intake]:
    clock = FixedClock(START)
    settings = settings_for(amqp_url, pg_url, api_tokens="staff=m3trics-staff")
    # One process with intake and the gauges of the deadlines and notifier services (as in
    # ``run all``): each service reports its own tables.
    gauges_of = [deadlines_service(), notifier_service()]
    services = [intake_service(), *(ServiceDefinition(s.name, gauges=s.gauges) for s in gauges_of)]
    async with running(settings, services, clock=clock) as runtime:
        app = create_app(runtime.deps, limits=LIMITS)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Intake(client, runtime, clock, amqp_url, app)


async def test_metrics_count_messages_cases_and_requests(intake: Intake) -> None:
    # A 311 submission is consumed; a body that is not JSON is dead-lettered.
    await intake.publish(json.dumps(submission311()).encode())
    await intake.publish(b"esto no es JSON")

    async def consumed_and_dead_lettered() -> Samples | None:
        samples = await intake.samples()
        done = (
            value(samples, "defensa311_messages_total", queue=INTAKE.name, outcome="consumed") == 1
            and value(
                samples, "defensa311_messages_total", queue=INTAKE.name, outcome="dead_lettered"
            )
            == 1
        )
        return samples if done else None

    await eventually(consumed_and_dead_lettered)

    filed = await intake.client.post("/api/v1/cases", json=filing())
    assert filed.status_code == 201, filed.text
    code = filed.json()["tracking_code"]
    assert (await intake.client.get(f"/api/v1/cases/{code}")).status_code == 200
    assert (await intake.client.get("/no-existe/123")).status_code == 404

    samples = await intake.samples()
    assert value(samples, "defensa311_cases", state="received") == 2
    assert value(samples, "defensa311_cases", state="resolved") == 0
    assert value(samples, "defensa311_cases_overdue") == 0
    assert value(samples, "defensa311_metrics_database_up") == 1
    http = "defensa311_http_requests_total"
    assert value(samples, http, route="/api/v1/cases", method="POST", status="201") == 1
    assert (
        value(samples, http, route="/api/v1/cases/{tracking_code}", method="GET", status="200") == 1
    )
    assert value(samples, http, route="unmatched", method="GET", status="404") == 1
    # Raw paths never become labels (a tracking code is not a route).
    assert not any(code in str(labels) for _, labels in samples)
    # No deadlines service has written a clock: no clock figures, rather than false zeros.
    assert not any(name.startswith("defensa311_clocks_") for name, _ in samples)

    # The deadlines and notifier services' tables, as those services write them.
    tables = metadata().tables
    async with intake.runtime.deps.engine.begin() as conn:
        case_id = str(await conn.scalar(select(CaseRow.id).where(CaseRow.tracking_code == code)))
        clocks = tables["deadline_clocks"]
        await conn.execute(
            insert(clocks),
            [
                _clock(case_id, code, "legal", due=START + timedelta(days=40)),
                _clock(case_id, code, "department", due=START + timedelta(days=10)),
                _clock(case_id, code, "legal", due=START + timedelta(days=5), stopped=True),
            ],
        )
        await conn.execute(
            insert(tables["notifications"]),
            [
                _notification(case_id, code, "email", "sent"),
                _notification(case_id, code, "email", "sent"),
                _notification(case_id, code, "webhook", "failed"),
            ],
        )
    intake.clock.advance(timedelta(days=20))  # the department clock is now overdue
    samples = await intake.samples()
    assert value(samples, "defensa311_clocks_open", clock="legal") == 1
    assert value(samples, "defensa311_clocks_open", clock="department") == 1
    assert value(samples, "defensa311_clocks_overdue", clock="department") == 1
    assert value(samples, "defensa311_clocks_overdue", clock="legal") == 0
    logged = "defensa311_notifications_logged"
    assert value(samples, logged, channel="email", status="sent") == 2
    assert value(samples, logged, channel="webhook", status="failed") == 1
    # 30 business days from filing have passed after 60 calendar days.
    intake.clock.advance(timedelta(days=40))
    samples = await intake.samples()
    assert value(samples, "defensa311_cases_overdue") == 2
    assert value(samples, "defensa311_clocks_overdue", clock="legal") == 1


def _clock(case_id: str, code: str, clock: str, *, due: datetime, stopped: bool = False) -> dict:  # type: ignore[type-arg]
    return {
        "start_event_id": str(uuid.uuid4()),
        "case_id": case_id,
        "tracking_code": code,
        "clock": clock,
        "department": "aseo" if clock == "department" else None,
        "started_at": START,
        "due_at": due,
        "stopped_at": START + timedelta(days=1) if stopped else None,
        "next_fire_at": None,
        "next_threshold": None,
        "last_alert": None,
    }


def _notification(case_id: str, code: str, channel: str, status: str) -> dict:  # type: ignore[type-arg]
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseReceived",
        "case_id": case_id,
        "tracking_code": code,
        "template": "case_received",
        "channel": channel,
        "recipient": f"{uuid.uuid4().hex[:6]}@example.com",
        "recipient_masked": "r***@example.com",
        "status": status,
        "attempts": 1,
        "next_attempt_at": None,
        "last_error": None,
        "context": {},
        "created_at": START,
        "sent_at": START if status == "sent" else None,
    }


async def test_public_lookups_and_filings_are_rate_limited_per_client(intake: Intake) -> None:
    codes = []
    for _ in range(2):
        response = await intake.client.post("/api/v1/cases", json=filing())
        assert response.status_code == 201, response.text
        codes.append(response.json()["tracking_code"])
    refused = await intake.client.post("/api/v1/cases", json=filing())
    assert refused.status_code == 429
    assert "demasiadas solicitudes" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert await intake.count_cases() == 2
    # Staff filing at the desk are not the public.
    desk = await intake.client.post("/api/v1/cases", json=filing("presencial"), headers=STAFF)
    assert desk.status_code == 201, desk.text
    # A wrong token is no way around the limit.
    bogus = {"Authorization": "Bearer adivinado"}
    assert (
        await intake.client.post("/api/v1/cases", json=filing(), headers=bogus)
    ).status_code == 429

    # Lookups: the API and the tracking pages share one budget per client.
    for _ in range(3):
        assert (await intake.client.get(f"/api/v1/cases/{codes[0]}")).status_code == 200
    blocked = await intake.client.get(f"/api/v1/cases/{codes[0]}")
    assert blocked.status_code == 429
    assert blocked.headers["Retry-After"].isdigit()
    assert (await intake.client.get(f"/seguimiento/{codes[1]}")).status_code == 429
    assert (await intake.client.get(f"/api/v1/cases/{codes[0]}", headers=STAFF)).status_code == 200
    # Another client is not punished for the first one.
    other = httpx.ASGITransport(app=intake.app, client=("198.51.100.23", 50000))
    async with httpx.AsyncClient(transport=other, base_url="http://intake") as client:
        assert (await client.get(f"/api/v1/cases/{codes[0]}")).status_code == 200

    samples = await intake.samples()
    http = "defensa311_http_requests_total"
    assert value(samples, http, route="/api/v1/cases", method="POST", status="429") == 2
    assert (
        value(samples, http, route="/api/v1/cases/{tracking_code}", method="GET", status="429") == 1
    )


async def test_oversized_bodies_are_refused_with_413(intake: Intake) -> None:
    big = filing()
    big["description"] = "x" * 3990 + " basura"
    big["notify"] = {"email": "rogelio.batista@example.com", "address": "y" * 500}
    declared = await intake.client.post("/api/v1/cases", json=big)
    assert declared.status_code == 413
    assert "demasiado grande" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    # Without Content-Length the body is counted as it is read.
    chunked = await intake.client.post(
        "/api/v1/cases", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413
    assert "demasiado grande" in chunked.json()["detail"]
    assert await intake.count_cases() == 0
    samples = await intake.samples()
    assert (
        value(samples, "defensa311_http_requests_total", route="/api/v1/cases", method="POST",
              status="413")
        == 2
    )  # fmt: skip


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(2, 6.0, max_keys=2, monotonic=lambda: now[0])  # one token / 10 s
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(10.0)
    now[0] += 5
    assert buckets.take("a") == pytest.approx(5.0)  # half a token back: still refused
    now[0] += 5
    assert buckets.take("a") == 0
    # Beyond max_keys the least recently seen client is forgotten (and starts full).
    assert buckets.take("b") == 0 and buckets.take("c") == 0
    assert buckets.take("a") == 0 and buckets.take("a") == 0
