"""The ``defensa311`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from shared.runtime import Runtime, ServiceDefinition
from shared.settings import Settings, load_settings

SERVICES = ("intake", "router", "deadlines", "notifier")


def service_definition(name: str) -> ServiceDefinition:
    module = importlib.import_module(f"services.{name}.app")
    definition: ServiceDefinition = module.service()
    return definition


async def _run(settings: Settings, names: Sequence[str]) -> None:
    runtime = Runtime(settings, [service_definition(n) for n in names])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.serve(stop)


async def _db_upgrade(settings: Settings) -> None:
    from shared.db.engine import make_engine
    from shared.db.migrate import upgrade

    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _db_prune(settings: Settings) -> tuple[int, int]:
    from shared.clock import SystemClock
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.outbox import Retention, prune

    engine = make_engine(settings.database_url)
    try:
        pruned = await prune(
            make_sessionmaker(engine), SystemClock().now(), Retention.from_settings(settings)
        )
    finally:
        await engine.dispose()
    return pruned.outbox, pruned.inbox


def preflight(settings: Settings, names: Sequence[str]) -> str:
    """Check the settings a start needs, cheapest first; the banner to print, or
    :class:`StartupError` naming every problem of the first kind found."""
    from shared.startup import StartupError, banner, check_config, check_port, check_services

    config = check_config(settings)
    # Each service's own checks (one line each), before anything is connected to.
    # (a setting two services read is named once)
    problems = list(
        dict.fromkeys(
            problem
            for name in names
            for check in service_definition(name).checks
            for problem in check(settings)
        )
    )
    if problems:
        raise StartupError("\nno se puede iniciar: ".join(problems))
    if "intake" in names:
        check_port(settings)
    asyncio.run(check_services(settings))
    return banner(settings, config, names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defensa311", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one service, or all four in one process")
    run.add_argument("service", choices=[*SERVICES, "all"])

    db = commands.add_parser("db", help="database operations")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply the migrations")
    db_commands.add_parser(
        "prune",
        help="delete published outbox rows and inbox marks past their retention "
        "(DEFENSA311_OUTBOX_RETENTION_DAYS, DEFENSA311_INBOX_RETENTION_DAYS)",
    )

    asyncapi = commands.add_parser("asyncapi", help="print the AsyncAPI document")
    asyncapi.add_argument("--output", "-o", help="write to this file instead of stdout")
    # Services (``services/<name>/cli.py``) and shared tools contribute sub-commands
    # through ``register(commands)``.
    for module_name in [f"services.{name}.cli" for name in SERVICES] + [
        "shared.broker_cli",
        "shared.calendar_cli",
    ]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        # Name the settings, never their values (a URL or a token may be among them).
        wrong = ", ".join(
            "DEFENSA311_" + str(error["loc"][0]).upper() for error in exc.errors() if error["loc"]
        )
        print(f"no se puede iniciar: {wrong}: valor no válido", file=sys.stderr)
        return 2
    from shared.logs import configure_logging

    configure_logging(settings.log_level, json_lines=settings.log_json)
    if args.command == "run":
        from shared.startup import StartupError

        names = SERVICES if args.service == "all" else (args.service,)
        try:
            banner = preflight(settings, names)
        except StartupError as exc:
            print(f"no se puede iniciar: {exc}", file=sys.stderr)
            return 2
        print(banner, flush=True)
        asyncio.run(_run(settings, names))
        return 0
    if args.command == "db" and args.db_command == "prune":
        outbox, inbox = asyncio.run(_db_prune(settings))
        print(
            f"depuración: {outbox} eventos publicados del outbox y {inbox} marcas del inbox "
            f"eliminados (retención {settings.outbox_retention_days:g} y "
            f"{settings.inbox_retention_days:g} días)"
        )
        return 0
    if args.command == "db":
        asyncio.run(_db_upgrade(settings))
        print("migraciones aplicadas")
        return 0
    if args.command == "asyncapi":
        from shared.asyncapi import render

        text = render(settings)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            sys.stdout.write(text)
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error("unknown command")
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
