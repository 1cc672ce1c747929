"""Helpers shared by the `ponder` subcommands: logging set-up, errors and option parsing."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from core.errors import PonderError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PONDER_LOGGERS = ("bots", "core", "tasks")


def configure_logging(level: str) -> None:
    """Log to stderr, so that stdout carries only the command's output.

    Ponder's own loggers use `level`; other libraries log warnings and errors only. That also
    keeps httpx from logging request URLs at INFO, which for Telegram contain the bot token.
    """
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in PONDER_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def fail(message: str, *, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn Ponder's errors into a one-line message and a non-zero exit code."""
    try:
        yield
    except PonderError as exc:
        fail(str(exc))


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
