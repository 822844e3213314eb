"""``defensa311 calendar``: the days the offices do not count.

- ``calendar close DATE --reason "…" [--no-suspende-terminos]`` stores a closure by decree and
  moves the open terms that span it (see :mod:`shared.closures`); the services re-read the
  closures within ``[calendar] reload_seconds``, and the command then looks once more for cases
  filed meanwhile with the old calendar;
- ``calendar show YEAR`` prints the year's non-working days (weekends aside) with their source.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date
from typing import Any

from shared.calendar import CalendarKind
from shared.clock import SystemClock
from shared.closures import ClosureExists, all_closures, close_day, move_terms_spanning
from shared.config import InstitutionConfig, load_config
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.domain.clocks import Terms
from shared.domain.closures import Closure, ClosureSource, closed_days
from shared.settings import Settings
from shared.spanish import long_date
from shared.uow import UnitOfWork

ACTOR = "consola:calendario"


def a_date(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"fecha inválida: {value!r} (use AAAA-MM-DD, p. ej. 2026-11-04)"
        ) from None


def a_year(value: str) -> int:
    if not value.isdigit() or not 2000 <= int(value) <= 2100:
        raise argparse.ArgumentTypeError(f"año inválido: {value!r} (entre 2000 y 2100)")
    return int(value)


def a_reason(value: str) -> str:
    text = value.strip()
    if not 3 <= len(text) <= 500:
        raise argparse.ArgumentTypeError(
            "el motivo debe tener entre 3 y 500 caracteres y nombrar el decreto"
        )
    return text


def register(commands: Any) -> None:
    calendar = commands.add_parser("calendar", help="calendario: feriados y cierres por decreto")
    sub = calendar.add_subparsers(dest="calendar_command", required=True)
    close = sub.add_parser("close", help="registra un cierre de oficinas por decreto")
    close.add_argument("date", type=a_date, help="fecha del cierre, AAAA-MM-DD")
    close.add_argument(
        "--reason", type=a_reason, required=True, help="motivo, con el nombre del decreto"
    )
    close.add_argument(
        "--no-suspende-terminos",
        dest="suspends_terms",
        action="store_false",
        help="el decreto no suspende los términos (el día se sigue contando)",
    )
    close.set_defaults(handler=close_command)
    show = sub.add_parser("show", help="muestra los días no hábiles de un año y su fuente")
    show.add_argument("year", type=a_year, help="año, p. ej. 2026")
    show.set_defaults(handler=show_command)


def close_command(args: argparse.Namespace, settings: Settings) -> int:
    closure = Closure(args.date, args.reason, args.suspends_terms, ClosureSource.DATABASE)
    try:
        moved = asyncio.run(run_close(settings, closure))
    except ClosureExists as exc:
        print(f"error: {exc}")
        return 1
    print(f"cierre registrado: {long_date(closure.day)} ({closure.reason})")
    if closure.suspends_terms:
        print(f"{moved} plazos de casos abiertos movidos; se avisa al ciudadano y al departamento")
    else:
        print("el decreto no suspende términos: ningún plazo cambia")
    return 0


async def run_close(settings: Settings, closure: Closure, *, settle: float | None = None) -> int:
    """Store the closure and move the terms; once the services have reloaded the calendar
    (``settle`` seconds, default ``[calendar] reload_seconds`` + 1), move again any case filed
    meanwhile. Return how many terms moved. The events leave through the outbox (a running
    service's relay publishes them)."""
    config = load_config(settings.config)
    terms = Terms.from_config(config)
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
        sessionmaker = make_sessionmaker(engine)
        async with sessionmaker() as session:
            terms.calendar.set_closures(closed_days(await all_closures(session, config)))
        now = SystemClock().now()
        async with UnitOfWork(sessionmaker) as uow:
            events = await close_day(uow, config, terms, closure, actor=ACTOR, now=now)
        moved = len(events)
        if closure.suspends_terms:
            await asyncio.sleep(config.calendar.reload_seconds + 1 if settle is None else settle)
            async with UnitOfWork(sessionmaker) as uow:
                late = await move_terms_spanning(
                    uow, terms, closure, actor=ACTOR, now=SystemClock().now()
                )
            moved += len(late)
        return moved
    finally:
        await engine.dispose()


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    config = load_config(settings.config)
    for line in asyncio.run(year_lines(settings, config, args.year)):
        print(line)
    return 0


async def year_lines(settings: Settings, config: InstitutionConfig, year: int) -> list[str]:
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            closures = await all_closures(session, config)
    finally:
        await engine.dispose()
    return calendar_lines(config, closures, year)


def calendar_lines(config: InstitutionConfig, closures: list[Closure], year: int) -> list[str]:
    """The year's non-working days besides weekends, in order, each with its source."""
    terms = Terms.from_config(config)
    rows: list[tuple[date, str]] = [
        (day, f"ley      feriado nacional: {name}")
        for day, name in terms.calendar.holidays_in(year).items()
    ]
    for closure in closures:
        if closure.day.year != year:
            continue
        counted = "" if closure.suspends_terms else " (no suspende términos: el día cuenta)"
        rows.append((closure.day, f"decreto  {closure.reason}{counted} [{closure.source}]"))
    lines = [f"Días no hábiles de {year} (además de sábados y domingos):"]
    if terms.calendar.kind is CalendarKind.CALENDAR:
        lines.append("(la política de plazos cuenta días calendario: estos días sí cuentan)")
    lines += [f"{day.isoformat()}  {long_date(day):<32} {text}" for day, text in sorted(rows)]
    return lines
