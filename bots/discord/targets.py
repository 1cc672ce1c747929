"""Where a Discord answer goes: the `delivery` field the bot stores and the worker reads back.

A `/ask` question is answered through its interaction's webhook, which Discord accepts for 15
minutes after the interaction; a question asked by mention is answered with a reply to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import DeliveryError
from core.models import Question

logger = logging.getLogger(__name__)

INTERACTION_TOKEN_LIFETIME = timedelta(minutes=15)
# Stop using the interaction webhook this long before Discord expires its token, so that a
# delivery of several parts does not straddle the expiry.
INTERACTION_TOKEN_MARGIN = timedelta(seconds=60)
DELIVERY_KIND_KEY = "kind"


@dataclass(frozen=True, slots=True, kw_only=True)
class InteractionTarget:
    """A `/ask` interaction: its webhook (application id and token) and its channel."""

    application_id: int
    token: str
    created_at: datetime
    channel_id: int
    asker_id: int

    def is_usable(self, now: datetime) -> bool:
        """Tell whether the interaction token is still safely inside its 15-minute lifetime."""
        return now < self.created_at + INTERACTION_TOKEN_LIFETIME - INTERACTION_TOKEN_MARGIN


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageTarget:
    """A question asked in a message: the answer replies to that message."""

    channel_id: int
    message_id: int
    guild_id: int | None


DeliveryTarget = InteractionTarget | MessageTarget


def interaction_delivery(
    *, application_id: int, token: str, created_at: datetime, asker_id: int
) -> dict[str, Any]:
    """Return the `delivery` value for a question asked with `/ask`."""
    return {
        DELIVERY_KIND_KEY: "interaction",
        "application_id": str(application_id),
        "interaction_token": token,
        "interaction_created_at": created_at.isoformat(),
        "asker_id": str(asker_id),
    }


def message_delivery(*, guild_id: int | None) -> dict[str, Any]:
    """Return the `delivery` value for a question asked by mention or reply."""
    return {
        DELIVERY_KIND_KEY: "message",
        "guild_id": str(guild_id) if guild_id is not None else None,
    }


def delivery_target(question: Question) -> DeliveryTarget:
    """Read where to post a stored question's answer, or raise DeliveryError when it is unknown."""
    delivery = question.delivery
    kind = delivery.get(DELIVERY_KIND_KEY)
    if question.chat_id is None:
        raise DeliveryError(f"Discord question {question.id} has no channel id to answer in")
    try:
        if kind == "interaction":
            return InteractionTarget(
                application_id=int(delivery["application_id"]),
                token=str(delivery["interaction_token"]),
                created_at=datetime.fromisoformat(delivery["interaction_created_at"]),
                channel_id=int(question.chat_id),
                asker_id=int(delivery["asker_id"]),
            )
        if kind == "message" and question.message_id is not None:
            guild_id = delivery.get("guild_id")
            return MessageTarget(
                channel_id=int(question.chat_id),
                message_id=int(question.message_id),
                guild_id=int(guild_id) if guild_id is not None else None,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise DeliveryError(
            f"Discord question {question.id} has an invalid delivery field ({exc}); it was "
            "stored by another version of the bot"
        ) from exc
    raise DeliveryError(
        f"Discord question {question.id} has delivery kind {kind!r} and message id "
        f"{question.message_id!r}; expected 'interaction', or 'message' with a message id"
    )
