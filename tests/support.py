"""Test infrastructure: real RabbitMQ vhosts and PostgreSQL databases per test run.

Service URLs come from the environment first (``DEFENSA311_TEST_AMQP_URL``,
``DEFENSA311_TEST_DATABASE_URL``), defaulting to the local services; testcontainers is
used only where a Docker engine answers. On CI (``CI=true``) an unreachable service
fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import asyncpg
import pytest

from shared.clock import Clock
from shared.contract import EXCHANGE
from shared.runtime import Runtime, ServiceDefinition
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ON_CI = os.environ.get("CI", "").lower() == "true"
AMQP_BASE = os.environ.get("DEFENSA311_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_BASE = os.environ.get(
    "DEFENSA311_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if ON_CI:
        pytest.fail(message + " (CI=true: a test that needs a service fails, never skips)")
    pytest.skip(message)


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# ------------------------------------------------------------------ rabbitmq vhosts


# Where the services are: the environment's (or local) URLs first; containers only where a
# Docker engine answers; otherwise unavailable (a failure on CI).
_found: dict[str, Any] = {}


# The test being set up or run (kept by tests/conftest.py), so that reaching for a service
# from a test without the ``connected`` marker fails, however the test got there.
running_test: list[pytest.Item] = []
SERVICE_FIXTURES = frozenset({"amqp_url", "pg_url"})


def require_connected(what: str) -> None:
    for item in running_test:
        if item.get_closest_marker("connected") is None:
            pytest.fail(
                f"{item.nodeid} needs {what}: mark it @pytest.mark.connected "
                "(so that `-m 'not connected'` runs without the services)",
                pytrace=False,
            )


def amqp_base() -> str:
    require_connected("RabbitMQ")
    if "amqp" not in _found:
        if reachable(AMQP_BASE, 5672):
            _found["amqp"] = AMQP_BASE
        elif docker_available():
            _found["amqp"] = _rabbitmq_container()
        else:
            unavailable("RabbitMQ")
    return str(_found["amqp"])


def pg_base() -> str:
    require_connected("PostgreSQL")
    if "pg" not in _found:
        if reachable(PG_BASE, 5432):
            _found["pg"] = PG_BASE
        elif docker_available():
            _found["pg"] = _postgres_container()
        else:
            unavailable("PostgreSQL")
    return str(_found["pg"])


def _rabbitmq_container() -> str:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    # guest may only log in from loopback: the container gets a user of its own.
    container = (
        DockerContainer("rabbitmq:3.13")
        .with_env("RABBITMQ_DEFAULT_USER", "defensa311")
        .with_env("RABBITMQ_DEFAULT_PASS", "defensa311")
        .with_exposed_ports(5672)
    )
    container.start()
    atexit.register(container.stop)
    wait_for_logs(container, "Server startup complete", timeout=180)
    _found["rabbit_container"] = container
    host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
    return f"amqp://defensa311:defensa311@{host}:{port}/"


def _postgres_container() -> str:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        "postgres:16", username="postgres", password="postgres", dbname="test"
    )
    container.start()
    atexit.register(container.stop)
    return str(container.get_connection_url(driver="asyncpg"))


# The CLI's own Erlang node could not start: on one host at most eleven ``rabbitmqctl`` run
# at once (their distribution ports are 35672-35682), so several test runs side by side can
# run out. Such a call did nothing and is tried again.
_CLI_BUSY = ("Distribution failed", "nodistribution", "eaddrinuse")


def rabbitmqctl(*args: str, tries: int = 6) -> str:
    for attempt in range(tries):
        try:
            return _rabbitmqctl_once(*args)
        except RuntimeError as exc:
            if attempt == tries - 1 or not any(sign in str(exc) for sign in _CLI_BUSY):
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _rabbitmqctl_once(*args: str) -> str:
    container = _found.get("rabbit_container")
    if container is not None:
        result = container.exec(["rabbitmqctl", "-q", *args])
        output = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {output}")
        return output
    # Its own session: on a timeout the whole process group (the Erlang CLI VM too) is
    # killed, so a hung call leaves nothing behind.
    proc = subprocess.Popen(
        ["rabbitmqctl", "-q", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            # A daemon the CLI started (epmd) may hold the pipes open: do not wait on it.
            proc.communicate(timeout=5)
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: timed out") from None
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {stderr.strip()}")
    return stdout


VHOST_PREFIX = "d311-test"
# Vhosts made per eval. The used ones live until the next batch is made: every vhost holds
# the quorum queues its test declared, so a small batch keeps the broker's load near one
# vhost per test run while still saving most of the CLI starts.
VHOST_BATCH = 4


def _erlang_binary(text: str) -> str:
    if not all(ch.isalnum() or ch in "-_." for ch in text):
        raise ValueError(f"not a safe name for an Erlang binary: {text!r}")
    return f'<<"{text}">>'


class VhostPool:
    """Fresh vhosts, made and removed in batches.

    Every ``rabbitmqctl`` call starts an Erlang VM (about a second, several on a loaded
    machine), so one vhost per test made with ``add_vhost`` + ``set_permissions`` and removed
    with ``delete_vhost`` cost three of them. Here one ``rabbitmqctl eval`` removes the vhosts
    used since the last call and makes the next ``VHOST_BATCH`` with the test user's
    permissions, through the broker's own functions (``rabbit_vhost:add/2``,
    ``rabbit_auth_backend_internal:set_permissions/6``, ``rabbit_vhost:delete/2``). Each test
    still gets a vhost no other test has used. Where ``eval`` is refused (another broker
    version), the commands one by one do the same.
    """

    def __init__(self, batch: int = VHOST_BATCH) -> None:
        self._batch = batch
        self._ready: list[str] = []
        self._used: list[str] = []
        self._eval_works = True

    def take(self) -> str:
        if not self._ready:
            self._refill()
        return self._ready.pop()

    def give_back(self, vhost: str) -> None:
        """A vhost a test is done with: removed with the next batch, or at :meth:`close`."""
        self._used.append(vhost)

    def close(self) -> None:
        doomed, self._used = self._used + self._ready, []
        self._ready = []
        if doomed:
            with contextlib.suppress(Exception):
                self._change(make=[], drop=doomed)

    def _refill(self) -> None:
        make = [f"{VHOST_PREFIX}-{uuid.uuid4().hex[:10]}" for _ in range(self._batch)]
        drop, self._used = self._used, []
        self._change(make=make, drop=drop)
        self._ready = make

    def _change(self, *, make: list[str], drop: list[str]) -> None:
        user = urlsplit(amqp_base()).username or "guest"
        if self._eval_works:
            tag, who, anything = _erlang_binary("d311-tests"), _erlang_binary(user), '<<".*">>'
            expression = (
                f"[rabbit_vhost:delete(V, {tag}) || V <- [{', '.join(map(_erlang_binary, drop))}]],"
                f"[begin ok = rabbit_vhost:add(V, {tag}),"
                f" ok = rabbit_auth_backend_internal:set_permissions("
                f"{who}, V, {anything}, {anything}, {anything}, {tag}) end"
                f" || V <- [{', '.join(map(_erlang_binary, make))}]], ok."
            )
            try:
                rabbitmqctl("eval", expression)
                return
            except RuntimeError as exc:
                if "timed out" in str(exc) or any(sign in str(exc) for sign in _CLI_BUSY):
                    raise  # the broker or the host, not eval: one by one would fare no better
                self._eval_works = False
        for vhost in drop:
            with contextlib.suppress(Exception):
                rabbitmqctl("delete_vhost", vhost)
        for vhost in make:
            rabbitmqctl("add_vhost", vhost)
            rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


VHOSTS = VhostPool()


@contextlib.contextmanager
def fresh_vhost() -> Iterator[str]:
    """A vhost no other test has used, with the test user's permissions."""
    base = amqp_base()
    vhost = VHOSTS.take()
    try:
        yield with_vhost(base, vhost)
    finally:
        VHOSTS.give_back(vhost)


