"""Fixtures for the Discord adapter: a fake Discord REST server and settings that point at it."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.config import Settings
from tests.fakes.discord_server import FakeDiscordServer

BOT_USER_ID = 1_100_000_000_000_000_001
APPLICATION_ID = 1_100_000_000_000_000_002
ADMIN_ID = 2_200_000_000_000_000_009
PROGRESS_INTERVAL_SECONDS = 0.2


def make_token(user_id: int) -> str:
    """Return a token of the shape Discord issues, for the given bot user id."""
    first = base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")
    return f"{first}.GabcDe.{'x' * 38}"


BOT_TOKEN = make_token(BOT_USER_ID)


@pytest.fixture
def discord_server() -> Iterator[FakeDiscordServer]:
    with FakeDiscordServer(
        token=BOT_TOKEN, bot_user_id=BOT_USER_ID, application_id=APPLICATION_ID
    ) as server:
        yield server


@pytest.fixture
def discord_settings(settings: Settings, discord_server: FakeDiscordServer) -> Settings:
    return settings.model_copy(
        update={
            "discord_token": SecretStr(BOT_TOKEN),
            "discord_api_base_url": discord_server.base_url,
            "discord_progress_interval_seconds": PROGRESS_INTERVAL_SECONDS,
            "admin_ids": [f"discord:{ADMIN_ID}"],
        }
    )
