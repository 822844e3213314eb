"""A department's least-privilege account tries to fake events of other kinds (issue: broker
messages that cannot be faked). Each forgery has no effect on the case, its clocks or its
notifications, and lands in a DLQ with its reason.

The accounts come from ``broker setup`` in a vhost of this module's own (RabbitMQ users are
global to the node, so they carry a prefix of this run's own and are deleted afterwards). The
router and the consumers of the deadlines and notifier services run in-process; the notifier's
delivery loop does not, so "no e-mail" means "nothing in the notification log".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import aiormq
import pytest
from sqlalchemy import select

from services.deadlines.app import service as deadlines_service
from services.deadlines.handlers import policy_for
from services.deadlines.models import ClockRow
from services.deadlines.sweep import sweep
from services.notifier.app import service as notifier_service
from services.notifier.models import NotificationRow
from services.router.app import service as router_service
from shared.cases import file_case, get_case, perform
from shared.clock import FixedClock
from shared.contract import (
    CaseRemitted,
    CaseResolved,
    DepartmentResponded,
    Event,
    Submission,
)
from shared.runtime import Runtime, ServiceDefinition
from tests.support import ROOT, drain, eventually, fresh_vhost, rabbitmqctl, running, settings_for

pytestmark = pytest.mark.connected

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
CONFIG = """
[institution]
supervisor_email = "supervision@alcaldia.example"

[[departments]]
code = "obras"
name = "Dirección de Obras y Construcciones"
email = "obras@alcaldia.example"

[[departments]]
code = "salud"
name = "Dirección de Salud"
email = "salud@alcaldia.example"
"""


@dataclass(frozen=True)
class Accounts:
    amqp_url: str  # the services' own account (the test broker's administrator)
    prefix: str
    config: Path
    passwords: dict[str, str]

    def url_of(self, code: str) -> str:
        user = f"{self.prefix}dept-{code}"
        parts = urlsplit(self.amqp_url)
        credentials = f"{quote(user, safe='')}:{quote(self.passwords[user], safe='')}"
        return f"amqp://{credentials}@{parts.hostname}:{parts.port or 5672}{parts.path}"


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    config = tmp_path_factory.mktemp("forgeries") / "defensa311.toml"
    config.write_text(CONFIG, encoding="utf-8")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFENSA311_")}
    env["DEFENSA311_CONFIG"] = str(config)
    with fresh_vhost() as amqp_url:
        env["DEFENSA311_AMQP_URL"] = amqp_url
        try:
            result = subprocess.run(
                [sys.executable, "-m", "shared.broker_cli", "broker", "setup",
                 "--print-credentials", "--account-prefix", prefix],
                env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            passwords = json.loads(result.stdout.strip().splitlines()[-1])
            yield Accounts(amqp_url, prefix, config, passwords)
        finally:
            for row in json.loads(rabbitmqctl("list_users", "--formatter", "json") or "[]"):
                if row["user"].startswith(prefix):
                    rabbitmqctl("delete_user", row["user"])


def consumers_only(service: ServiceDefinition) -> ServiceDefinition:
    """A service's consumers without its loops: the test sweeps, nothing is sent."""
    return ServiceDefinition(name=service.name, subscriptions=service.subscriptions)


@pytest.fixture
async def system(accounts: Accounts, pg_url: str) -> AsyncIterator[Runtime]:
    settings = settings_for(
        accounts.amqp_url, pg_url, config=accounts.config, broker_account_prefix=accounts.prefix
    )
    services = [router_service(), consumers_only(deadlines_service())]
    services.append(consumers_only(notifier_service()))
    async with running(settings, services, FixedClock(NOW)) as runtime:
        yield runtime


async def remitted_case(runtime: Runtime, department: str) -> dict[str, Any]:
    """A denuncia filed, classified and remitted by staff; its clocks running."""
    deps = runtime.deps
    submission = Submission.model_validate(
        {
            "kind": "denuncia",
            "description": "Una obra sin permiso tapa la acera de la calle 50 desde hace un mes.",
            "citizen": {"full_name": "María Pérez", "id_number": "8-123-4567"},
            "notify": {"email": "maria.perez@example.com"},
        }
    )
    async with deps.uow() as uow:
        case, _ = await file_case(
            uow, deps.cases, submission, channel="presencial", actor="staff", now=NOW
        )
        await perform(
            uow, deps.cases, case, "classify", {"kind": "denuncia"}, actor="staff", now=NOW
        )
        await perform(
            uow, deps.cases, case, "remit", {"department": department}, actor="staff", now=NOW
        )
        facts = {"case_id": case.id, "tracking_code": case.tracking_code}

    async def clocks_started() -> bool:
        return len(await clocks_of(runtime, facts["case_id"])) == 2

    await eventually(clocks_started)
    return facts


async def clocks_of(runtime: Runtime, case_id: str) -> list[ClockRow]:
    async with runtime.deps.uow() as uow:
        return list(await uow.session.scalars(select(ClockRow).where(ClockRow.case_id == case_id)))


async def notifications_of(runtime: Runtime, case_id: str) -> list[NotificationRow]:
    async with runtime.deps.uow() as uow:
        query = select(NotificationRow).where(NotificationRow.case_id == case_id)
        return list(await uow.session.scalars(query))


async def publish_as(url: str, event: Event, routing_key: str, user_id: str | None) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("defensa311", ensure=False)
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(event.event_id),
                user_id=user_id,
            ),
            routing_key,
            mandatory=True,
        )
    finally:
        await connection.close()


async def dead_letter_reason(amqp_url: str, queue: str, event: Event) -> str:
    """The reason the consumer of ``queue`` gave for dead-lettering ``event``."""
    found: dict[str, str] = {}

    async def dead() -> bool:
        for message in await drain(amqp_url, f"{queue}.dlq"):
            found[str(message.message_id)] = str((message.headers or {})["x-defensa311-reason"])
        return str(event.event_id) in found

    await eventually(dead)
    return found[str(event.event_id)]


