"""The `ponder` command: asks questions, runs workers and bots, and administers Ponder."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from bots.cli.ask import ask, strategies
from bots.cli.common import configure_logging
from bots.cli.db import db_app
from bots.cli.worker import worker
from core.config import get_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="ponder",
    help="Ponder: a chat bot that thinks harder when it matters, within per-user budgets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(ask)
app.command()(strategies)
app.command()(worker)
app.add_typer(db_app, name="db")


@app.callback()
def main_options(
    log_level: Annotated[
        str | None, typer.Option(help="Log level; default PONDER_LOG_LEVEL or INFO.")
    ] = None,
) -> None:
    """Set up logging before any subcommand runs."""
    configure_logging(log_level or get_settings().log_level)


def main() -> None:
    app()
