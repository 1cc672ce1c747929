"""`/budget` and the `/ponder` admin commands, run through the core command layer.

The command layer decides who is an admin; this module only reports who is asking, including
whether the member has Discord's Manage Server permission. Replies are ephemeral.
"""

from __future__ import annotations

import asyncio
import logging

import discord

from bots.discord.asking import PLATFORM, BotServices
from core.chunking import split_message
from core.commands import Actor, CommandName, CommandRequest, run_command
from core.config import BudgetPeriod

logger = logging.getLogger(__name__)

MAX_DISCORD_MESSAGE_CHARS = 2_000


def actor_for(interaction: discord.Interaction) -> Actor:
    """Return who runs a command; Manage Server counts only inside a server."""
    return Actor(
        platform=PLATFORM,
        user_id=str(interaction.user.id),
        display_name=interaction.user.display_name,
        is_server_manager=interaction.guild_id is not None and interaction.permissions.manage_guild,
    )


def target_ref(user: discord.abc.User | None) -> str | None:
    """Return a Discord user as the `platform:id` the command layer takes."""
    return f"{PLATFORM}:{user.id}" if user is not None else None


async def run_chat_command(
    interaction: discord.Interaction,
    services: BotServices,
    name: CommandName,
    *,
    user: discord.abc.User | None = None,
    tokens: int | None = None,
    period: BudgetPeriod | None = None,
    top: int | None = None,
    question_id: int | None = None,
    question_cap_tokens: int | None = None,
    reason: str | None = None,
) -> None:
    """Acknowledge privately, run the command in a thread and show its reply privately."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    request = CommandRequest(
        actor=actor_for(interaction),
        name=name,
        target=target_ref(user),
        tokens=tokens,
        period=period,
        top=top,
        question_id=question_id,
        question_cap_tokens=question_cap_tokens,
        reason=reason,
    )
    reply = await asyncio.to_thread(run_command, services.engine, services.settings, request)

    parts = split_message(reply.text, max_length=MAX_DISCORD_MESSAGE_CHARS) or ["Done."]
    await interaction.edit_original_response(content=parts[0])
    for part in parts[1:]:
        await interaction.followup.send(part, ephemeral=True)
