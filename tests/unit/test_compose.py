"""compose.yaml and the Dockerfile, checked without a Docker engine (there is none on the
team's machines): every command parses with the real ``defensa311`` CLI, every setting is
one the application reads, and the stack starts in a healthy order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.intake.observability import HttpLimits
from services.notifier.settings import NotifierSettings
from shared.cli import SERVICES, build_parser
from shared.key_links import KeyLinkSettings
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ("rabbitmq", "postgres", "mailpit")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    assert words[0] == "defensa311", words
    return words[1:]


def test_the_stack_has_every_part(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {*INFRA, "migrate", *SERVICES}
    assert "management" in services["rabbitmq"]["image"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "mailpit" in services["mailpit"]["image"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_with_the_real_cli(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    args = build_parser().parse_args(argv(services[name]))
    assert (args.command, args.service) == ("run", name)


def test_the_services_off_the_department_path_yield_the_cpu(
    services: dict[str, dict[str, Any]],
) -> None:
    weight = {name: services[name].get("cpu_shares", 1024) for name in SERVICES}
    assert weight["deadlines"] < weight["intake"] and weight["notifier"] < weight["router"]
    assert weight["intake"] == weight["router"] == 1024


def test_a_command_the_cli_does_not_know_is_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv({"command": ["defensa311", "run", "mailer"]}))


def test_the_migration_job_runs_once_before_the_services(
    services: dict[str, dict[str, Any]],
) -> None:
    migrate = services["migrate"]
    args = build_parser().parse_args(argv(migrate))
    assert (args.command, args.db_command) == ("db", "upgrade")
    assert migrate.get("restart", "no") == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
    assert services["notifier"]["depends_on"]["mailpit"]["condition"] == "service_healthy"


def test_long_running_containers_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in (*INFRA, *SERVICES):
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "/readyz" in " ".join(services["intake"]["healthcheck"]["test"])
    port = services["router"]["environment"]["DEFENSA311_METRICS_PORT"]
    for name in ("router", "deadlines", "notifier"):
        assert f":{port}/metrics" in " ".join(services[name]["healthcheck"]["test"])


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    declared = set(compose["volumes"])
    for name, path in (("rabbitmq", "/var/lib/rabbitmq"), ("postgres", "/var/lib/postgresql/data")):
        mounts = dict(v.split(":", 1) for v in services[name]["volumes"])
        assert path in mounts.values()
        assert set(mounts) <= declared


def test_the_console_is_published(services: dict[str, dict[str, Any]]) -> None:
    intake = services["intake"]
    port = intake["environment"]["DEFENSA311_HTTP_PORT"]
    assert any(str(p).endswith(f":{port}") for p in intake["ports"])


def test_every_setting_is_one_the_application_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    fields = (
        *Settings.model_fields,
        *NotifierSettings.model_fields,
        *HttpLimits.model_fields,
        *KeyLinkSettings.model_fields,
    )
    known = {f"DEFENSA311_{f.upper()}" for f in fields}
    for name in ("migrate", *SERVICES):
        env = services[name]["environment"]
        unknown = {k for k in env if k.startswith("DEFENSA311_")} - known
        assert not unknown, f"{name}: {unknown}"
        values = {k.removeprefix("DEFENSA311_").lower(): v for k, v in env.items()}
        settings = Settings(**values)
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.amqp_url.startswith("amqp://")
        assert NotifierSettings(**values).smtp_host == "mailpit"


def test_the_image_is_small_and_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.strip()
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    froms = [line for line in instructions if line.upper().startswith("FROM ")]
    assert froms and all("python:3.11-slim" in line for line in froms)
    assert len(froms) > 1 or "--no-cache-dir" in dockerfile
    users = [line.split(None, 1)[1] for line in instructions if line.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # The default command is one the CLI knows.
    cmd = next(line for line in reversed(instructions) if line.upper().startswith("CMD "))
    words = re.findall(r'"([^"]*)"', cmd)
    assert words[0] == "defensa311"
    build_parser().parse_args(words[1:])


def test_the_build_context_leaves_out_secrets_and_clutter() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "tests"} <= ignored
