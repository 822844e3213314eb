"""Fixtures of the reliability run: an SMTP sink, and the four services as OS processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.reliability.harness import Cluster, check_descriptions
from tests.support import free_port


class Sink:
    """Accepts every e-mail the notifier sends (only counted)."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


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
