"""Builders of Telegram update JSON as the Bot API sends it, for the fake server's getUpdates."""

from __future__ import annotations

import time
from typing import Any

PRIVATE_CHAT_ID = 555
GROUP_CHAT_ID = -1001234567890
ASKER_ID = 555
ADMIN_ID = 42
BOT_ID = 987654321
BOT_USERNAME = "ponder_test_bot"


def user(user_id: int, first_name: str = "Ada") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}


def bot_user() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "Ponder", "username": BOT_USERNAME}


def message(
    text: str,
    *,
    message_id: int = 10,
    chat_id: int = PRIVATE_CHAT_ID,
    from_id: int = ASKER_ID,
    reply_to: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return a message; a leading /command gets the bot_command entity Telegram adds."""
    chat: dict[str, Any]
    if chat_id > 0:
        chat = {"id": chat_id, "type": "private", "first_name": "Ada"}
    else:
        chat = {"id": chat_id, "type": "supergroup", "title": "Ponder testers"}
    found_entities = list(entities or [])
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        found_entities.insert(0, {"type": "bot_command", "offset": 0, "length": len(command)})
    payload: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": user(from_id),
        "text": text,
    }
    if found_entities:
        payload["entities"] = found_entities
    if reply_to is not None:
        payload["reply_to_message"] = reply_to
    return payload


def mention_entity(text: str, mention: str = f"@{BOT_USERNAME}") -> dict[str, Any]:
    """Return the mention entity for the first `mention` in `text` (ASCII before it)."""
    return {"type": "mention", "offset": text.index(mention), "length": len(mention)}


def update(message_payload: dict[str, Any]) -> dict[str, Any]:
    """Wrap a message in an update; the fake server assigns the update_id."""
    return {"message": message_payload}
