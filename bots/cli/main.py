"""The `ponder` command: asks questions, runs workers and bots, and administers Ponder."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from bots.cli.admin import admin_app
from bots.cli.ask import ask, strategies
from bots.cli.bench import bench
from bots.cli.bot import bot_app
from bots.cli.calibrate import calibrate
from bots.cli.common import configure_logging, fail, reported_errors
from bots.cli.db import db_app
from bots.cli.doctor import doctor
from bots.cli.services import beat, flower
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
app.command()(bench)
app.command()(calibrate)
app.command()(strategies)
app.command()(worker)
app.command()(beat)
app.command()(flower)
app.command()(doctor)
app.add_typer(db_app, name="db")
app.add_typer(bot_app, name="bot")
app.add_typer(admin_app, name="admin")


@app.callback()
def main_options(
    log_level: Annotated[
        str | None, typer.Option(help="Log level; default PONDER_LOG_LEVEL or INFO.")
    ] = None,
) -> None:
    """Set up logging before any subcommand runs."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"PONDER_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        fail(f"invalid settings: {problems}", code=2)
    except SettingsError as exc:
        # pydantic-settings raises this before validation, for example on a JSON setting such
        # as PONDER_POLICY whose value is not JSON.
        fail(f"invalid settings: {exc}; check the value's JSON syntax", code=2)
    configure_logging(log_level or settings.log_level)


def main() -> None:
    """Run `ponder`; errors that escape a subcommand still end in one line, not a traceback."""
    try:
        with reported_errors():
            app()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