# ------------------------------------------------------------------ postgres databases


async def create_database(prefix: str = "d311_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(asyncpg_dsn(pg_base()))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(pg_base(), name)


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(asyncpg_dsn(pg_base()))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    pg_base()
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


# ------------------------------------------------------------------ runtimes in-process


def settings_for(amqp_url: str, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "outbox_poll_seconds": 0.2,
        "log_json": True,
        "metrics_cache_seconds": 0.0,  # tests read the gauges right after changing cases
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(
    settings: Settings, services: list[ServiceDefinition], clock: Clock | None = None
) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings, services, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def eventually(check, timeout: float = 15.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``check`` (sync or async) until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


async def drain(amqp_url: str, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message waiting in a queue, taken without ack (a passive declare: it must exist)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages
    finally:
        await connection.close()


# ------------------------------------------------------------------ services as OS processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """``defensa311 run <service>`` as its own OS process: its logs (stderr) in ``log_path``,
    what it prints for people (stdout: the start banner) beside it in ``<log_path>.out``."""

    service: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "run", self.service],
            env=self.env,
            stdout=self._printed_path().open("ab"),
            stderr=self.log_path.open("ab"),
            cwd=str(ROOT),
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def printed(self) -> str:
        path = self._printed_path()
        return path.read_text(errors="replace") if path.exists() else ""

    def _printed_path(self) -> Path:
        return self.log_path.with_name(self.log_path.name + ".out")

    def started(self) -> bool:
        return '"msg": "started"' in self.log()


def process_env(amqp_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFENSA311_")}
    env.update(
        {
            "DEFENSA311_AMQP_URL": amqp_url,
            "DEFENSA311_DATABASE_URL": database_url,
            "DEFENSA311_OUTBOX_POLL_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def publish(amqp_url: str, routing_key: str, *messages: aio_pika.Message) -> None:
    """Publish to the system's exchange with confirms and ``mandatory`` (as 311 or a
    department would)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        for message in messages:
            await exchange.publish(message, routing_key=routing_key, mandatory=True)
    finally:
        await connection.close()
