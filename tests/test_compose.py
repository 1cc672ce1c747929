"""docker-compose.yml, the Dockerfile and .env.example: valid, consistent with the `ponder` CLI.

No Docker engine runs in the test environment, so the compose file is checked against the
Compose Specification's JSON schema (tests/data/README.md says where that copy comes from and
why it is vendored) and each Ponder service's command is run with `--help` through the CLI.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from bots.cli.main import app
from core.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose_spec.json"
ENV_LINE = re.compile(r"^#?\s*(PONDER_[A-Z0-9_]+)=(.*)$")
# Defaults that depend on the machine or are computed, so .env.example leaves them empty.
COMPUTED_DEFAULTS = {"data_dir"}


def load_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def ponder_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the services that run the Ponder image built from the Dockerfile."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build") == "." or service.get("image") == "ponder:latest"
    }


def invoke_help(arguments: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*arguments, "--help"])
    return result.exit_code, result.output


def test_compose_file_matches_schema() -> None:
    assert schema_errors(load_compose()) == []


def test_schema_rejects_unknown_service_key() -> None:
    compose = copy.deepcopy(load_compose())
    compose["services"]["redis"]["restart_policy"] = "always"

    errors = schema_errors(compose)

    assert len(errors) == 1
    assert "restart_policy" in errors[0]


def test_service_commands_exist_in_cli(ponder_env: dict[str, str]) -> None:
    services = ponder_services(load_compose())
    assert set(services) == {
        "migrate",
        "worker",
        "beat",
        "flower",
        "discord",
        "telegram",
    }
    for name, service in services.items():
        exit_code, output = invoke_help(service["command"])
        assert exit_code == 0, f"service {name}: `ponder {' '.join(service['command'])}`\n{output}"


def test_healthcheck_commands_exist_in_cli(ponder_env: dict[str, str]) -> None:
    checked = 0
    for name, service in load_compose()["services"].items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "ponder"]:
            exit_code, output = invoke_help(test[2:])
            assert exit_code == 0, f"healthcheck of {name}:\n{output}"
            checked += 1
    assert checked == 1


def test_redis_persists_with_append_only_file() -> None:
    command = load_compose()["services"]["redis"]["command"]
    position = command.index("--appendonly")
    assert command[position + 1] == "yes"


def test_ollama_pull_pulls_configured_model() -> None:
    service = load_compose()["services"]["ollama-pull"]
    assert service["entrypoint"] == ["ollama"]
    assert service["command"] == ["pull", "${PONDER_OLLAMA_MODEL:-qwen2.5:7b}"]
    assert service["depends_on"]["ollama"]["condition"] == "service_healthy"


def test_worker_waits_for_migrations_and_model() -> None:
    depends_on = load_compose()["services"]["worker"]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["ollama-pull"]["condition"] == "service_completed_successfully"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"


def test_migrate_waits_for_healthy_postgres() -> None:
    service = load_compose()["services"]["migrate"]
    assert service["command"] == ["db", "upgrade"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["restart"] == "no"


def test_worker_can_be_scaled() -> None:
    # `--scale worker=N` fails when the service fixes a container name or a host port.
    worker = load_compose()["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_bots_run_only_with_their_profile() -> None:
    services = load_compose()["services"]
    assert services["discord"]["profiles"] == ["discord"]
    assert services["telegram"]["profiles"] == ["telegram"]
    assert services["discord"]["command"] == ["bot", "discord"]
    assert services["telegram"]["command"] == ["bot", "telegram"]


def test_every_service_but_one_shots_has_healthcheck_or_dependency() -> None:
    services = load_compose()["services"]
    for name in ("redis", "postgres", "ollama", "worker"):
        assert "healthcheck" in services[name], name


def test_database_password_stays_out_of_url() -> None:
    environment = load_compose()["x-ponder"]["environment"]
    assert environment["PONDER_DATABASE_URL"] == "postgresql+psycopg://ponder@postgres:5432/ponder"
    assert environment["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_dockerfile_runs_ponder_with_monitoring_extra() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert "pip install '.[monitoring]'" in dockerfile
    assert 'ENTRYPOINT ["tini", "--", "ponder"]' in dockerfile
    assert "USER ponder" in dockerfile


def env_example_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            assert match.group(1) not in values, f"{match.group(1)} is documented twice"
            values[match.group(1)] = match.group(2).strip()
    return values


def test_env_example_documents_every_setting() -> None:
    documented = set(env_example_values())
    expected = {f"PONDER_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - documented) == []
    assert sorted(documented - expected) == []


@pytest.mark.parametrize("field_name", sorted(Settings.model_fields))
def test_env_example_shows_default(field_name: str, ponder_env: dict[str, str]) -> None:
    value = env_example_values()[f"PONDER_{field_name.upper()}"]
    expected = Settings.model_fields[field_name].get_default(call_default_factory=True)
    if value == "":
        assert field_name in COMPUTED_DEFAULTS or expected in (None, [], "", {})
        return
    parsed = Settings(_env_file=None, **{field_name: value})  # type: ignore[call-arg, arg-type]
    assert getattr(parsed, field_name) == expected, f"PONDER_{field_name.upper()}={value}"
