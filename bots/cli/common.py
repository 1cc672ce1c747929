"""Helpers shared by the `ponder` subcommands: logging set-up, errors and option parsing."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, ProgrammingError

from core.config import get_settings
from core.errors import PonderError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PONDER_LOGGERS = ("bots", "core", "tasks")
# Shell convention: a process ended by signal N exits with 128 + N.
SIGNAL_EXIT_BASE = 128
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# PostgreSQL's SQLSTATE for "undefined_table", and SQLite's message for the same problem.
UNDEFINED_TABLE_SQLSTATE = "42P01"
SQLITE_NO_SUCH_TABLE = "no such table"
_PASSWORD_QUERY = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_PASSWORD_USERINFO = re.compile(r"(//[^/:@]*:)[^/@]*@")


def configure_logging(level: str) -> None:
    """Log to stderr, so that stdout carries only the command's output.

    Ponder's own loggers use `level`; other libraries log warnings and errors only. That also
    keeps httpx from logging request URLs at INFO, which for Telegram contain the bot token.
    """
    if level.upper() not in LOG_LEVELS:
        fail(f"invalid log level {level!r}; valid levels: {', '.join(LOG_LEVELS)}", code=2)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in PONDER_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


class InterruptedCommandError(Exception):
    """SIGINT or SIGTERM stopped a command; it exits with 128 + the signal number.

    Not a PonderError, so that code which turns a PonderError into "exit 1" lets it through to
    `reported_errors`.
    """

    def __init__(self, message: str, *, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = SIGNAL_EXIT_BASE + signal_number


def fail(message: str, *, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def redact_url(url: str) -> str:
    """Return `url` with its password, in the user part or a `password=` parameter, as ***."""
    try:
        rendered = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        rendered = _PASSWORD_USERINFO.sub(r"\1***@", url)
    return _PASSWORD_QUERY.sub(r"\1***", rendered)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn Ponder's errors, and the common failures of the database, migrations and input
    text, into a one-line message and a non-zero exit code."""
    try:
        yield
    except PonderError as exc:
        fail(str(exc))
    except InterruptedCommandError as exc:
        fail(str(exc), code=exc.exit_code)
    except (OperationalError, ProgrammingError) as exc:
        logger.debug("database error", exc_info=True)
        fail(database_error_message(exc))
    except CommandError as exc:
        logger.debug("migration error", exc_info=True)
        fail(f"migration failed: {exc}; `ponder db current` shows the revisions")
    except UnicodeEncodeError:
        logger.debug("text with surrogates", exc_info=True)
        fail("the text is not valid UTF-8")
    except OverflowError as exc:
        logger.debug("number out of range", exc_info=True)
        fail(f"invalid number: {exc}")
    except OSError as exc:
        if exc.filename is None:
            raise
        logger.debug("file error", exc_info=True)
        fail(
            f"cannot access {exc.filename!r}: {exc.strerror}; check PONDER_DATA_DIR, "
            "PONDER_DATABASE_URL and the folder's permissions"
        )


def database_error_message(exc: DBAPIError) -> str:
    """Describe a database error in one line, without the URL's password; re-raise a
    ProgrammingError other than a missing table."""
    original = exc.orig
    if getattr(
        original, "sqlstate", None
    ) == UNDEFINED_TABLE_SQLSTATE or SQLITE_NO_SUCH_TABLE in str(original):
        return "the database is not migrated; run `ponder db upgrade`"
    if not isinstance(exc, OperationalError):
        raise exc
    url = redact_url(get_settings().resolved_database_url)
    detail = " ".join(str(original).split())
    return f"cannot reach the database at {url}: {detail}; check PONDER_DATABASE_URL"


def parse_assignments(values: list[str] | None, *, option: str = "--set") -> dict[str, Any]:
    """Parse KEY=VALUE strings; values are read as JSON when they parse, else kept as text."""
    parsed: dict[str, Any] = {}
    for item in values or []:
        key, separator, raw = item.partition("=")
        if not separator or not key.strip():
            fail(f"invalid {option} value {item!r}; write KEY=VALUE, for example samples=8", code=2)
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


def print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, default=str))


Command = Callable[..., Any]
