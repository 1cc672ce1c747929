"""Health checks of a Ponder deployment: database, broker, model backend and platform tokens.

Each check is a function of the settings that returns a CheckResult and never raises for the
failure it looks for. `run_checks` turns any other exception into a failed row. Details name
hosts and files but never a password or a token: URLs are shown through `safe_url`, and each
exception text passes through `_redact`, because drivers may quote the secrets they were given.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.config import Settings
from core.db import current_revision, head_revision
from core.errors import ConfigurationError, ModelError
from core.planner import load_policy

logger = logging.getLogger(__name__)

CheckStatus = Literal["ok", "failed", "skipped"]
CHECK_TIMEOUT_SECONDS = 5.0
REDACTED = "***"
# A query parameter whose name contains one of these words is a secret, such as libpq's
# `password` and `sslpassword` or an `api_token`.
SECRET_QUERY_WORDS = ("password", "secret", "token")

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
    # Longer secrets first, so that a secret containing a shorter one is replaced whole.
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        message = message.replace(secret, REDACTED)
    return message


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _split_url(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # urlsplit rejects, for example, an unclosed IPv6 bracket
        return None


def _is_secret_parameter(name: str) -> bool:
    lowered = unquote_plus(name).lower()
    return any(word in lowered for word in SECRET_QUERY_WORDS)


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, separator, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if separator and _is_secret_parameter(name) else pair)
    return "&".join(pairs)


def safe_url(url: str) -> str:
    """Return the URL with its password and secret query values replaced by asterisks.

    >>> safe_url("postgresql://ponder:pw@db:5432/ponder?sslmode=require&password=pw2")
    'postgresql://ponder:***@db:5432/ponder?sslmode=require&password=***'
    """
    parts = _split_url(url)
    if parts is None:
        return "<unparsable URL>"
    rendered = url
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        username = userinfo.partition(":")[0]
        rendered = rendered.replace(parts.netloc, f"{username}:{REDACTED}@{host}", 1)
    if parts.query:
        rendered = rendered.replace(f"?{parts.query}", f"?{_mask_query(parts.query)}", 1)
    return rendered


def url_secrets(url: str | None) -> list[str]:
    """Return the password and secret query values of a URL, as written and decoded."""
    parts = _split_url(url) if url else None
    if parts is None:
        return []
    secrets: list[str] = []
    if parts.password:
        secrets += [parts.password, unquote(parts.password)]
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if value and _is_secret_parameter(name):
            secrets += [value, unquote_plus(value)]
    return secrets


def settings_secrets(settings: Settings) -> list[str]:
    """Return every secret in the settings that a check's detail must not show."""
    secrets = [
        *url_secrets(settings.resolved_database_url),
        *url_secrets(settings.broker_url),
        *url_secrets(settings.ollama_host),
    ]
    for token in (
        settings.discord_token,
        settings.telegram_token,
        settings.telegram_webhook_secret,
    ):
        if token is not None:
            secrets.append(token.get_secret_value())
    return secrets


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
    display_url = safe_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        return CheckResult("database", "failed", f"invalid PONDER_DATABASE_URL: {exc}")
    # SQLAlchemy and urlsplit can disagree on where an unencoded password ends; hide both.
    secrets = [parsed.password if isinstance(parsed.password, str) else None, *url_secrets(url)]

    if _is_missing_sqlite_file(parsed.get_backend_name(), parsed.database):
        return CheckResult(
            "database",
            "failed",
            f"{display_url}: the database file does not exist; run `ponder db upgrade`",
        )

    try:
        engine = _database_engine(url)
    except (ImportError, SQLAlchemyError) as exc:
        # create_engine imports the driver, so a missing one (MySQLdb for mysql://) fails here.
        return CheckResult(
            "database",
            "failed",
            f"{display_url}: cannot load the database driver: "
            f"{_redact(_first_line(exc), secrets)}; install it, or use a sqlite:// or "
            "postgresql+psycopg:// URL",
        )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        return CheckResult(
            "database", "failed", f"{display_url}: cannot connect: {_redact(reason, secrets)}"
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

    display_url = safe_url(settings.broker_url)
    secrets = url_secrets(settings.broker_url)
    try:
        connection = Connection(settings.broker_url, connect_timeout=CHECK_TIMEOUT_SECONDS)
    except (TypeError, ValueError) as exc:
        # kombu passes query parameters as keyword arguments, so `?password=` next to the
        # password slot of the URL raises TypeError.
        return CheckResult(
            "broker",
            "failed",
            f"invalid PONDER_BROKER_URL {display_url}: kombu cannot parse it "
            f"({_redact(_first_line(exc), secrets)}); write the password before the host, as in "
            "redis://:PASSWORD@127.0.0.1:6379/0",
        )
    try:
        connection.ensure_connection(max_retries=1, timeout=int(CHECK_TIMEOUT_SECONDS))
    except Exception as exc:  # kombu raises the transport's own errors; any of them is a failure
        return CheckResult(
            "broker",
            "failed",
            f"{display_url}: cannot connect: {_redact(_first_line(exc), secrets)}",
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


def check_policy(settings: Settings) -> CheckResult:
    """Check PONDER_POLICY with `load_policy`, the validation the worker runs before planning."""
    try:
        load_policy(settings.policy)
    except ConfigurationError as exc:
        return CheckResult("policy", "failed", str(exc))
    if not settings.policy:
        return CheckResult("policy", "ok", "PONDER_POLICY is not set; the default policy applies")
    return CheckResult(
        "policy", "ok", f"PONDER_POLICY is valid and sets {', '.join(sorted(settings.policy))}"
    )


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
    "policy": check_policy,
    "discord_token": check_discord_token,
    "telegram_token": check_telegram_token,
}


def run_checks(settings: Settings, names: Sequence[str] | None = None) -> list[CheckResult]:
    """Run the named checks, or all of them, in the order of CHECKS.

    A check that raises yields a failed row instead, so one broken check never hides the others.
    """
    chosen = list(CHECKS) if names is None else list(names)
    unknown = sorted(set(chosen) - set(CHECKS))
    if unknown:
        raise ConfigurationError(
            f"unknown check(s) {', '.join(map(repr, unknown))}; valid checks: {', '.join(CHECKS)}"
        )
    results = [_run_check(name, settings) for name in CHECKS if name in chosen]
    for result in results:
        logger.debug("check %s: %s", result.name, result.status)
    return results


def _run_check(name: str, settings: Settings) -> CheckResult:
    try:
        return CHECKS[name](settings)
    except Exception as exc:  # a crashing check becomes a failed row, not a traceback
        # The traceback stays out of the log too, because exception texts may contain secrets.
        logger.warning("check %s raised %s", name, type(exc).__name__)
        reason = _redact(_first_line(exc), settings_secrets(settings))
        return CheckResult(
            name,
            "failed",
            f"the check raised {type(exc).__name__}: {reason}; run it again, and report this "
            "output if it repeats",
        )
