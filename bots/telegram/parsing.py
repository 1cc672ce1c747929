"""Reading Telegram messages: whether one is addressed to the bot, its question and command."""

from __future__ import annotations

import re

from telegram import Message, MessageEntity
from telegram.constants import ChatType

ASK_COMMAND = "ask"
LEADING_COMMAND_PATTERN = re.compile(r"/\S*\s*")


def command_name(text: str) -> str:
    """Return a command's name without the slash and `@botname`: "/Ask@ponder_bot hi" → "ask"."""
    first_word = text.split(maxsplit=1)[0] if text.strip() else ""
    return first_word.lstrip("/").split("@", 1)[0].lower()


def strip_command(text: str) -> str:
    """Return the text after a leading /command, keeping the line breaks of the rest."""
    match = LEADING_COMMAND_PATTERN.match(text)
    return text[match.end() :] if match else text


def strip_mention(text: str, username: str) -> str:
    """Remove every @username mention of the bot, case-insensitively, with its blanks."""
    pattern = rf"[ \t]*@{re.escape(username)}\b[ \t]*"
    return re.sub(pattern, " ", text, flags=re.IGNORECASE).strip()


def is_private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


def is_reply_to_bot(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def mentions_bot(message: Message, *, username: str, bot_id: int) -> bool:
    """Tell whether the message mentions the bot, by @username or as a text mention."""
    for entity, text in message.parse_entities(
        [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    ).items():
        if entity.type == MessageEntity.MENTION and text.lower() == f"@{username.lower()}":
            return True
        if entity.user is not None and entity.user.id == bot_id:
            return True
    return False


def question_text(message: Message, *, username: str, bot_id: int) -> str | None:
    """Return the question a message asks the bot, or None when it is not addressed to the bot.

    In a private chat every text message is a question. In a group only `/ask <text>`, a message
    that mentions the bot and a reply to one of the bot's messages are. The text may come back
    empty or too long; validating it is the caller's job.
    """
    text = message.text
    if text is None:
        return None
    if text.startswith("/"):
        return strip_command(text) if command_name(text) == ASK_COMMAND else None
    if is_private(message) or is_reply_to_bot(message, bot_id):
        return strip_mention(text, username) if username else text
    if mentions_bot(message, username=username, bot_id=bot_id):
        return strip_mention(text, username)
    return None


def thread_id(message: Message) -> str | None:
    """Return the forum topic a message belongs to, so that answers go to the same topic."""
    if message.is_topic_message and message.message_thread_id is not None:
        return str(message.message_thread_id)
    return None
