"""No personal data in the logs (DESIGN §5), checked on the real services.

The four services run as their own OS processes (``defensa311 run <svc>``) on PostgreSQL and
the real broker, logging JSON as in production. A known test citizen files through the 311
AMQP door and through the HTTP API (and has a submission refused on each door); the flow runs
until the router has classified the cases and the notifier has e-mailed the receipts. Then
every line every process wrote is scanned for the citizen's cédula, phone, e-mail, addresses
and name, in every spelling they could take.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from tests.support import (
    ServiceProcess,
    asyncpg_dsn,
    eventually,
    free_port,
    process_env,
)

pytestmark = pytest.mark.connected

STAFF_TOKEN = "l0g-scan-staff-token-0123456789"
NAME = "Eustaquia Villarreal Cedeño"
CEDULA = "3-704-1289"
PHONE = "6789-0123"
EMAIL = "eustaquia.villarreal@example.org"
NOTIFY_ADDRESS = "Calle 13 Sur, Casa 47, Barrio Cristóbal"
PLACE = "Vía Boyd Roosevelt, Sabanitas, frente al Súper 99"

# Every spelling a careless log line could carry.
FORBIDDEN = [
    CEDULA, "37041289", "704-1289", "7041289",
    PHONE, "67890123", "+50767890123", "+507 6789",
    EMAIL, "eustaquia.villarreal", "eustaquia", "villarreal",
    NOTIFY_ADDRESS, "Casa 47", "Barrio Cristóbal", "Barrio Crist\\u00f3bal",
    PLACE, "Sabanitas", "Boyd Roosevelt",
    NAME,
]  # fmt: skip


def citizen_fields() -> dict[str, Any]:
    return {
        "kind": "queja",
        "category": "Aseo",
        "description": "No recogen la basura de la calle desde hace dos semanas, hay malos olores.",
        "citizen": {"full_name": NAME, "id_number": CEDULA, "phone": PHONE, "email": EMAIL},
        "notify": {"email": EMAIL, "phone": PHONE, "address": NOTIFY_ADDRESS},
        "location": {"province": "Colón", "district": "Colón", "address": PLACE},
    }


def case_submitted(**overrides: Any) -> dict[str, Any]:
    body = citizen_fields()
    body.update(
        event_id=str(uuid.uuid4()),
        event_type="CaseSubmitted",
        occurred_at="2026-03-03T10:00:00-05:00",
        schema_version=1,
        external_ref=f"311-{uuid.uuid4().hex[:8]}",
    )
    body.update(overrides)
    return body


async def publish_311(amqp_url: str, body: bytes) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("defensa311", ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            "case.submitted",
            mandatory=True,
        )
    finally:
        await connection.close()


async def test_no_personal_data_in_any_log_line(
    amqp_url: str, pg_url: str, smtp_port: int, tmp_path: Path
) -> None:
    http_port = free_port()
    env = process_env(
        amqp_url,
        pg_url,
        DEFENSA311_API_TOKENS=f"staff={STAFF_TOKEN}",
        DEFENSA311_HTTP_PORT=str(http_port),
        DEFENSA311_SMTP_PORT=str(smtp_port),
        DEFENSA311_LOG_LEVEL="INFO",
        DEFENSA311_LOG_JSON="true",
    )
    services = [
        ServiceProcess(name, env, tmp_path / f"{name}.log")
        for name in ("intake", "router", "deadlines", "notifier")
    ]
    # One process first: it migrates the database, so the others do not race to.
    services[0].start()
    try:
        await eventually(services[0].started, timeout=60)
        for service in services[1:]:
            service.start()
        for service in services[1:]:
            await eventually(service.started, timeout=60)

        # The 311 door: one case filed, one refused (a bad e-mail beside good personal data).
        external_ref = f"311-{uuid.uuid4().hex[:8]}"
        await publish_311(amqp_url, json.dumps(case_submitted(external_ref=external_ref)).encode())
        bad = case_submitted()
        bad["notify"] = {"email": "eustaquia.villarreal@@example", "address": NOTIFY_ADDRESS}
        await publish_311(amqp_url, json.dumps(bad).encode())

        # The HTTP door: one case filed on the web, one refused, and staff reading it all.
        base = f"http://127.0.0.1:{http_port}"
        staff = {"Authorization": f"Bearer {STAFF_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            filed = await client.post("/api/v1/cases", json={"channel": "web", **citizen_fields()})
            assert filed.status_code == 201, filed.text
            web_code = filed.json()["tracking_code"]
            refused = {"channel": "web", **citizen_fields()}
            refused["citizen"] = {**refused["citizen"], "phone": "12-" + PHONE}
            assert (await client.post("/api/v1/cases", json=refused)).status_code == 422
            full = await client.get(f"/api/v1/cases/{web_code}", headers=staff)
            assert full.status_code == 200
            assert CEDULA in full.text  # staff see it: the point is that logs do not
            # Staff search by every personal detail, on the API and in the console, a refused
            # one too: the words typed are personal data and reach no log line.
            for words in (NAME, CEDULA, PHONE, EMAIL, "Sabanitas", "Villarreal Cedeño"):
                found = await client.get("/api/v1/cases", params={"q": words}, headers=staff)
                assert found.status_code == 200 and web_code in found.text, words
            refused_search = await client.get(
                "/api/v1/cases", params={"q": "eustaquia " * 30}, headers=staff
            )
            assert refused_search.status_code == 422
            signed = await client.post("/consola/entrar", data={"token": STAFF_TOKEN})
            assert signed.status_code == 303
            page = await client.get("/consola/buscar", params={"q": "Villarreal"})
            assert page.status_code == 200 and web_code in page.text

        # The flow runs: both cases classified by the router, both receipts e-mailed.
        async def flowed() -> list[asyncpg.Record] | None:
            conn = await asyncpg.connect(asyncpg_dsn(pg_url))
            try:
                cases = await conn.fetch("SELECT id, state, channel FROM cases")
                sent = await conn.fetchval(
                    "SELECT count(DISTINCT case_id) FROM notifications"
                    " WHERE channel = 'email' AND status = 'sent'"
                )
            finally:
                await conn.close()
            ok = (
                {c["channel"] for c in cases} == {"311", "web"}
                and all(c["state"] != "received" for c in cases)
                and sent == 2
            )
            return cases if ok else None

        try:
            cases = await eventually(flowed, timeout=60)
        except AssertionError:
            for service in services:
                print(service.service, service.log()[-3000:])
            raise
        assert len(cases) == 2
    finally:
        for service in services:
            service.stop()

    lines: list[tuple[str, str]] = []
    printed: list[tuple[str, str]] = []
    for service in services:
        lines += [(service.service, line) for line in service.log().splitlines() if line.strip()]
        printed += [(service.service, line) for line in service.printed().splitlines()]
    assert len(lines) > 20, "the services logged (almost) nothing: the scan would prove nothing"

    leaks = [
        (service, word, line)
        for service, line in lines + printed
        for word in FORBIDDEN
        if word.lower() in _searchable(line).lower()
    ]
    assert not leaks, "personal data in the logs:\n" + "\n".join(
        f"{service}: {word!r} in {line}" for service, word, line in leaks[:20]
    )

    # One JSON object a log line (the start banner goes to stdout), and the events that matter
    # carry the case's ids.
    records = [(service, json.loads(line)) for service, line in lines]
    assert all(isinstance(record, dict) and "msg" in record for _, record in records)
    filed_lines = [r for s, r in records if s == "intake" and r["msg"] == "case filed"]
    assert len(filed_lines) == 2
    assert all(r.get("case_id") and r.get("tracking_code") for r in filed_lines)
    assert web_code in {r["tracking_code"] for r in filed_lines}


def _searchable(line: str) -> str:
    """The line as written and, if it is JSON, with its escapes decoded."""
    try:
        decoded = json.dumps(json.loads(line), ensure_ascii=False)
    except ValueError:
        return line
    return line + "\n" + decoded
