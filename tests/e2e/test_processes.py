"""The skeleton end to end: four services as separate OS processes on PostgreSQL,
driven by a plain AMQP client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from tests.support import ServiceProcess, eventually, free_port, process_env

pytestmark = pytest.mark.connected

SERVICES = ("intake", "router", "deadlines", "notifier")


@pytest.fixture
def processes(amqp_url: str, pg_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    port = free_port()
    env = process_env(
        amqp_url, pg_url, DEFENSA311_HTTP_PORT=str(port), DEFENSA311_SMTP_PORT=str(free_port())
    )
    procs = {name: ServiceProcess(name, env, tmp_path / f"{name}.log") for name in SERVICES}
    # intake first: it migrates the empty database; the others then find it migrated (and
    # would wait on the advisory lock if they raced).
    for proc in procs.values():
        proc.start()
    try:
        yield {"procs": procs, "base": f"http://127.0.0.1:{port}"}
    finally:
        for proc in procs.values():
            proc.stop()


async def test_a_case_flows_through_four_processes(processes, amqp_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: dict[str, ServiceProcess] = processes["procs"]
    base: str = processes["base"]

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(ready, timeout=90)
        await eventually(lambda: all(p.started() for p in procs.values()), timeout=90)
    except AssertionError as exc:
        logs = {n: p.log()[-3000:] for n, p in procs.items()}
        raise AssertionError(f"services did not start: {logs}") from exc

    external_ref = f"311-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("defensa311")
        body = {
            "event_id": str(uuid.uuid4()),
            "event_type": "CaseSubmitted",
            "occurred_at": "2026-11-24T10:00:00-05:00",
            "schema_version": 1,
            "external_ref": external_ref,
            "description": "Denuncio una construcción sin permiso que bloquea la acera",
            "citizen": {"full_name": "Ana Pérez", "id_number": "8-123-4567"},
            "notify": {"email": "ana@example.com"},
        }
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(), delivery_mode=2, content_type="application/json"
            ),
            routing_key="case.submitted",
        )
        platform = await channel.declare_queue("defensa311.platform311", passive=True)
        events: list[dict[str, object]] = []

        async def classified() -> bool:
            while (message := await platform.get(fail=False, no_ack=True)) is not None:
                events.append(json.loads(message.body))
            return "CaseClassified" in {e["event_type"] for e in events}

        await eventually(classified, timeout=60)
    received = next(e for e in events if e["event_type"] == "CaseReceived")
    assert received["external_ref"] == external_ref
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{base}/api/v1/cases/{received['tracking_code']}")
    assert answer.status_code == 200
    case = answer.json()
    assert case["state"] in ("classified", "remitted", "inspection")
    assert "Ana" not in answer.text and "8-123-4567" not in answer.text
    assert all(p.alive() for p in procs.values()), {n: p.log()[-2000:] for n, p in procs.items()}
