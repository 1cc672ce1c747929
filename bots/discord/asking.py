"""Turning `/ask` and messages for the bot into stored, queued questions.

Storing a question and handing it to the broker block, so both run in a thread. Without a
broker, enqueueing runs the whole answer in that thread, which suits a single-process setup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import discord
from sqlalchemy import Engine

from bots.discord.errors import report_message_error
from bots.discord.parsing import IncomingMessage, decide_message
from bots.discord.targets import interaction_delivery, message_delivery
from core.config import Settings
from core.questions import find_answered_question, submit_question, validate_question_text
from core.schemas import AskRequest, Effort

logger = logging.getLogger(__name__)

PLATFORM = "discord"


@dataclass(frozen=True, slots=True)
class BotServices:
    """The handlers' dependencies: the database, the settings and the function that enqueues."""

    engine: Engine
    settings: Settings
    enqueue: Callable[[int], None]


def store_and_enqueue(services: BotServices, request: AskRequest) -> int:
    """Store a question and enqueue it after the commit; return its id."""
    question = submit_question(services.engine, services.settings, request)
    assert question.id is not None
    services.enqueue(question.id)
    return question.id


async def handle_ask(
    interaction: discord.Interaction, services: BotServices, *, question: str, effort: Effort
) -> None:
    """Handle `/ask`: acknowledge within Discord's 3 seconds, then store and enqueue.

    Text that cannot be a question is rejected before the acknowledgement, so that the error
    stays ephemeral; the error handler shows it.
    """
    text = validate_question_text(question, max_chars=services.settings.max_question_chars)
    await interaction.response.defer(thinking=True)

    request = AskRequest(
        platform=PLATFORM,
        user_id=str(interaction.user.id),
        text=text,
        display_name=interaction.user.display_name,
        chat_id=str(interaction.channel_id),
        effort=effort,
        delivery=interaction_delivery(
            application_id=interaction.application_id,
            token=interaction.token,
            created_at=interaction.created_at,
            asker_id=interaction.user.id,
        ),
    )
    question_id = await asyncio.to_thread(store_and_enqueue, services, request)
    logger.info("queued /ask question %d from discord:%s", question_id, interaction.user.id)


def incoming_message(message: discord.Message, *, bot_user_id: int) -> IncomingMessage:
    """Return the fields of a discord.py message that decide whether it is for Ponder."""
    reference = message.reference
    referenced_message_id: int | None = None
    referenced_author_id: int | None = None
    # Forwarded messages carry a reference too; only replies can be follow-ups.
    if reference is not None and reference.type is discord.MessageReferenceType.reply:
        referenced_message_id = reference.message_id
        if isinstance(reference.resolved, discord.Message):
            referenced_author_id = reference.resolved.author.id
    return IncomingMessage(
        author_id=message.author.id,
        author_is_bot=message.author.bot,
        content=message.content,
        mentions_bot=any(user.id == bot_user_id for user in message.mentions),
        is_direct_message=message.guild is None,
        referenced_message_id=referenced_message_id,
        referenced_author_id=referenced_author_id,
    )


async def handle_message(
    message: discord.Message, services: BotServices, *, bot_user_id: int
) -> None:
    """Store a mention of the bot, a direct message or a reply to an answer as a question."""
    decision = decide_message(
        incoming_message(message, bot_user_id=bot_user_id), bot_user_id=bot_user_id
    )
    if decision.kind == "ignore":
        return
    try:
        if decision.kind == "usage":
            await message.reply(decision.text, mention_author=False)
            return

        follow_up_of_id: int | None = None
        if decision.follow_up_of_message_id is not None:
            earlier = await asyncio.to_thread(
                find_answered_question,
                services.engine,
                PLATFORM,
                str(message.channel.id),
                str(decision.follow_up_of_message_id),
            )
            follow_up_of_id = earlier.id if earlier is not None else None

        request = AskRequest(
            platform=PLATFORM,
            user_id=str(message.author.id),
            text=decision.text,
            display_name=message.author.display_name,
            chat_id=str(message.channel.id),
            message_id=str(message.id),
            follow_up_of_id=follow_up_of_id,
            delivery=message_delivery(guild_id=message.guild.id if message.guild else None),
        )
        question_id = await asyncio.to_thread(store_and_enqueue, services, request)
    except Exception as exc:
        # The central handler for message events: a short reply in the chat, details in the log.
        await report_message_error(message, exc)
        return
    logger.info(
        "queued question %d from discord:%s (follow-up of %s)",
        question_id,
        message.author.id,
        follow_up_of_id,
    )
