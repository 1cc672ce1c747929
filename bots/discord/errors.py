"""The bot's one error handler: a short fixed message in the chat, the details in the log."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from core.errors import PonderError

logger = logging.getLogger(__name__)

INVALID_INPUT_MESSAGE = "That input could not be read. Please check the command's options."


def user_message_for(error: BaseException, *, context: str) -> str:
    """Return the chat message for an error, logging it; only Ponder's own errors get details.

    Ponder's errors are expected outcomes, such as an empty question or a used-up budget, so they
    are logged without a traceback. Any other error is a bug and is logged with one.
    """
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, PonderError):
        logger.info("%s: %s: %s", context, type(error).__name__, error)
        return error.user_message
    if isinstance(error, app_commands.TransformerError):
        logger.info("%s: %s", context, error)
        return INVALID_INPUT_MESSAGE
    logger.error("%s failed", context, exc_info=error)
    return PonderError.user_message


async def report_interaction_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user of a slash command what failed: privately unless the reply is public.

    Before the interaction is acknowledged the message is ephemeral. After `/ask` deferred
    with a public "thinking" response, Discord fixes the response's visibility, so the message
    replaces that response.
    """
    command = interaction.command.qualified_name if interaction.command else "interaction"
    context = f"/{command} from discord:{interaction.user.id}"
    message = user_message_for(error, context=context)
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=message)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException as exc:
        logger.warning("%s: sending the error message failed: %s", context, exc)


async def report_message_error(message: discord.Message, error: BaseException) -> None:
    """Reply to a message whose question failed to store with the error's short message."""
    context = f"message {message.id} from discord:{message.author.id}"
    text = user_message_for(error, context=context)
    try:
        await message.reply(text, mention_author=False)
    except discord.HTTPException as exc:
        logger.warning("%s: sending the error reply failed: %s", context, exc)
