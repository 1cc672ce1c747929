"""The Discord gateway bot: slash commands, mentions and replies, run by `ponder bot discord`.

Intents it requests, all but the last unprivileged:
- guilds: the servers and channels the bot is in, which slash commands and permissions need;
- guild_messages and dm_messages: message events, so that mentions, replies to answers and
  direct messages arrive;
- message_content (privileged, off unless PONDER_DISCORD_MESSAGE_CONTENT_INTENT is true): the
  text of every message. Without it Discord still sends the text of messages that mention the
  bot (a reply that pings the bot counts) and of direct messages, which is all Ponder needs
  unless users reply to answers with the ping turned off.
"""

from __future__ import annotations

import logging
from typing import Literal

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from bots.discord.admin import run_chat_command
from bots.discord.asking import BotServices, handle_ask, handle_message
from bots.discord.errors import report_interaction_error
from bots.discord.parsing import validate_token
from bots.discord.rest import NO_MENTIONS, protect_webhook_tokens_in_logs, use_api_base_url
from core.config import Settings
from core.schemas import Effort

logger = logging.getLogger(__name__)

PeriodChoice = Literal["day", "week", "month"]
MAX_USAGE_TOP = 100


def build_intents(settings: Settings) -> discord.Intents:
    """Return the gateway intents described in the module docstring."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = settings.discord_message_content_intent
    return intents


class PonderBot(discord.Client):
    """The gateway client; `tree` contains the slash commands, synced with Discord at start."""

    def __init__(self, services: BotServices) -> None:
        # No message the bot sends can ping anyone, whatever its text contains.
        super().__init__(intents=build_intents(services.settings), allowed_mentions=NO_MENTIONS)
        self.services = services
        self.tree = build_command_tree(self, services)

    async def setup_hook(self) -> None:
        commands = await self.tree.sync()
        logger.info("synced %d slash commands with Discord", len(commands))

    async def on_ready(self) -> None:
        assert self.user is not None
        logger.info(
            "connected to Discord as bot user %s in %d servers", self.user.id, len(self.guilds)
        )

    async def on_message(self, message: discord.Message) -> None:
        assert self.user is not None
        await handle_message(message, self.services, bot_user_id=self.user.id)


def build_command_tree(client: discord.Client, services: BotServices) -> app_commands.CommandTree:
    """Return the command tree with /ask, /budget and the /ponder admin group."""
    tree: app_commands.CommandTree = app_commands.CommandTree(client)
    tree.on_error = report_interaction_error  # type: ignore[method-assign]

    @tree.command(
        name="ask", description="Ask Ponder a question; it thinks harder when it matters."
    )
    @app_commands.describe(
        question="Your question.",
        effort="How hard to think: auto (Ponder decides), low, medium or high.",
    )
    async def ask(interaction: discord.Interaction, question: str, effort: Effort = "auto") -> None:
        await handle_ask(interaction, services, question=question, effort=effort)

    @tree.command(name="budget", description="Show your remaining token budget and its reset time.")
    async def budget(interaction: discord.Interaction) -> None:
        await run_chat_command(interaction, services, "my_budget")

    tree.add_command(build_admin_group(services))
    return tree


def build_admin_group(services: BotServices) -> app_commands.Group:
    """Return the /ponder group; the command layer rejects members who are not admins."""
    ponder = app_commands.Group(name="ponder", description="Ponder admin commands.")
    budget = app_commands.Group(name="budget", description="Token budgets.", parent=ponder)

    @budget.command(name="set", description="Set a user's token allowance per period.")
    @app_commands.describe(
        user="The user.",
        tokens="Tokens per period.",
        period="The period; unchanged when left out.",
        question_cap="Most tokens one question may spend; unchanged when left out.",
    )
    async def budget_set(
        interaction: discord.Interaction,
        user: discord.User,
        tokens: app_commands.Range[int, 0],
        period: PeriodChoice | None = None,
        question_cap: app_commands.Range[int, 0] | None = None,
    ) -> None:
        await run_chat_command(
            interaction,
            services,
            "budget_set",
            user=user,
            tokens=tokens,
            period=period,
            question_cap_tokens=question_cap,
        )

    @budget.command(name="show", description="Show a user's budget and usage.")
    async def budget_show(interaction: discord.Interaction, user: discord.User) -> None:
        await run_chat_command(interaction, services, "budget_show", user=user)

    @budget.command(name="reset", description="Forget a user's usage in the current period.")
    async def budget_reset(interaction: discord.Interaction, user: discord.User) -> None:
        await run_chat_command(interaction, services, "budget_reset", user=user)

    @budget.command(name="default", description="Set the allowance of users without their own.")
    @app_commands.describe(
        tokens="Tokens per period.", period="The period; unchanged when left out."
    )
    async def budget_default(
        interaction: discord.Interaction,
        tokens: app_commands.Range[int, 0],
        period: PeriodChoice | None = None,
    ) -> None:
        await run_chat_command(
            interaction, services, "budget_default", tokens=tokens, period=period
        )

    @ponder.command(name="usage", description="Show the users who spent the most tokens.")
    @app_commands.describe(top="How many users to list.", period="The period to count.")
    async def usage(
        interaction: discord.Interaction,
        top: app_commands.Range[int, 1, MAX_USAGE_TOP] | None = None,
        period: PeriodChoice | None = None,
    ) -> None:
        await run_chat_command(interaction, services, "usage", top=top, period=period)

    @ponder.command(name="block", description="Stop a user from asking Ponder.")
    @app_commands.describe(user="The user.", reason="Why; shown in the audit log.")
    async def block(
        interaction: discord.Interaction, user: discord.User, reason: str | None = None
    ) -> None:
        await run_chat_command(interaction, services, "block", user=user, reason=reason)

    @ponder.command(name="unblock", description="Let a blocked user ask Ponder again.")
    async def unblock(interaction: discord.Interaction, user: discord.User) -> None:
        await run_chat_command(interaction, services, "unblock", user=user)

    @ponder.command(name="why", description="Explain how Ponder answered a question.")
    @app_commands.describe(question_id="The question's number, as the footnote shows it.")
    async def why(
        interaction: discord.Interaction, question_id: app_commands.Range[int, 1]
    ) -> None:
        await run_chat_command(interaction, services, "why", question_id=question_id)

    return ponder


def use_gateway_url(url: str) -> None:
    """Connect the gateway to `url` instead of Discord's; discord.py 2.x reads a class attribute."""
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)


def run_bot(settings: Settings) -> None:
    """Connect to Discord and serve until interrupted; raise ConfigurationError without a token."""
    token = validate_token(settings.discord_token)
    use_api_base_url(settings.discord_api_base_url)
    if settings.discord_gateway_url:
        use_gateway_url(settings.discord_gateway_url)
    protect_webhook_tokens_in_logs()

    # Imported here so that importing the bot module opens no database and loads no Celery app.
    from tasks.answer import enqueue_answer
    from tasks.runtime import get_runtime

    runtime = get_runtime()
    services = BotServices(engine=runtime.engine, settings=settings, enqueue=enqueue_answer)
    bot = PonderBot(services)
    logger.info("starting the Discord bot (REST API %s)", settings.discord_api_base_url)
    # log_handler=None keeps Ponder's logging set-up instead of discord.py's own handler.
    bot.run(token, log_handler=None)
