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
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.reliability.harness import (
    Cluster,
    Database,
    Expect,
    Flow,
    open_flow,
    pg_ctl,
    queue_name,
    settle,
    submission,
    verify,
)
from tests.support import eventually, rabbitmqctl

pytestmark = [pytest.mark.slow, pytest.mark.connected]

SEED = int(os.environ.get("DEFENSA311_RELIABILITY_SEED", "311"))
CASES = int(os.environ.get("DEFENSA311_RELIABILITY_CASES", "240"))
RATE = 20.0  # cases per second offered

Make = Callable[[int], Awaitable[Cluster]]


def report(name: str, verdict_figures: dict[str, Any], **more: Any) -> None:
    print(f"\nRELIABILITY {name}: " + json.dumps({**verdict_figures, **more}, default=str))


async def finish(name: str, cluster: Cluster, flow: Flow, pg_url: str, expect: Expect,
                 **more: Any) -> None:
    db = Database(pg_url)
    settle_s = await settle(cluster, flow, db, timeout=150)
    verdict = await verify(cluster, flow, db, expect)
    report(name, verdict.figures, settle_s=round(settle_s, 1), **more)
    assert not verdict.problems, verdict.problems


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
        await system.wait_started()
        await finish("kill9", system, flow, pg_url, Expect(), flow_s=round(seconds, 1),
                     plan={str(k): v for k, v in plan.items()})
    assert all(system.kills[name] >= 2 for name in ("intake", "router", "deadlines", "notifier"))
