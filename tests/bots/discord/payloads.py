"""Gateway event payloads shaped like Discord's, for feeding discord.py's own event parsers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
MANAGE_GUILD = 1 << 5
SEND_MESSAGES = 1 << 11
GUILD_ID = 4_400_000_000_000_000_001
CHANNEL_ID = 3_300_000_000_000_000_001
TEXT_CHANNEL_TYPE = 0
DM_CHANNEL_TYPE = 1
CHAT_INPUT_COMMAND = 2
STRING_OPTION, INTEGER_OPTION, USER_OPTION, SUB_COMMAND, SUB_COMMAND_GROUP = 3, 4, 6, 1, 2

_sequence = 0


def snowflake() -> int:
    """Return a new snowflake id for the current time."""
    global _sequence
    _sequence += 1
    milliseconds = int(datetime.now(UTC).timestamp() * 1000) - DISCORD_EPOCH_MS
    return (milliseconds << 22) | _sequence


def user(user_id: int, name: str = "alice", *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name.title(),
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(user_id: int, *, permissions: int = SEND_MESSAGES) -> dict[str, Any]:
    return {
        "user": user(user_id),
        "nick": None,
        "roles": [],
        "joined_at": "2024-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": str(permissions),
    }


def text_channel() -> dict[str, Any]:
    return {
        "id": str(CHANNEL_ID),
        "type": TEXT_CHANNEL_TYPE,
        "guild_id": str(GUILD_ID),
        "name": "general",
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def guild_create(bot_user_id: int) -> dict[str, Any]:
    """A GUILD_CREATE event for one server with one text channel and the bot as a member."""
    return {
        "id": str(GUILD_ID),
        "name": "Test server",
        "icon": None,
        "owner_id": "1",
        "region": "europe",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [
            {
                "id": str(GUILD_ID),
                "name": "@everyone",
                "color": 0,
                "hoist": False,
                "position": 0,
                "permissions": str(SEND_MESSAGES),
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
        ],
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "joined_at": "2024-01-01T00:00:00+00:00",
        "large": False,
        "member_count": 2,
        "members": [{**member(bot_user_id), "user": user(bot_user_id, "Ponder", bot=True)}],
        "channels": [text_channel()],
        "threads": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "unavailable": False,
    }


def message_create(
    *,
    author_id: int,
    content: str,
    mentions: list[int] | None = None,
    referenced: dict[str, Any] | None = None,
    in_guild: bool = True,
    author_is_bot: bool = False,
) -> dict[str, Any]:
    """A MESSAGE_CREATE event; `referenced` makes it a reply to that message payload."""
    payload: dict[str, Any] = {
        "id": str(snowflake()),
        "channel_id": str(CHANNEL_ID),
        "type": 19 if referenced else 0,
        "content": content,
        "author": user(author_id, bot=author_is_bot),
        "timestamp": datetime.now(UTC).isoformat(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [user(mentioned, "mentioned") for mentioned in mentions or []],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "flags": 0,
        "components": [],
    }
    if in_guild:
        payload["guild_id"] = str(GUILD_ID)
        payload["member"] = {
            key: value for key, value in member(author_id).items() if key != "user"
        }
    if referenced is not None:
        payload["message_reference"] = {
            "type": 0,
            "message_id": referenced["id"],
            "channel_id": referenced["channel_id"],
            "guild_id": str(GUILD_ID),
        }
        payload["referenced_message"] = referenced
    return payload


def bot_message(bot_user_id: int, message_id: int, content: str) -> dict[str, Any]:
    """A message the bot posted, as Discord embeds it in `referenced_message`."""
    return {
        **message_create(author_id=bot_user_id, content=content, author_is_bot=True),
        "id": str(message_id),
        "author": user(bot_user_id, "Ponder", bot=True),
    }


def option(name: str, option_type: int, value: Any) -> dict[str, Any]:
    return {"name": name, "type": option_type, "value": value}


def interaction_create(
    *,
    application_id: int,
    user_id: int,
    command: str,
    options: list[dict[str, Any]] | None = None,
    permissions: int = SEND_MESSAGES,
    resolved_users: list[int] | None = None,
) -> dict[str, Any]:
    """An INTERACTION_CREATE event for a slash command run in the test server's channel."""
    data: dict[str, Any] = {
        "id": str(snowflake()),
        "name": command,
        "type": 1,
        "options": options or [],
    }
    if resolved_users:
        data["resolved"] = {
            "users": {str(uid): user(uid, "target") for uid in resolved_users},
        }
    return {
        "id": str(snowflake()),
        "application_id": str(application_id),
        "type": CHAT_INPUT_COMMAND,
        "token": f"interaction-token-{snowflake()}",
        "version": 1,
        "guild_id": str(GUILD_ID),
        "channel_id": str(CHANNEL_ID),
        "channel": text_channel(),
        "member": member(user_id, permissions=permissions),
        "data": data,
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": str(SEND_MESSAGES),
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(GUILD_ID)},
        "context": 0,
        "attachment_size_limit": 8 * 1024 * 1024,
    }
