"""Fault tests (issue 7): try hard to lose, duplicate or wedge a case, then count.

Each test runs the four services as separate OS processes on a fresh PostgreSQL database
and a fresh vhost, drives a steady flow of 311 submissions and department answers with
plain aio-pika clients, injects its fault in the middle of the flow, waits for the system
to settle (every case resolved, every queue and the outbox empty) and checks everything
:func:`tests.reliability.harness.verify` lists. Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.reliability.harness import (
    Cluster,
    Database,
    Expect,
    Flow,
    department_answer,
    open_flow,
    pg_ctl,
    queue_name,
    settle,
    submission,
)
from tests.support import eventually, rabbitmqctl

pytestmark = [pytest.mark.slow, pytest.mark.connected]

SEED = int(os.environ.get("DEFENSA311_RELIABILITY_SEED", "311"))
CASES = int(os.environ.get("DEFENSA311_RELIABILITY_CASES", "240"))
RATE = 20.0  # cases per second offered

Make = Callable[..., Awaitable[Cluster]]


def report(name: str, verdict_figures: dict[str, Any], **more: Any) -> None:
    print(f"\nRELIABILITY {name}: " + json.dumps({**verdict_figures, **more}, default=str))


async def finish(
    name: str, cluster: Cluster, flow: Flow, pg_url: str, expect: Expect, **more: Any
) -> None:
    await cluster.wait_started()
    verdict, settle_s = await settle(cluster, flow, Database(pg_url), expect, timeout=150)
    report(name, verdict.figures, settle_s=round(settle_s, 1), **more)
    for problem in verdict.problems:
        print(f"PROBLEM {name}: {problem}")
    assert not verdict.problems, (verdict.problems, cluster.tails(1500))


# ---------------------------------------------------------------------------- 1. kill -9


async def test_kill9_each_service_twice_at_random_moments(
    cluster: Make, amqp_url: str, pg_url: str
) -> None:
    rng = random.Random(SEED)
    system = await cluster(1)
    victims = [name for name in ("intake", "router", "deadlines", "notifier") for _ in range(2)]
    rng.shuffle(victims)
    # Kill moments spread over the flow, each a random case index.
    moments = sorted(rng.sample(range(10, CASES - 10), len(victims)))
    plan = dict(zip(moments, victims, strict=True))
    async with open_flow(amqp_url, SEED) as flow:

        async def between(i: int) -> None:
            if i in plan:
                system.kill9_and_restart(plan[i])

        seconds = await flow.steady(CASES, RATE, between)
        await finish(
            "kill9",
            system,
            flow,
            pg_url,
            Expect(),
            flow_s=round(seconds, 1),
            plan={str(k): v for k, v in plan.items()},
        )
    assert all(system.kills[name] >= 2 for name in ("intake", "router", "deadlines", "notifier"))


# ---------------------------------------------------------------------------- 2. RabbitMQ


async def test_rabbitmq_restarted_mid_flow(cluster: Make, amqp_url: str, pg_url: str) -> None:
    system = await cluster(1)
    outage: list[asyncio.Task[None]] = []

    async def restart_broker() -> None:
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            await asyncio.sleep(3.0)  # the outage itself
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")

    async with open_flow(amqp_url, SEED + 2) as flow:

        async def between(i: int) -> None:
            if i == CASES * 2 // 5:
                outage.append(asyncio.create_task(restart_broker()))

        try:
            seconds = await flow.steady(CASES, RATE, between)
        finally:
            await asyncio.gather(*outage)
        await finish("rabbitmq-restart", system, flow, pg_url, Expect(), flow_s=round(seconds, 1))


# ---------------------------------------------------------------------------- 3. PostgreSQL


async def test_postgresql_restarted_mid_flow(cluster: Make, amqp_url: str, pg_url: str) -> None:
    system = await cluster(1)
    outage: list[asyncio.Task[None]] = []

    async def restart_database() -> None:
        try:
            await asyncio.to_thread(pg_ctl, "stop")
            await asyncio.sleep(3.0)  # the outage itself
        finally:
            await asyncio.to_thread(pg_ctl, "start")

    async with open_flow(amqp_url, SEED + 3) as flow:

        async def between(i: int) -> None:
            if i == CASES * 2 // 5:
                outage.append(asyncio.create_task(restart_database()))

        try:
            seconds = await flow.steady(CASES, RATE, between)
        finally:
            await asyncio.gather(*outage)
        await finish("postgresql-restart", system, flow, pg_url, Expect(), flow_s=round(seconds, 1))


# ---------------------------------------------------------------------------- 4. poison

POISON = {
    "not_json_submitted": 200,  # → intake.dlq
    "wrong_schema": 200,  # → SubmissionRejected to 311
    "not_json_received": 100,  # → router.dlq, deadlines.dlq, notifier.dlq
    "unknown_case": 200,  # → router.dlq
    "key_mismatch": 150,  # → router.dlq, deadlines.dlq (a department cannot stop another's clock)
    "foreign_department": 150,  # → SubmissionRejected to that department's queue (and deadlines)
}
GOOD_WITH_POISON = 1000

WRONG_SCHEMAS: tuple[dict[str, Any], ...] = (
    {"description": None},
    {"citizen": {"full_name": "Ana Pérez", "id_number": "123"}},
    {"kind": "otro"},
    {"unexpected": True},
    {"notify": {}},
)


async def test_poison_interleaved_with_good(cluster: Make, amqp_url: str, pg_url: str) -> None:
    rng = random.Random(SEED + 4)
    system = await cluster(1)
    kinds = [kind for kind, n in POISON.items() for _ in range(n)]
    rng.shuffle(kinds)
    assert len(kinds) == GOOD_WITH_POISON
    expect = Expect()
    async with open_flow(amqp_url, SEED + 4) as flow:
        codes = flow.departments.departments

        async def known_case() -> dict[str, Any]:
            await eventually(lambda: flow.departments.cases, timeout=60)
            return rng.choice(list(flow.departments.cases.values()))

        async def poison(kind: str) -> None:
            pub = flow.publisher
            if kind == "not_json_submitted":
                await pub.publish(b"{no es json" + os.urandom(8), "case.submitted")
            elif kind == "not_json_received":
                await pub.publish(b"\xff\xfe garbage", "case.received")
            elif kind == "wrong_schema":
                body = submission(f"bad-{uuid.uuid4().hex[:10]}", "aseo")
                body.update(rng.choice(WRONG_SCHEMAS))
                body = {k: v for k, v in body.items() if v is not None}
                expect.rejected_311.add(body["event_id"])
                await pub.publish_json(body, "case.submitted")
            elif kind == "unknown_case":
                code = rng.choice(codes)
                fake = {"case_id": str(uuid.uuid4()), "tracking_code": "2026-AAA-BBB-CCC"}
                await pub.publish(
                    department_answer(fake, code, event_id=str(uuid.uuid4())),
                    f"case.responded.{code}",
                )
            else:
                case = await known_case()
                others = [c for c in codes if c != case["department"]]
                foreign = rng.choice(others)
                event_id = str(uuid.uuid4())
                body = department_answer(case, foreign, event_id=event_id)
                if kind == "key_mismatch":
                    key = rng.choice([c for c in others if c != foreign])
                    await pub.publish(body, f"case.responded.{key}")
                else:
                    queue = queue_name(foreign)
                    expect.rejected_department.setdefault(queue, set()).add(event_id)
                    await pub.publish(body, f"case.responded.{foreign}")

        async def between(i: int) -> None:
            await poison(kinds[i])

        seconds = await flow.steady(GOOD_WITH_POISON, 40.0, between)
        n = POISON
        expect.dlq = {
            "defensa311.intake.dlq": n["not_json_submitted"],
            "defensa311.router.dlq": n["not_json_received"] + n["unknown_case"] + n["key_mismatch"],
            "defensa311.deadlines.dlq": n["not_json_received"],
            "defensa311.notifier.dlq": n["not_json_received"],
        }
        expect.reasons = {
            "defensa311.intake.dlq": Counter({"JSON": n["not_json_submitted"]}),
            "defensa311.router.dlq": Counter(
                {
                    "JSON": n["not_json_received"],
                    "caso desconocido": n["unknown_case"],
                    "no coincide": n["key_mismatch"],
                }
            ),
            "defensa311.deadlines.dlq": Counter({"JSON": n["not_json_received"]}),
            "defensa311.notifier.dlq": Counter({"JSON": n["not_json_received"]}),
        }
        await finish(
            "poison", system, flow, pg_url, expect, flow_s=round(seconds, 1), poison=POISON
        )


# ---------------------------------------------------------------------------- 5. two of each


async def test_two_instances_of_each_service(cluster: Make, amqp_url: str, pg_url: str) -> None:
    # Eight processes share one PostgreSQL (max_connections 100 here, and other test runs):
    # a smaller prefetch bounds each process's connections (about prefetch + 2). With the
    # default prefetch of 32 this run met "too many clients" and, before the consumer learnt
    # to wait that out, dead-lettered good messages.
    system = await cluster(2, DEFENSA311_PREFETCH="8")
    async with open_flow(amqp_url, SEED + 5) as flow:
        resent = 0

        async def between(i: int) -> None:
            # 311 resends now and then: the same message twice back to back (both instances
            # may take one each), or the same ticket under a new event_id.
            nonlocal resent
            if i % 10 == 3:
                ref = f"311-{uuid.uuid4().hex[:12]}"
                flow.expected[ref] = "vias"
                body = submission(ref, "vias")
                await flow.publisher.publish_json(body, "case.submitted")
                await flow.publisher.publish_json(body, "case.submitted")
                await flow.publisher.publish_json(
                    {**body, "event_id": str(uuid.uuid4())}, "case.submitted"
                )
                resent += 2

        seconds = await flow.steady(CASES, RATE, between)
        await finish(
            "two-instances", system, flow, pg_url, Expect(), flow_s=round(seconds, 1), resent=resent
        )
