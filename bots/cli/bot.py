"""`ponder bot`: run a chat platform bot in the foreground."""

from __future__ import annotations

import typer

from bots.cli.common import reported_errors
from core.config import get_settings

bot_app = typer.Typer(help="Run a chat platform bot.", no_args_is_help=True)


@bot_app.command("discord")
def discord_bot() -> None:
    """Connect to Discord and answer /ask, mentions of the bot and replies to its answers."""
    settings = get_settings()
    with reported_errors():
        # Imported here so that other subcommands do not pay for importing discord.py.
        from bots.discord.bot import run_bot

        run_bot(settings)


@bot_app.command("telegram")
def telegram_bot() -> None:
    """Connect to Telegram and take questions from private chats, /ask, mentions and replies."""
    settings = get_settings()
    with reported_errors():
        # Imported here so that other subcommands do not pay for importing python-telegram-bot.
        from bots.telegram.bot import run_bot as run_telegram_bot

        run_telegram_bot(settings)
