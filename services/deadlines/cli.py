"""``defensa311 deadlines sweep --at <RFC 3339>``: one sweep as of an instant (operations, tests).

The sweep writes its alerts to the outbox in the same transaction that advances the clocks; the
command then relays the outbox and exits only once every alert it produced has been confirmed by
the broker (exit 1 if that cannot be done within ``--relay-timeout`` seconds: the alerts stay in
the outbox and a running service's relay will publish them).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from services.deadlines.schedule import AlertPolicy
from services.deadlines.sweep import SweepResult, sweep
from shared.clock import SystemClock
from shared.config import load_config
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import OutboxRow
from shared.domain.clocks import Terms
from shared.messaging import declare_topology, make_broker, system_topology
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.uow import UnitOfWork


def instant(value: str) -> datetime:
    """An RFC 3339 instant with its offset (``2026-12-01T00:00:00-05:00`` or ``…Z``)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"instante inválido: {value!r} (use RFC 3339, p. ej. 2026-12-01T00:00:00-05:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"el instante {value!r} debe indicar su zona horaria (p. ej. -05:00 o Z)"
        )
    return parsed


def register(commands: Any) -> None:
    deadlines = commands.add_parser("deadlines", help="plazos: barridos de alertas")
    sub = deadlines.add_subparsers(dest="deadlines_command", required=True)
    run = sub.add_parser("sweep", help="ejecuta un barrido de alertas de plazos a la hora indicada")
    run.add_argument(
        "--at",
        type=instant,
        required=True,
        help="instante del barrido, RFC 3339 con zona horaria",
    )
    run.add_argument(
        "--relay-timeout",
        type=float,
        default=30.0,
        help="segundos para confirmar la publicación de las alertas (por defecto 30)",
    )
    run.set_defaults(handler=sweep_command)


def sweep_command(args: argparse.Namespace, settings: Settings) -> int:
    result, unpublished = asyncio.run(run_sweep(settings, args.at, args.relay_timeout))
    print(
        f"barrido al {args.at.isoformat()}: {result.claimed} plazos revisados, "
        f"{result.near} alertas de plazo próximo, {result.missed} de plazo vencido"
    )
    if unpublished:
        print(f"{unpublished} alertas siguen pendientes de publicar en la bandeja de salida")
        return 1
    return 0


async def run_sweep(
    settings: Settings, at: datetime, relay_timeout: float = 30.0
) -> tuple[SweepResult, int]:
    """Sweep as of ``at`` against the configured database; relay the alerts; return the result
    and how many of its alerts are still unpublished."""
    config = load_config(settings.config)
    policy = AlertPolicy.from_config(config, Terms.from_config(config))
    engine = make_engine(settings.database_url)
    broker = make_broker(settings.amqp_url, prefetch=settings.prefetch)
    try:
        await upgrade(engine)
        sessionmaker = make_sessionmaker(engine)
        # The topology first: an alert published before its queues exist would be lost.
        await broker.connect()
        await declare_topology(broker, system_topology(config.department_codes))
        result = await sweep(lambda: UnitOfWork(sessionmaker), policy, at)
        relay = OutboxRelay(sessionmaker, broker, SystemClock())
        ids = [str(event.event_id) for event in result.alerts]
        deadline = time.monotonic() + relay_timeout
        unpublished = len(ids)
        while ids:
            await relay.relay_once()
            unpublished = 0
            async with sessionmaker() as session:
                for start in range(0, len(ids), 1000):
                    unpublished += (
                        await session.scalar(
                            select(func.count())
                            .select_from(OutboxRow)
                            .where(
                                OutboxRow.event_id.in_(ids[start : start + 1000]),
                                OutboxRow.published_at.is_(None),
                            )
                        )
                        or 0
                    )
            if unpublished == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        return result, unpublished
    finally:
        await broker.stop()
        await engine.dispose()
