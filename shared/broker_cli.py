"""``defensa311 broker setup [--print-credentials]``: the topology and least-privilege accounts.

``register(commands)`` adds the ``broker`` command to the ``defensa311`` parser; the module
also runs on its own (``python -m shared.broker_cli broker setup``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from shared.broker_admin import BrokerAdminError, RabbitmqctlAdmin, setup
from shared.config import load_config
from shared.settings import Settings, load_settings


def register(commands: Any) -> None:
    broker = commands.add_parser("broker", help="administración de RabbitMQ")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True)
    run = broker_commands.add_parser(
        "setup",
        help="declara la topología y crea las cuentas de departamentos y de la plataforma 311",
    )
    run.add_argument(
        "--print-credentials",
        action="store_true",
        help="la última línea es un objeto JSON {cuenta: contraseña} de las cuentas creadas",
    )
    run.add_argument(
        "--account-prefix",
        default=None,
        help=(
            "prefijo de los nombres de cuenta (los usuarios de RabbitMQ son globales al nodo); "
            "por omisión, DEFENSA311_BROKER_ACCOUNT_PREFIX"
        ),
    )
    run.add_argument("--node", default=None, help="nodo de RabbitMQ para rabbitmqctl")
    run.add_argument("--rabbitmqctl", default="rabbitmqctl", help="ruta de rabbitmqctl")
    run.set_defaults(handler=broker_setup)


def broker_setup(args: argparse.Namespace, settings: Settings) -> int:
    config = load_config(settings.config)
    admin = RabbitmqctlAdmin(node=args.node, executable=args.rabbitmqctl)
    try:
        result = setup(
            settings.amqp_url,
            config.department_codes,
            admin,
            prefix=settings.broker_account_prefix
            if args.account_prefix is None
            else args.account_prefix,
        )
    except BrokerAdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"topología declarada en el vhost {result.vhost!r}")
    for name in result.created:
        print(f"cuenta creada: {name}")
    for name in result.existing:
        print(f"cuenta existente (contraseña sin cambios, permisos aplicados): {name}")
    if args.print_credentials:
        print(json.dumps(result.created, ensure_ascii=False), flush=True)
    elif result.created:
        print(
            "contraseñas no mostradas: use --print-credentials o "
            "`rabbitmqctl change_password <cuenta>`"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="defensa311")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args, load_settings())
    return result


if __name__ == "__main__":
    raise SystemExit(main())
