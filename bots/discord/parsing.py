"""Parsing Discord input: the bot token's shape, mentions of the bot and replies to answers.

The functions take plain fields rather than discord.py objects, so the gateway handlers and the
tests share one definition of what a question is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from core.errors import ConfigurationError

logger = logging.getLogger(__name__)

TOKEN_PART_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MENTION_USAGE = (
    "Usage: mention me with a question, for example `@Ponder what is 17 + 25?`, or use `/ask`."
)

MessageKind = Literal["ignore", "question", "usage"]


def validate_token(token: SecretStr | None) -> str:
    """Return the bot token, or raise ConfigurationError that describes the problem, not the token.

    A bot token has three base64url parts separated by dots; the first encodes the bot's user
    id in decimal digits.
    """
    value = token.get_secret_value().strip() if token is not None else ""
    if not value:
        raise ConfigurationError(
            "PONDER_DISCORD_TOKEN is not set; open your application in the Discord developer "
            "portal, go to Bot, press Reset Token and set PONDER_DISCORD_TOKEN to the new token"
        )
    if value.lower().startswith("bot "):
        raise ConfigurationError(
            "PONDER_DISCORD_TOKEN starts with 'Bot '; set it to the token alone, without the "
            "'Bot ' prefix of the Authorization header"
        )
    parts = value.split(".")
    if len(parts) != 3 or not all(TOKEN_PART_PATTERN.fullmatch(part) for part in parts):
        raise ConfigurationError(
            f"PONDER_DISCORD_TOKEN is malformed ({len(value)} characters, {len(parts)} "
            "dot-separated part(s)): a bot token has three parts of letters, digits, '-' and "
            "'_' separated by dots; copy it again from the Bot page of the developer portal"
        )
    if bot_user_id_from_token(value) is None:
        raise ConfigurationError(
            "PONDER_DISCORD_TOKEN is malformed: its first part does not encode a user id; "
            "copy the bot token from the Bot page of the developer portal, not the client "
            "secret or the public key"
        )
    return value


def bot_user_id_from_token(token: str) -> int | None:
    """Return the user id that a token's first part encodes, or None when it encodes none."""
    first = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdecimal() else None


def mention_pattern(bot_user_id: int) -> re.Pattern[str]:
    """Match a mention of the bot in both forms Discord sends: `<@id>` and `<@!id>`."""
    return re.compile(rf"[ \t]*<@!?{bot_user_id}>[ \t]*")


def strip_bot_mention(content: str, bot_user_id: int) -> str:
    """Return the message text without any mention of the bot and without surrounding blanks."""
    return mention_pattern(bot_user_id).sub(" ", content).strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingMessage:
    """The fields of a Discord message that decide whether it is a question for Ponder.

    `referenced_author_id` is the author of the message this one replies to, when Discord
    included that message; None when it is not a reply or the message is unknown.
    """

    author_id: int
    author_is_bot: bool
    content: str
    mentions_bot: bool
    is_direct_message: bool
    referenced_message_id: int | None = None
    referenced_author_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDecision:
    """What to do with a message: ignore it, store a question, or reply with the usage text.

    `follow_up_of_message_id` is the answer message to look up when the message replies to one
    of Ponder's messages; the lookup needs the database, so it happens in the handler.
    """

    kind: MessageKind
    text: str = ""
    follow_up_of_message_id: int | None = None


def decide_message(message: IncomingMessage, *, bot_user_id: int) -> MessageDecision:
    """Decide whether a message is a question, a follow-up candidate, or nothing for Ponder.

    A message is for Ponder when it mentions the bot, is a direct message, or replies to one of
    the bot's messages. Without the Message Content intent, Discord sends the content only for
    the first two and for replies that ping the bot, so a silent reply arrives empty and is
    ignored rather than answered with the usage text.
    """
    if message.author_is_bot or message.author_id == bot_user_id:
        return MessageDecision(kind="ignore")

    replies_to_bot = (
        message.referenced_message_id is not None and message.referenced_author_id == bot_user_id
    )
    if not (message.mentions_bot or message.is_direct_message or replies_to_bot):
        return MessageDecision(kind="ignore")

    text = strip_bot_mention(message.content, bot_user_id)
    # A reply whose referenced message Discord did not include may still answer Ponder; the
    # database lookup of the answer message settles it.
    may_follow_up = message.referenced_author_id in (bot_user_id, None)
    follow_up_of = message.referenced_message_id if may_follow_up else None
    if not text:
        if not message.content.strip() and not message.mentions_bot:
            return MessageDecision(kind="ignore")
        return MessageDecision(kind="usage", text=MENTION_USAGE)
    return MessageDecision(kind="question", text=text, follow_up_of_message_id=follow_up_of)
