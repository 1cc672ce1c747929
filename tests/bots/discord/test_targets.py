"""Reading where an answer goes from a stored question's `delivery` field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bots.discord.targets import (
    InteractionTarget,
    MessageTarget,
    delivery_target,
    interaction_delivery,
    message_delivery,
)
from core.errors import DeliveryError
from core.models import Question

CREATED_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def question(delivery: dict[str, object], *, message_id: str | None = None) -> Question:
    return Question(
        id=7,
        user_id=1,
        platform="discord",
        chat_id="300",
        message_id=message_id,
        text="What is 2 + 3?",
        delivery=delivery,
    )


def test_interaction_delivery_round_trip() -> None:
    delivery = interaction_delivery(
        application_id=100, token="tok", created_at=CREATED_AT, asker_id=200
    )

    target = delivery_target(question(delivery))

    assert target == InteractionTarget(
        application_id=100, token="tok", created_at=CREATED_AT, channel_id=300, asker_id=200
    )


def test_message_delivery_round_trip() -> None:
    target = delivery_target(question(message_delivery(guild_id=400), message_id="500"))

    assert target == MessageTarget(channel_id=300, message_id=500, guild_id=400)


def test_direct_message_has_no_guild() -> None:
    target = delivery_target(question(message_delivery(guild_id=None), message_id="500"))

    assert target == MessageTarget(channel_id=300, message_id=500, guild_id=None)


@pytest.mark.parametrize(
    ("age", "usable"),
    [
        (timedelta(minutes=0), True),
        (timedelta(minutes=13, seconds=59), True),
        (timedelta(minutes=14), False),
        (timedelta(minutes=20), False),
    ],
)
def test_interaction_usable_until_margin(age: timedelta, usable: bool) -> None:
    target = InteractionTarget(
        application_id=1, token="t", created_at=CREATED_AT, channel_id=2, asker_id=3
    )

    assert target.is_usable(CREATED_AT + age) is usable


def test_unknown_kind_rejected() -> None:
    with pytest.raises(DeliveryError, match="delivery kind 'webhook'"):
        delivery_target(question({"kind": "webhook"}))


def test_message_kind_without_message_id_rejected() -> None:
    with pytest.raises(DeliveryError, match="message id None"):
        delivery_target(question(message_delivery(guild_id=1)))


def test_interaction_missing_field_rejected() -> None:
    with pytest.raises(DeliveryError, match="invalid delivery field"):
        delivery_target(question({"kind": "interaction", "application_id": "1"}))
