"""The health checks of core/doctor.py and `ponder doctor`: each check's pass and fail paths."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bots.cli.main import app
from core.config import Settings, get_settings
from core.db import upgrade
from core.doctor import (
    CHECKS,
    CheckResult,
    check_broker,
    check_database,
    check_discord_token,
    check_model,
    check_policy,
    check_telegram_token,
    run_checks,
    safe_url,
)
from core.errors import ConfigurationError
from tests.fakes.ollama_server import FakeOllamaServer

PASSWORD = "Sup3rSecretPassw0rd"
DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_with(settings: Settings, **changes: object) -> Settings:
    """Return a validated copy of the settings with some fields changed."""
    return Settings(_env_file=None, **{**dict(settings), **changes})  # type: ignore[arg-type]


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    server = FakeOllamaServer(models=["qwen2.5:7b"]).start()
    yield server
    server.stop()


def test_database_ok_at_head(settings: Settings, migrated_engine: Engine) -> None:
    result = check_database(settings)
    assert result.status == "ok"
    assert "at migration head" in result.detail


def test_database_missing_sqlite_file(settings: Settings) -> None:
    result = check_database(settings)
    assert result.status == "failed"
    assert "does not exist; run `ponder db upgrade`" in result.detail


@pytest.mark.postgres
def test_database_behind_head(settings: Settings, postgres_url: str) -> None:
    result = check_database(settings_with(settings, database_url=postgres_url))
    assert result.status == "failed"
    assert "none (empty database)" in result.detail
    assert "run `ponder db upgrade`" in result.detail


@pytest.mark.postgres
def test_database_ok_on_postgres(settings: Settings, postgres_url: str) -> None:
    upgrade(postgres_url)
    result = check_database(settings_with(settings, database_url=postgres_url))
    assert result.status == "ok"


def test_database_unreachable_hides_password(settings: Settings) -> None:
    url = f"postgresql+psycopg://ponder:{PASSWORD}@127.0.0.1:{closed_port()}/ponder"

    result = check_database(settings_with(settings, database_url=url))

    assert result.status == "failed"
    assert "cannot connect" in result.detail
    assert PASSWORD not in result.detail
    assert "ponder:***@127.0.0.1" in result.detail


def test_database_query_password_hidden(settings: Settings) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nodb?password={PASSWORD}"

    result = check_database(settings_with(settings, database_url=url))

    assert result.status == "failed"
    assert "/nodb?password=***: cannot connect" in result.detail
    assert PASSWORD not in result.detail


def test_database_missing_driver_fails(settings: Settings) -> None:
    port = closed_port()
    url = f"mysql://ponder:{PASSWORD}@127.0.0.1:{port}/ponder"

    result = check_database(settings_with(settings, database_url=url))

    assert result.status == "failed"
    assert result.detail == (
        f"mysql://ponder:***@127.0.0.1:{port}/ponder: cannot load "
        "the database driver: No module named 'MySQLdb'; install it, or use a sqlite:// or "
        "postgresql+psycopg:// URL"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://ponder:pw@db:5432/ponder?sslmode=require&sslpassword=key",
            "postgresql://ponder:***@db:5432/ponder?sslmode=require&sslpassword=***",
        ),
        ("redis://127.0.0.1:6379/0?Password=X", "redis://127.0.0.1:6379/0?Password=***"),
        (
            "http://127.0.0.1:11434/?api_token=abc&client_secret=def&model=qwen",
            "http://127.0.0.1:11434/?api_token=***&client_secret=***&model=qwen",
        ),
        ("sqlite:////tmp/ponder.sqlite3", "sqlite:////tmp/ponder.sqlite3"),
        ("redis://:p%40ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_safe_url_hides_secrets(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_broker_skipped_without_url(settings: Settings) -> None:
    assert check_broker(settings).status == "skipped"


@pytest.mark.redis
def test_broker_ok(settings: Settings, redis_url: str) -> None:
    result = check_broker(settings_with(settings, broker_url=redis_url))
    assert result.status == "ok"
    assert "reachable" in result.detail


def test_broker_unreachable_hides_password(settings: Settings) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"

    result = check_broker(settings_with(settings, broker_url=url))

    assert result.status == "failed"
    assert "cannot connect" in result.detail
    assert PASSWORD not in result.detail


def test_broker_query_password_fails_cleanly(settings: Settings) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0?password={PASSWORD}"

    result = check_broker(settings_with(settings, broker_url=url))

    assert result.status == "failed"
    assert result.detail == (
        f"invalid PONDER_BROKER_URL {url.replace(PASSWORD, '***')}: kombu cannot parse it "
        "(dict() got multiple values for keyword argument 'password'); write the password "
        "before the host, as in redis://:PASSWORD@127.0.0.1:6379/0"
    )


def test_policy_ok_when_unset(settings: Settings) -> None:
    result = check_policy(settings)
    assert result.status == "ok"
    assert result.detail == "PONDER_POLICY is not set; the default policy applies"


def test_policy_ok_with_valid_override(settings: Settings) -> None:
    result = check_policy(settings_with(settings, policy={"escalate_below": 0.5}))
    assert result.status == "ok"
    assert result.detail == "PONDER_POLICY is valid and sets escalate_below"


def test_policy_invalid_fails(settings: Settings) -> None:
    result = check_policy(settings_with(settings, policy={"extreme": {}}))
    assert result.status == "failed"
    assert result.detail == (
        "PONDER_POLICY is invalid at extreme: Extra inputs are not permitted; see the policy "
        "table in the README"
    )


def test_run_checks_turns_exception_into_row(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = settings_with(settings, broker_url=f"redis://:{PASSWORD}@127.0.0.1:6379/0")

    def raising_check(_: Settings) -> CheckResult:
        raise RuntimeError(f"driver quoted {PASSWORD} back\nsecond line")

    monkeypatch.setitem(CHECKS, "model", raising_check)

    [result] = run_checks(configured, ["model"])

    assert result.status == "failed"
    assert result.detail == (
        "the check raised RuntimeError: driver quoted *** back; run it again, and report this "
        "output if it repeats"
    )


@pytest.mark.model
def test_embedded_model_loads(settings: Settings) -> None:
    result = check_model(settings)
    assert result.status == "ok"
    assert "SmolLM2-135M-Instruct" in result.detail


def test_embedded_model_file_missing(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    result = check_model(settings_with(settings, embedded_model_path=missing))
    assert result.status == "failed"
    assert "does not exist" in result.detail


def test_embedded_model_file_not_gguf(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a GGUF file")
    result = check_model(settings_with(settings, embedded_model_path=broken))
    assert result.status == "failed"
    assert "could not load the GGUF model" in result.detail


def test_ollama_has_model(settings: Settings, ollama: FakeOllamaServer) -> None:
    result = check_model(settings_with(settings, model_backend="ollama", ollama_host=ollama.url))
    assert result.status == "ok"
    assert "'qwen2.5:7b'" in result.detail
    assert [request.path for request in ollama.requests] == ["/api/tags"]


def test_ollama_model_not_pulled(settings: Settings, ollama: FakeOllamaServer) -> None:
    result = check_model(
        settings_with(
            settings, model_backend="ollama", ollama_host=ollama.url, ollama_model="llama3:8b"
        )
    )
    assert result.status == "failed"
    assert "`ollama pull llama3:8b`" in result.detail


def test_ollama_unreachable(settings: Settings) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    result = check_model(settings_with(settings, model_backend="ollama", ollama_host=host))
    assert result.status == "failed"
    assert "cannot reach Ollama" in result.detail


def test_tokens_skipped_when_unset(settings: Settings) -> None:
    assert check_discord_token(settings).status == "skipped"
    assert check_telegram_token(settings).status == "skipped"


def test_tokens_well_formed(settings: Settings) -> None:
    configured = settings_with(settings, discord_token=DISCORD_TOKEN, telegram_token=TELEGRAM_TOKEN)
    discord, telegram = check_discord_token(configured), check_telegram_token(configured)
    assert discord.status == "ok"
    assert telegram.status == "ok"
    assert DISCORD_TOKEN not in discord.detail
    assert TELEGRAM_TOKEN not in telegram.detail


@pytest.mark.parametrize(
    ("discord", "telegram"),
    [
        ("not-a-token", "123456789"),
        (DISCORD_TOKEN.replace(".", ""), TELEGRAM_TOKEN.replace(":", "")),
        (f" {DISCORD_TOKEN}", f"{TELEGRAM_TOKEN}\n"),
    ],
)
def test_tokens_malformed(settings: Settings, discord: str, telegram: str) -> None:
    configured = settings_with(settings, discord_token=discord, telegram_token=telegram)
    discord_result = check_discord_token(configured)
    telegram_result = check_telegram_token(configured)
    assert discord_result.status == "failed"
    assert telegram_result.status == "failed"
    assert discord.strip() not in discord_result.detail
    assert telegram.strip() not in telegram_result.detail


def test_run_checks_rejects_unknown_name(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="unknown check"):
        run_checks(settings, ["database", "disk"])


def test_run_checks_keeps_order(settings: Settings) -> None:
    names = [result.name for result in run_checks(settings, ["telegram_token", "broker"])]
    assert names == ["broker", "telegram_token"]


def invoke_doctor(*arguments: str) -> tuple[int, str]:
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["doctor", *arguments])
    return result.exit_code, result.output


def test_cli_exits_zero_when_checks_pass(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, ollama: FakeOllamaServer
) -> None:
    upgrade(ponder_env["PONDER_DATABASE_URL"])
    monkeypatch.setenv("PONDER_MODEL_BACKEND", "ollama")
    monkeypatch.setenv("PONDER_OLLAMA_HOST", ollama.url)

    exit_code, output = invoke_doctor("--json")

    payload = json.loads(output)
    assert exit_code == 0
    assert payload["ok"] is True
    assert [check["status"] for check in payload["checks"]] == [
        "ok",
        "skipped",
        "ok",
        "ok",
        "skipped",
        "skipped",
    ]


def test_cli_prints_table_and_exits_one(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_DISCORD_TOKEN", "malformed-token-value")

    exit_code, output = invoke_doctor("--check", "database", "--check", "discord_token")

    assert exit_code == 1
    assert "Ponder doctor" in output
    assert "discord_token" in output
    assert "malformed-token-value" not in output


def test_cli_rejects_unknown_check(ponder_env: dict[str, str]) -> None:
    exit_code, output = invoke_doctor("--check", "disk")
    assert exit_code == 1
    assert "unknown check(s) 'disk'" in output


def test_cli_output_and_logs_hide_secrets(ponder_env: dict[str, str]) -> None:
    env = {
        **ponder_env,
        "PATH": str(Path(sys.executable).parent),
        "PONDER_DATABASE_URL": (
            f"postgresql+psycopg://ponder:{PASSWORD}@127.0.0.1:{closed_port()}/ponder"
        ),
        "PONDER_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0",
        "PONDER_DISCORD_TOKEN": DISCORD_TOKEN,
        "PONDER_TELEGRAM_TOKEN": "123:short",
        "PONDER_MODEL_BACKEND": "ollama",
        "PONDER_OLLAMA_HOST": f"http://127.0.0.1:{closed_port()}",
        "PONDER_LOG_LEVEL": "DEBUG",
    }

    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ponder"), "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    combined = completed.stdout + completed.stderr
    assert completed.returncode == 1
    assert "cannot connect" in combined
    assert PASSWORD not in combined
    assert DISCORD_TOKEN not in combined
    assert "123:short" not in combined


def test_cli_invalid_policy_exits_one(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_POLICY", '{"extreme": {}}')

    exit_code, output = invoke_doctor("--check", "policy", "--json")

    payload = json.loads(output)
    assert exit_code == 1
    assert payload["checks"][0]["status"] == "failed"
    assert payload["checks"][0]["detail"].startswith("PONDER_POLICY is invalid at extreme")


def test_cli_bad_urls_show_rows_not_tracebacks(ponder_env: dict[str, str]) -> None:
    env = {
        **ponder_env,
        "PATH": str(Path(sys.executable).parent),
        "PONDER_DATABASE_URL": f"mysql://ponder:{PASSWORD}@127.0.0.1:{closed_port()}/ponder",
        "PONDER_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0?password={PASSWORD}",
        "PONDER_LOG_LEVEL": "DEBUG",
    }

    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "ponder"),
            "doctor",
            "--check",
            "database",
            "--check",
            "broker",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    payload = json.loads(completed.stdout)
    statuses = {check["name"]: check["status"] for check in payload["checks"]}
    assert completed.returncode == 1
    assert statuses["database"] == "failed"
    assert statuses["broker"] == "failed"
    assert "Traceback" not in completed.stderr
    assert PASSWORD not in completed.stdout + completed.stderr


def test_failed_migration_hides_password(ponder_env: dict[str, str]) -> None:
    env = {
        **ponder_env,
        "PATH": str(Path(sys.executable).parent),
        "PONDER_DATABASE_URL": (
            f"postgresql+psycopg://ponder:{PASSWORD}@127.0.0.1:{closed_port()}/ponder"
        ),
        "PONDER_LOG_LEVEL": "DEBUG",
    }

    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ponder"), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    combined = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "Connection refused" in combined
    assert PASSWORD not in combined
