"""The contract's floor: how fast could *any* implementation of the public contract go on
this machine? The same broker traffic as ``pipeline.py`` — the same topology (every queue
quorum, 311's ``case.#`` queue, the deadlines and notifier queues, the department queues), the
same publishes with confirms and ``mandatory``, ack after the confirm — but four null services
that do nothing else: no database, no validation, no rules.

    python bench/contract_floor.py               # 5,000 cases as fast as they go
    python bench/contract_floor.py --n 3000 --raw 5000

Its ``ratio`` (same formula and same raw ceiling, measured in the same run) is an upper
bound for the real engine's: what the contract's fan-out alone leaves of the 2 cores.
``pipeline.py`` runs the same floor after the engine (:func:`floor_run`) and reports the
engine's share of it. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
from pipeline import (
    AMQP,
    DESCRIPTIONS,
    MESSAGES_PER_CASE,
    cpu_seconds,
    infrastructure_cpu,
    pipeline,
    rabbitmqctl,
    ratio,
    raw_ceiling,
    with_path,
)

from shared.contract import EXCHANGE
from shared.messaging import (
    declare_topology,
    department_remitted_key,
    make_broker,
    system_topology,
)

ROLES = ("intake", "router", "deadlines", "notifier")


async def declare(amqp_url: str) -> None:
    """The services' topology, declared as every service does at start."""
    broker = make_broker(amqp_url, prefetch=1)
    await broker.connect()
    try:
        await declare_topology(broker, system_topology(DESCRIPTIONS))
    finally:
        await broker.stop()


def department_of(description: str) -> str:
    return next(code for code, text in DESCRIPTIONS.items() if description.startswith(text))


async def null_service(role: str, amqp_url: str, prefetch: int) -> None:
    """Consume the role's queue; publish what the real service publishes (confirmed,
    mandatory, persistent), then ack. Nothing else."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=prefetch)
        publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await publish.get_exchange(EXCHANGE)

        async def emit(event_type: str, routing_key: str, data: dict[str, Any]) -> None:
            body = json.dumps(data | {"event_type": event_type, "event_id": str(uuid.uuid4())})
            await exchange.publish(
                aio_pika.Message(
                    body.encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/json",
                ),
                routing_key=routing_key,
                mandatory=True,
            )

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if role == "intake":
                await emit("CaseReceived", "case.received", json.loads(message.body))
            elif role == "router" and message.routing_key == "case.received":
                data = json.loads(message.body)
                department = department_of(data["description"])
                await emit("CaseClassified", "case.classified", data)
                await emit("CaseRemitted", f"case.remitted.{department}", data)
                await emit("CaseRemittedToDepartment", department_remitted_key(department), data)
            await message.ack()

        queue = await consume.get_queue(f"defensa311.{role}")
        await queue.consume(on_message)
        await asyncio.Future()  # until terminated


def start(role: str, amqp_url: str, prefetch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--amqp", amqp_url, "--prefetch", str(prefetch)]
    )


async def floor_run(
    n: int, rate: float | None, warmup: int, prefetch: int, raw_count: int = 0
) -> dict[str, Any]:
    """One floor run on a vhost of its own: the null services, ``warmup`` cases not counted,
    then ``n`` cases; the raw ceiling first if ``raw_count``. Returns the figures."""
    vhost = f"d311-floor-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    user = urlsplit(AMQP).username or "guest"
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    amqp_url = with_path(AMQP, "/" + quote(vhost, safe=""))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    result: dict[str, Any] = {}
    try:
        await declare(amqp_url)
        procs = {role: start(role, amqp_url, prefetch) for role in ROLES}
        await asyncio.sleep(2)

        if raw_count:
            raw_before = infrastructure_cpu()["rabbitmq"]
            raw = await raw_ceiling(amqp_url, raw_count)
            raw["rabbitmq_cpu_ms_per_raw_msg"] = round(
                1000 * (infrastructure_cpu()["rabbitmq"] - raw_before) / raw_count, 3
            )
            print(f"raw ceiling: {raw}", flush=True)
            result.update(raw)
        if warmup:
            print(f"floor warm-up: {await pipeline(amqp_url, warmup, rate)}", flush=True)

        before = {role: cpu_seconds(p.pid) for role, p in procs.items()}
        rabbit_before = infrastructure_cpu()["rabbitmq"]
        client_before = time.process_time()
        figures = await pipeline(amqp_url, n, rate)
        per_case = 1000 / n
        services = {
            role: round(per_case * (cpu_seconds(p.pid) - before[role]), 2)
            for role, p in procs.items()
        }
        rabbitmq = per_case * (infrastructure_cpu()["rabbitmq"] - rabbit_before)
        client = per_case * (time.process_time() - client_before)
        result.update(
            figures,
            prefetch=prefetch,
            cpu_ms_per_case=services,
            rabbitmq_cpu_ms_per_case=round(rabbitmq, 2),
            bench_client_cpu_ms_per_case=round(client, 2),
        )
        if raw_count:
            result["broker_raw_msgs_per_case"] = round(
                rabbitmq / max(result["rabbitmq_cpu_ms_per_raw_msg"], 1e-9), 1
            )
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(15)
        rabbitmqctl("delete_vhost", vhost)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="cases to push through")
    parser.add_argument("--rate", type=float, default=None, help="steady cases/s (default: max)")
    parser.add_argument("--raw", type=int, default=20000, help="messages for the raw ceiling")
    parser.add_argument("--warmup", type=int, default=100, help="cases sent first, not measured")
    parser.add_argument("--prefetch", type=int, default=32, help="each null service's prefetch")
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("--amqp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        await null_service(args.role, args.amqp, args.prefetch)
        return
    figures = await floor_run(args.n, args.rate, args.warmup, args.prefetch, args.raw)
    print(f"floor pipeline: {figures}", flush=True)
    result = figures | {
        "messages_per_case": MESSAGES_PER_CASE,
        "ratio": ratio(figures, figures),
        "rate": args.rate,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
