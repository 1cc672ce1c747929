"""Fixtures for the Discord adapter: a fake Discord REST server and settings that point at it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from bots.discord.asking import BotServices
from bots.discord.bot import PonderBot
from bots.discord.rest import use_api_base_url
from core.config import Settings
from tests.bots.discord.payloads import guild_create
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


class BotHarness:
    """A logged-in PonderBot fed gateway events through discord.py's own event parsers.

    No gateway connection exists in tests; `dispatch` hands a payload to the same parser that a
    gateway event would reach, then waits for the handler tasks discord.py scheduled.
    """

    bot: PonderBot

    def __init__(self, server: FakeDiscordServer) -> None:
        self.server = server
        self.enqueued: list[int] = []
        # Called with each question id before it is recorded; a test may replace it.
        self.on_enqueue: Callable[[int], None] = lambda _question_id: None

    def enqueue(self, question_id: int) -> None:
        self.on_enqueue(question_id)
        self.enqueued.append(question_id)

    async def dispatch_interaction(self, payload: dict[str, Any]) -> None:
        self.server.add_interaction(
            interaction_id=int(payload["id"]),
            token=payload["token"],
            channel_id=int(payload["channel_id"]),
            deferred=False,
        )
        await self._run(lambda: self.bot._connection.parse_interaction_create(payload))  # type: ignore[arg-type]

    async def dispatch_message(self, payload: dict[str, Any]) -> None:
        await self._run(lambda: self.bot._connection.parse_message_create(payload))  # type: ignore[arg-type]

    async def _run(self, parse: Callable[[], None]) -> None:
        before = asyncio.all_tasks()
        parse()
        scheduled = asyncio.all_tasks() - before
        await asyncio.wait_for(asyncio.gather(*scheduled), timeout=30)


@pytest.fixture
async def bot_harness(
    discord_settings: Settings, discord_server: FakeDiscordServer, migrated_engine: Engine
) -> AsyncIterator[BotHarness]:
    use_api_base_url(discord_server.base_url)
    harness = BotHarness(discord_server)
    services = BotServices(
        engine=migrated_engine, settings=discord_settings, enqueue=harness.enqueue
    )
    harness.bot = PonderBot(services)
    await harness.bot.login(BOT_TOKEN)
    harness.bot._connection.parse_guild_create(guild_create(BOT_USER_ID))
    yield harness
    await harness.bot.close()
