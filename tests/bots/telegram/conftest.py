"""Fixtures for the Telegram tests: a fake Bot API server and settings that point at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import Settings
from tests.fakes.telegram_server import FakeBotApi

TEST_TOKEN = "123456789:AAHfakeTokenForPonderTests_0123456789-x"


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi(token=TEST_TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
def telegram_settings(tmp_path: Path, sqlite_url: str, fake_api: FakeBotApi) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url=sqlite_url,
        telegram_token=TEST_TOKEN,
        telegram_base_url=fake_api.base_url,
        admin_ids=["telegram:42"],
    )
