"""``broker setup`` on the real RabbitMQ, in a vhost of the test's own.

The accounts it creates are the departments' and the 311 platform's: each must be refused
everything the public contract does not give it (another department's queue, another
department's routing keys, ``case.submitted``), and allowed what it does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import aio_pika
import aiormq
import pytest

from shared.broker_admin import least_privilege_accounts
from shared.messaging import ROUTER
from tests.support import ROOT, eventually, fresh_vhost, rabbitmqctl

pytestmark = pytest.mark.connected


def _delete_users(prefix: str) -> None:
    for row in json.loads(rabbitmqctl("list_users", "--formatter", "json") or "[]"):
        if row["user"].startswith(prefix):
            rabbitmqctl("delete_user", row["user"])


# Two departments are enough to tell "its own" from "another's", and keep rabbitmqctl calls few.
CONFIG = """
[[departments]]
code = "aseo"
name = "Dirección de Aseo Urbano y Domiciliario"
email = "aseo@alcaldia.example"

[[departments]]
code = "vias"
name = "Dirección de Mantenimiento Vial"
email = "vias@alcaldia.example"
"""


def _broker_setup(amqp_url: str, prefix: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFENSA311_")}
    env["DEFENSA311_AMQP_URL"] = amqp_url
    env["DEFENSA311_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "shared.broker_cli", "broker", "setup", "--print-credentials",
         "--account-prefix", prefix],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def accounts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, dict[str, str], Path]]:
    """Run ``broker setup --print-credentials`` once in a vhost of this module's own.

    Yield (amqp_url, account prefix, credentials, config path). RabbitMQ users are global to
    the node, so the accounts carry a prefix of this run's own and are deleted afterwards.
    """
    config = tmp_path_factory.mktemp("broker") / "defensa311.toml"
    config.write_text(CONFIG, encoding="utf-8")
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    with fresh_vhost() as amqp_url:
        try:
            result = _broker_setup(amqp_url, prefix, config)
            assert result.returncode == 0, result.stderr
            credentials = json.loads(result.stdout.strip().splitlines()[-1])
            yield amqp_url, prefix, credentials, config
        finally:
            _delete_users(prefix)


def _url_as(amqp_url: str, user: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"amqp://{credentials}@{parts.hostname}:{parts.port or 5672}{parts.path}"


@pytest.fixture
async def connect() -> AsyncIterator[object]:
    connections: list[aio_pika.abc.AbstractRobustConnection] = []

    async def _connect(url: str) -> aio_pika.abc.AbstractConnection:
        conn = await aio_pika.connect(url)
        connections.append(conn)  # type: ignore[arg-type]
        return conn

    yield _connect
    for conn in connections:
        await conn.close()


async def _get(conn: aio_pika.abc.AbstractConnection, queue: str) -> object:
    channel = await conn.channel()
    q = await channel.get_queue(queue, ensure=False)
    return await q.get(fail=False)


async def _consume(conn: aio_pika.abc.AbstractConnection, queue: str) -> None:
    channel = await conn.channel()
    q = await channel.get_queue(queue, ensure=False)

    async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        return None

    await q.consume(ignore)


async def _publish(conn: aio_pika.abc.AbstractConnection, routing_key: str) -> None:
    channel = await conn.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("defensa311", ensure=False)
    await exchange.publish(
        aio_pika.Message(b"{}", content_type="application/json"), routing_key, mandatory=True
    )


async def _queue_depth(amqp_url: str, queue: str) -> int:
    conn = await aio_pika.connect(amqp_url)
    try:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await conn.close()


async def _depth_becomes(amqp_url: str, queue: str, expected: int) -> None:
    async def depth_is_expected() -> bool:
        return await _queue_depth(amqp_url, queue) == expected

    await eventually(depth_is_expected, timeout=10)


async def test_setup_creates_one_account_per_department_and_platform(accounts) -> None:  # type: ignore[no-untyped-def]
    amqp_url, prefix, credentials, config = accounts
    assert set(credentials) == {a.name for a in least_privilege_accounts(["aseo", "vias"], prefix)}
    assert f"{prefix}dept-aseo" in credentials and f"{prefix}platform311" in credentials
    assert len(set(credentials.values())) == len(credentials)  # every password its own
    assert all(len(p) >= 24 for p in credentials.values())

    # Running it again creates nothing and changes no password.
    again = _broker_setup(amqp_url, prefix, config)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {}
    user = f"{prefix}dept-aseo"
    rabbitmqctl("authenticate_user", user, credentials[user])


async def test_department_reads_only_its_queue_and_answers_as_itself(accounts, connect) -> None:  # type: ignore[no-untyped-def]
    amqp_url, prefix, credentials, _ = accounts
    user = f"{prefix}dept-aseo"
    conn = await connect(_url_as(amqp_url, user, credentials[user]))

    # Its own queue: allowed (empty).
    assert await _get(conn, "defensa311.department.aseo") is None
    # Another department's queue: refused for basic.get and for consume.
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _get(conn, "defensa311.department.vias")
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _consume(conn, "defensa311.department.vias")
    # The system's own queues: refused.
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _get(conn, ROUTER.name)

    # Its own answers: allowed, and they reach the router.
    before = await _queue_depth(amqp_url, ROUTER.name)
    await _publish(conn, "case.responded.aseo")
    await _publish(conn, "case.returned.aseo")
    await _depth_becomes(amqp_url, ROUTER.name, before + 2)

    # Another department's routing keys, a 311 submission, a system event: refused.
    for key in ("case.responded.vias", "case.returned.vias", "case.submitted", "case.resolved",
                "case.remitted.aseo"):  # fmt: skip
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await _publish(conn, key)
    await _depth_becomes(amqp_url, ROUTER.name, before + 2)

    # It may not declare anything either.
    channel = await conn.channel()
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await channel.declare_queue("defensa311.department.aseo.extra", durable=True)


async def test_platform311_submits_and_follows_only(accounts, connect) -> None:  # type: ignore[no-untyped-def]
    amqp_url, prefix, credentials, _ = accounts
    user = f"{prefix}platform311"
    conn = await connect(_url_as(amqp_url, user, credentials[user]))

    await _get(conn, "defensa311.platform311")  # its own queue: allowed (may hold events)
    for queue in ("defensa311.department.aseo", "defensa311.intake", ROUTER.name):
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await _get(conn, queue)

    before = await _queue_depth(amqp_url, "defensa311.intake")
    await _publish(conn, "case.submitted")
    await _depth_becomes(amqp_url, "defensa311.intake", before + 1)

    for key in ("case.received", "case.responded.aseo", "case.returned.vias", "case.remitted.aseo",
                "deadline.missed"):  # fmt: skip
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await _publish(conn, key)


async def test_a_department_cannot_use_another_departments_password(accounts) -> None:  # type: ignore[no-untyped-def]
    amqp_url, prefix, credentials, _ = accounts
    with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(
            _url_as(amqp_url, f"{prefix}dept-vias", credentials[f"{prefix}dept-aseo"])
        )
