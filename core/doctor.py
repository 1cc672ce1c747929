"""Health checks of a Ponder deployment: database, broker, model backend and platform tokens.

Each check is a function of the settings that returns a CheckResult and never raises for the
failure it looks for. Details name hosts and files but never a password or a token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.config import Settings
from core.db import current_revision, head_revision
from core.errors import ConfigurationError, ModelError

logger = logging.getLogger(__name__)

CheckStatus = Literal["ok", "failed", "skipped"]
CHECK_TIMEOUT_SECONDS = 5.0
REDACTED = "***"

# A Discord bot token is three base64url parts joined by dots: the bot's user id, a timestamp
# and an HMAC. Telegram's is the bot id, a colon and a 35-character secret.
DISCORD_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{17,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")
TELEGRAM_TOKEN_PATTERN = re.compile(r"[0-9]{5,}:[A-Za-z0-9_-]{30,}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: its name, whether it passed, and a detail safe to print."""

    name: str
    status: CheckStatus
    detail: str

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


def _redact(message: str, secrets: Sequence[str | None]) -> str:
    """Replace every secret in `message` with asterisks, as a last guard for driver messages."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, REDACTED)
    return message


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def safe_database_url(url: str) -> str:
    """Return the URL with its password replaced by asterisks, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def _is_missing_sqlite_file(backend: str, database: str | None) -> bool:
    # Connecting would create an empty file, so a missing one is reported before connecting.
    if backend != "sqlite" or database in (None, "", ":memory:"):
        return False
    return not Path(database or "").is_file()


def _database_engine(url: str) -> Engine:
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = int(CHECK_TIMEOUT_SECONDS)
    return create_engine(url, connect_args=connect_args)


def check_database(settings: Settings) -> CheckResult:
    """Check that the database accepts a connection and is at the newest migration."""
    url = settings.resolved_database_url
    display_url = safe_database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        return CheckResult("database", "failed", f"invalid PONDER_DATABASE_URL: {exc}")
    password = parsed.password if isinstance(parsed.password, str) else None

    if _is_missing_sqlite_file(parsed.get_backend_name(), parsed.database):
        return CheckResult(
            "database",
            "failed",
            f"{display_url}: the database file does not exist; run `ponder db upgrade`",
        )

    engine = _database_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        return CheckResult(
            "database", "failed", _redact(f"{display_url}: cannot connect: {reason}", [password])
        )
    finally:
        engine.dispose()

    head = head_revision()
    if current != head:
        return CheckResult(
            "database",
            "failed",
            f"{display_url}: at migration {current or 'none (empty database)'}, but the newest is "
            f"{head}; run `ponder db upgrade`",
        )
    return CheckResult("database", "ok", f"{display_url}: reachable, at migration head {head}")


def check_broker(settings: Settings) -> CheckResult:
    """Check that the Celery broker accepts a connection; skipped when none is configured."""
    if not settings.broker_url:
        return CheckResult("broker", "skipped", "PONDER_BROKER_URL is not set; answers run inline")
    from kombu import Connection
    from kombu.utils.url import maybe_sanitize_url

    connection = Connection(settings.broker_url, connect_timeout=CHECK_TIMEOUT_SECONDS)
    display_url = maybe_sanitize_url(settings.broker_url)  # replaces a password with asterisks
    password = connection.password if isinstance(connection.password, str) else None
    try:
        connection.ensure_connection(max_retries=1, timeout=int(CHECK_TIMEOUT_SECONDS))
    except Exception as exc:  # kombu raises the transport's own errors; any of them is a failure
        return CheckResult(
            "broker",
            "failed",
            _redact(f"{display_url}: cannot connect: {_first_line(exc)}", [password]),
        )
    finally:
        connection.release()
    return CheckResult("broker", "ok", f"{display_url}: reachable, queue {settings.task_queue!r}")


def check_model(settings: Settings) -> CheckResult:
    """Check the model backend: the embedded model loads, or Ollama has the configured model."""
    if settings.model_backend == "ollama":
        return asyncio.run(_check_ollama(settings))
    return _check_embedded(settings)