async def settled(runtime: Runtime, case_id: str) -> str:
    async with runtime.deps.uow() as uow:
        return (await get_case(uow, case_id=case_id)).state


async def test_a_resolution_forged_on_a_departments_key_stops_no_clock(
    accounts: Accounts, system: Runtime
) -> None:
    case = await remitted_case(system, "salud")
    forged = CaseResolved(
        **case,
        path="department",
        resolution="Resuelto.",
        department="salud",
        resolved_at=NOW,
        occurred_at=NOW,
    )
    obras = f"{accounts.prefix}dept-obras"
    await publish_as(accounts.url_of("obras"), forged, "case.responded.obras", user_id=obras)

    reason = await dead_letter_reason(accounts.amqp_url, "defensa311.router", forged)
    assert reason == (
        "event_type 'CaseResolved' no admitido en 'case.responded.obras' "
        "(admite: DepartmentResponded)"
    )
    assert await settled(system, case["case_id"]) == "remitted"
    assert [c.stopped_at for c in await clocks_of(system, case["case_id"])] == [None, None]


async def test_a_remittance_forged_on_a_departments_key_alerts_nobody(
    accounts: Accounts, system: Runtime
) -> None:
    case = await remitted_case(system, "obras")
    forged = CaseRemitted(
        **case,
        department="salud",
        kind="denuncia",
        category=None,
        remitted_at=NOW - timedelta(days=60),
        due_at=NOW - timedelta(days=1),  # already missed: it would alert at the next sweep
    )
    obras = f"{accounts.prefix}dept-obras"
    await publish_as(accounts.url_of("obras"), forged, "case.returned.obras", user_id=obras)

    reason = await dead_letter_reason(accounts.amqp_url, "defensa311.router", forged)
    assert reason.startswith("event_type 'CaseRemitted' no admitido en 'case.returned.obras'")
    assert {c.department for c in await clocks_of(system, case["case_id"])} == {None, "obras"}
    result = await sweep(system.deps.uow, policy_for(system.deps), NOW)
    assert result.alerts == []
    notified = await notifications_of(system, case["case_id"])
    assert "salud@alcaldia.example" not in {n.recipient for n in notified}
    assert {n.event_type for n in notified} <= {"CaseReceived", "CaseRemittedToDepartment"}


async def test_an_answer_with_a_wrong_tracking_code_stops_no_clock(
    accounts: Accounts, system: Runtime
) -> None:
    case = await remitted_case(system, "obras")
    forged = DepartmentResponded(
        case_id=case["case_id"],
        tracking_code="D311-2026-000000",
        department="obras",
        response="Respuesta para otro caso.",
        occurred_at=NOW,
    )
    obras = f"{accounts.prefix}dept-obras"
    await publish_as(accounts.url_of("obras"), forged, "case.responded.obras", user_id=obras)

    reason = await dead_letter_reason(accounts.amqp_url, "defensa311.router", forged)
    assert reason == "tracking_code no corresponde al case_id"
    assert await settled(system, case["case_id"]) == "remitted"
    assert [c.stopped_at for c in await clocks_of(system, case["case_id"])] == [None, None]


async def test_an_answer_without_its_accounts_user_id_is_dead_lettered(
    accounts: Accounts, system: Runtime
) -> None:
    case = await remitted_case(system, "obras")
    answer = DepartmentResponded(
        **case, department="obras", response="Se retiró la obra de la acera.", occurred_at=NOW
    )
    await publish_as(accounts.url_of("obras"), answer, "case.responded.obras", user_id=None)

    reason = await dead_letter_reason(accounts.amqp_url, "defensa311.router", answer)
    assert (
        reason
        == f"falta user_id: 'case.responded.obras' exige la cuenta '{accounts.prefix}dept-obras'"
    )
    assert await settled(system, case["case_id"]) == "remitted"
    # Another account's user_id: RabbitMQ itself refuses the publish.
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await publish_as(
            accounts.url_of("obras"),
            answer,
            "case.responded.obras",
            user_id=f"{accounts.prefix}dept-salud",
        )
    # With its own account's user_id, the same answer resolves the case.
    obras = f"{accounts.prefix}dept-obras"
    await publish_as(accounts.url_of("obras"), answer, "case.responded.obras", user_id=obras)

    async def resolved() -> bool:
        return await settled(system, case["case_id"]) == "resolved"

    await eventually(resolved)


async def test_a_resolution_forged_on_case_received_notifies_nobody(
    accounts: Accounts, system: Runtime
) -> None:
    case = await remitted_case(system, "obras")
    forged = CaseResolved(
        **case,
        path="department",
        resolution="Su caso fue resuelto.",
        department="obras",
        resolved_at=NOW,
        occurred_at=NOW,
    )
    # A department may not publish on case.received at all …
    obras = f"{accounts.prefix}dept-obras"
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await publish_as(accounts.url_of("obras"), forged, "case.received", user_id=obras)
    # … and the key admits only CaseReceived, whoever publishes there.
    await publish_as(accounts.amqp_url, forged, "case.received", user_id=None)

    reason = await dead_letter_reason(accounts.amqp_url, "defensa311.notifier", forged)
    assert (
        reason == "event_type 'CaseResolved' no admitido en 'case.received' (admite: CaseReceived)"
    )
    notified = await notifications_of(system, case["case_id"])
    assert "CaseResolved" not in {n.event_type for n in notified}
    assert await settled(system, case["case_id"]) == "remitted"
    assert [c.stopped_at for c in await clocks_of(system, case["case_id"])] == [None, None]
