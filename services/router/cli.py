"""The router's commands: ``defensa311 agenda`` prints the sugerencias on the meeting's agenda."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sqlalchemy.exc import DBAPIError

from shared.agenda import agenda, as_json, render_markdown
from shared.clock import Clock, SystemClock
from shared.config import load_config
from shared.db.engine import make_engine, make_sessionmaker
from shared.domain.clocks import Terms
from shared.settings import Settings
from shared.uow import UnitOfWork


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "agenda", help="list the sugerencias on the meeting's agenda (Markdown or JSON)"
    )
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--output", "-o", help="write to this file instead of stdout")
    parser.set_defaults(handler=run_agenda)


def run_agenda(args: argparse.Namespace, settings: Settings, clock: Clock | None = None) -> int:
    try:
        text = asyncio.run(agenda_text(settings, args.format, clock or SystemClock()))
    except DBAPIError as exc:
        sys.stderr.write(
            "no se pudo leer la agenda de la base de datos "
            f"({type(exc.orig).__name__}); ¿ejecutó `defensa311 db upgrade`?\n"
        )
        return 1
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


async def agenda_text(settings: Settings, fmt: str, clock: Clock) -> str:
    config = load_config(settings.config)
    engine = make_engine(settings.database_url)
    now = clock.now()
    try:
        async with UnitOfWork(make_sessionmaker(engine)) as uow:
            items = await agenda(uow, Terms.from_config(config), now)
    finally:
        await engine.dispose()
    if fmt == "json":
        return json.dumps(as_json(items), ensure_ascii=False, indent=2) + "\n"
    return render_markdown(items, office=config.institution.office, now=now)
