"""Least privilege on the broker: ``defensa311 broker setup``.

Declares the whole topology (:mod:`shared.messaging`) and creates, where missing, one
RabbitMQ account per department and one for the 311 platform, each allowed exactly what
the public contract (DESIGN §4) gives it:

- ``dept-<code>`` reads only ``defensa311.department.<code>`` (and its DLQ) and publishes
  on ``defensa311`` only ``case.responded.<code>`` and ``case.returned.<code>``;
- ``platform311`` reads only ``defensa311.platform311`` (and its DLQ) and publishes only
  ``case.submitted``.

No account may configure (declare or delete) anything: the system declares the
topology, the outside clients only consume and publish. Accounts that already exist
keep their password; their permissions are (re)applied so a changed policy takes effect.

The administration backend is a small :class:`BrokerAdmin` protocol. The implementation
here drives ``rabbitmqctl`` (the management HTTP API is not always enabled); an HTTP API
backend only has to implement the same four methods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

from shared.contract import EXCHANGE
from shared.messaging import (
    PLATFORM311,
    declare_topology,
    department_queue,
    make_broker,
    system_topology,
)
from shared.routing import department_account as department_account_name

log = logging.getLogger("defensa311.broker")

NOTHING = "^$"
PLATFORM_ACCOUNT = "platform311"


@dataclass(frozen=True)
class Grant:
    """Resource permissions (regexes) in one vhost, and topic permissions on ``defensa311``."""

    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


@dataclass(frozen=True)
class Account:
    name: str
    grant: Grant
    description: str


class BrokerAdmin(Protocol):
    """What broker setup needs from an administration backend."""

    def existing_users(self) -> set[str]: ...

    def create_user(self, name: str, password: str) -> None: ...

    def set_permissions(self, vhost: str, user: str, grant: Grant) -> None: ...

    def set_topic_permissions(self, vhost: str, user: str, exchange: str, grant: Grant) -> None: ...


class BrokerAdminError(RuntimeError):
    pass


@dataclass
class RabbitmqctlAdmin:
    """:class:`BrokerAdmin` over ``rabbitmqctl`` (run where it can reach the node)."""

    node: str | None = None
    executable: str = "rabbitmqctl"
    timeout: float = 60.0

    def _run(self, *args: str, stdin: str | None = None) -> str:
        command = [self.executable, "-q"]
        if self.node:
            command += ["--node", self.node]
        command += list(args)
        try:
            result = subprocess.run(  # noqa: S603 - fixed executable, no shell
                command,
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=self.timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerAdminError(f"no se pudo ejecutar {self.executable}: {exc}") from exc
        if result.returncode != 0:
            # Only the sub-command is echoed: arguments never carry a password (stdin does).
            detail = result.stderr.strip() or result.stdout.strip()
            raise BrokerAdminError(f"{self.executable} {args[0]} falló: {detail}")
        return result.stdout

    def existing_users(self) -> set[str]:
        rows = json.loads(self._run("list_users", "--formatter", "json") or "[]")
        return {str(row["user"]) for row in rows}

    def create_user(self, name: str, password: str) -> None:
        # The password goes on stdin, not argv, so it never shows in a process listing.
        self._run("add_user", name, stdin=password + "\n")

    def set_permissions(self, vhost: str, user: str, grant: Grant) -> None:
        self._run("set_permissions", "-p", vhost, user, grant.configure, grant.write, grant.read)

    def set_topic_permissions(self, vhost: str, user: str, exchange: str, grant: Grant) -> None:
        self._run(
            "set_topic_permissions",
            "-p",
            vhost,
            user,
            exchange,
            grant.topic_write,
            grant.topic_read,
        )


def _exact(*names: str) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def department_account(code: str, prefix: str = "") -> Account:
    queue = department_queue(code)
    return Account(
        name=department_account_name(code, prefix),
        grant=Grant(
            configure=NOTHING,
            write=_exact(EXCHANGE),
            read=_exact(queue.name, queue.dlq),
            topic_write=_exact(f"case.responded.{code}", f"case.returned.{code}"),
            topic_read=_exact(f"case.remitted.{code}", f"case.rejected.{code}"),
        ),
        description=f"departamento {code}",
    )


def platform_account(prefix: str = "") -> Account:
    return Account(
        name=f"{prefix}{PLATFORM_ACCOUNT}",
        grant=Grant(
            configure=NOTHING,
            write=_exact(EXCHANGE),
            read=_exact(PLATFORM311.name, PLATFORM311.dlq),
            topic_write=_exact("case.submitted"),
            topic_read=r"^case\..+$",
        ),
        description="plataforma 311",
    )


def least_privilege_accounts(department_codes: Iterable[str], prefix: str = "") -> list[Account]:
    return [platform_account(prefix)] + [department_account(c, prefix) for c in department_codes]


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


@dataclass
class SetupResult:
    vhost: str
    created: dict[str, str] = field(default_factory=dict)
    existing: list[str] = field(default_factory=list)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def ensure_accounts(admin: BrokerAdmin, vhost: str, accounts: Sequence[Account]) -> SetupResult:
    """Create missing accounts and (re)apply every account's permissions in ``vhost``."""
    result = SetupResult(vhost=vhost)
    present = admin.existing_users()
    for account in accounts:
        if account.name in present:
            result.existing.append(account.name)
        else:
            password = new_password()
            admin.create_user(account.name, password)
            result.created[account.name] = password
        admin.set_permissions(vhost, account.name, account.grant)
        admin.set_topic_permissions(vhost, account.name, EXCHANGE, account.grant)
        log.info(
            "broker account ready",
            extra={"action": "created" if account.name in result.created else "updated"},
        )
    return result


async def declare_system_topology(amqp_url: str, department_codes: Sequence[str]) -> None:
    broker = make_broker(amqp_url, prefetch=1)
    await broker.connect()
    try:
        await declare_topology(broker, system_topology(department_codes))
    finally:
        await broker.stop()


def setup(
    amqp_url: str,
    department_codes: Sequence[str],
    admin: BrokerAdmin,
    *,
    prefix: str = "",
) -> SetupResult:
    """Declare the topology (as the administrative AMQP user), then the accounts."""
    asyncio.run(declare_system_topology(amqp_url, department_codes))
    return ensure_accounts(
        admin, vhost_of(amqp_url), least_privilege_accounts(department_codes, prefix)
    )