def _check_embedded(settings: Settings) -> CheckResult:
    from core.llm.base import ChatMessage
    from core.llm.embedded import EmbeddedClient, default_model_path

    try:
        path = settings.embedded_model_path or default_model_path()
    except ConfigurationError as exc:
        return CheckResult("model", "failed", str(exc))
    if not path.is_file():
        return CheckResult(
            "model",
            "failed",
            f"embedded model file {str(path)!r} does not exist; set PONDER_EMBEDDED_MODEL_PATH "
            "to a GGUF file",
        )
    client = EmbeddedClient(path, context_tokens=settings.embedded_context_tokens, threads=1)
    try:
        # Counting tokens loads the model and its chat template without generating.
        client.count_tokens([ChatMessage(role="user", content="ping")])
    except (ConfigurationError, ModelError) as exc:
        return CheckResult("model", "failed", str(exc))
    finally:
        asyncio.run(client.close())
    return CheckResult("model", "ok", f"embedded model {path.name} loads")


async def _check_ollama(settings: Settings) -> CheckResult:
    from core.llm.ollama import OllamaClient

    host, model = settings.ollama_host, settings.ollama_model
    try:
        client = OllamaClient(
            host=host,
            model=model,
            timeout_seconds=min(settings.model_timeout_seconds, CHECK_TIMEOUT_SECONDS),
        )
    except ConfigurationError as exc:
        return CheckResult("model", "failed", str(exc))
    try:
        is_pulled = await client.has_model()
    except ModelError as exc:
        return CheckResult("model", "failed", str(exc))
    finally:
        await client.close()
    if not is_pulled:
        return CheckResult(
            "model",
            "failed",
            f"Ollama at {host} answers, but model {model!r} is not pulled; run "
            f"`ollama pull {model}` on that host",
        )
    return CheckResult("model", "ok", f"Ollama at {host} answers and has {model!r}")


def _check_token(
    name: str, variable: str, token: SecretStr | None, pattern: re.Pattern[str], expected: str
) -> CheckResult:
    if token is None or not token.get_secret_value():
        return CheckResult(name, "skipped", f"{variable} is not set")
    value = token.get_secret_value()
    if value != value.strip():
        return CheckResult(name, "failed", f"{variable} has blanks around it; remove them")
    if pattern.fullmatch(value) is None:
        return CheckResult(
            name,
            "failed",
            f"{variable} is malformed ({len(value)} characters): expected {expected}; copy the "
            "token again",
        )
    return CheckResult(name, "ok", f"{variable} is set and well-formed")


def check_discord_token(settings: Settings) -> CheckResult:
    """Check the form of the Discord bot token without contacting Discord."""
    return _check_token(
        "discord_token",
        "PONDER_DISCORD_TOKEN",
        settings.discord_token,
        DISCORD_TOKEN_PATTERN,
        "three base64url parts joined by dots, from the Developer Portal's Bot page",
    )


def check_telegram_token(settings: Settings) -> CheckResult:
    """Check the form of the Telegram bot token without contacting Telegram."""
    return _check_token(
        "telegram_token",
        "PONDER_TELEGRAM_TOKEN",
        settings.telegram_token,
        TELEGRAM_TOKEN_PATTERN,
        "the bot id, a colon and a secret of 30 or more characters, as @BotFather sends it",
    )


CHECKS: dict[str, Callable[[Settings], CheckResult]] = {
    "database": check_database,
    "broker": check_broker,
    "model": check_model,
    "discord_token": check_discord_token,
    "telegram_token": check_telegram_token,
}


def run_checks(settings: Settings, names: Sequence[str] | None = None) -> list[CheckResult]:
    """Run the named checks, or all of them, in the order of CHECKS."""
    chosen = list(CHECKS) if names is None else list(names)
    unknown = sorted(set(chosen) - set(CHECKS))
    if unknown:
        raise ConfigurationError(
            f"unknown check(s) {', '.join(map(repr, unknown))}; valid checks: {', '.join(CHECKS)}"
        )
    results = [CHECKS[name](settings) for name in CHECKS if name in chosen]
    for result in results:
        logger.debug("check %s: %s", result.name, result.status)
    return results
