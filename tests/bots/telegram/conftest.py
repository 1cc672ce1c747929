"""Fixtures for the Telegram tests: a fake Bot API server and settings that point at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from telegram.ext import Application

from bots.telegram.bot import ALLOWED_UPDATES, build_application
from core.config import Settings, get_settings
from tasks.app import app, celery_config
from tests.fakes.telegram_server import FakeBotApi

TEST_TOKEN = "123456789:AAHfakeTokenForPonderTests_0123456789-x"

TelegramApplication = Application[Any, Any, Any, Any, Any, Any]


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeBotApi]:
    api = FakeBotApi(token=TEST_TOKEN)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def running_bot(
    telegram_settings: Settings, migrated_engine: Engine, fake_api: FakeBotApi
) -> AsyncIterator[TelegramApplication]:
    """The real Application with Ponder's handlers, long-polling the fake server."""
    application = build_application(telegram_settings, migrated_engine)
    await application.initialize()
    assert application.updater is not None
    await application.updater.start_polling(
        poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES
    )
    await application.start()
    yield application
    await application.updater.stop()
    await application.stop()
    await application.shutdown()


@pytest.fixture
def broker_env(worker_env: dict[str, str]) -> dict[str, str]:
    """worker_env, with this process's Celery app sending to the test's own queue.

    Celery reads its configuration once per process, so without this a test would publish to
    the queue of the first test in the session that touched Celery.
    """
    app.conf.update(celery_config(get_settings()))
    return worker_env


@pytest.fixture
def telegram_settings(tmp_path: Path, sqlite_url: str, fake_api: FakeBotApi) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=sqlite_url,
        telegram_token=TEST_TOKEN,
        telegram_base_url=fake_api.base_url,
        admin_ids=["telegram:42"],
    )
