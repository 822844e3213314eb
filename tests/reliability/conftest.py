"""Fixtures of the reliability run: the four services as OS processes (SMTP: tests/conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.reliability.harness import Cluster, check_descriptions


@pytest.fixture
async def cluster(
    amqp_url: str, pg_url: str, tmp_path: Path, smtp_port: int
) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    check_descriptions()
    made: list[Cluster] = []

    async def make(instances: int = 1, **env: str) -> Cluster:
        cluster = Cluster(
            amqp_url, pg_url, tmp_path, instances=instances, smtp_port=smtp_port, extra_env=env
        )
        made.append(cluster)
        await cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop()
