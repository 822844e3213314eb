"""A service run on its own serves Prometheus metrics on its metrics port."""

from __future__ import annotations

import json
from pathlib import Path

import aio_pika
import httpx
import pytest

from tests.support import ServiceProcess, eventually, free_port, process_env

pytestmark = pytest.mark.connected


async def test_router_alone_counts_what_it_consumed(
    amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = process_env(amqp_url, pg_url, DEFENSA311_METRICS_PORT=str(port))
    router = ServiceProcess("router", env, tmp_path / "router.log")
    router.start()
    try:
        await eventually(router.started, timeout=90)
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("defensa311")
            await exchange.publish(
                aio_pika.Message(json.dumps({"event_type": "nonsense"}).encode()),
                routing_key="case.received",
            )

        async def scraped() -> str:
            try:
                async with httpx.AsyncClient() as http:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                return ""
            return text if 'outcome="dead_lettered"' in text else ""

        text = await eventually(scraped, timeout=30)
        assert (
            'defensa311_messages_total{outcome="dead_lettered",queue="defensa311.router"} 1.0'
            in (text)
        )
        assert router.alive()
    finally:
        router.stop()
