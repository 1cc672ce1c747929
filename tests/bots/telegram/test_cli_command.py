"""`ponder bot telegram`: a one-line error for a bad token, and a real polling run that stops."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bots.cli.bot import bot_app
from bots.telegram.bot import build_application
from core.config import Settings, get_settings
from tests.bots.telegram.conftest import TEST_TOKEN
from tests.bots.telegram.updates import BOT_USERNAME, PRIVATE_CHAT_ID, message, update
from tests.fakes.telegram_server import FakeBotApi

STOP_WAIT_SECONDS = 30


@pytest.mark.usefixtures("ponder_env")
def test_missing_token_message() -> None:
    result = CliRunner().invoke(bot_app, ["telegram"])

    assert result.exit_code == 1
    assert "error: PONDER_TELEGRAM_TOKEN is not set; create a bot with @BotFather" in result.output


def test_malformed_token_not_echoed(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    malformed = "bot" + TEST_TOKEN
    monkeypatch.setenv("PONDER_TELEGRAM_TOKEN", malformed)
    get_settings.cache_clear()

    result = CliRunner().invoke(bot_app, ["telegram"])

    assert result.exit_code == 1
    assert "error: PONDER_TELEGRAM_TOKEN is malformed" in result.output
    assert TEST_TOKEN not in result.output


def test_build_keeps_httpx_at_warning(telegram_settings: Settings, migrated_engine: Engine) -> None:
    httpx_logger = logging.getLogger("httpx")
    previous = httpx_logger.level
    httpx_logger.setLevel(logging.INFO)
    try:
        build_application(telegram_settings, migrated_engine)

        assert httpx_logger.level == logging.WARNING
    finally:
        httpx_logger.setLevel(previous)


async def test_bot_command_polls_and_stops(
    ponder_env: dict[str, str], fake_api: FakeBotApi
) -> None:
    env = {
        **os.environ,
        "PONDER_TELEGRAM_TOKEN": TEST_TOKEN,
        "PONDER_TELEGRAM_BASE_URL": fake_api.base_url,
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "ponder"),
        "bot",
        "telegram",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        fake_api.queue_update(update(message("/help")))
        reply = await fake_api.next_message_to(PRIVATE_CHAT_ID, within_seconds=60)
        await fake_api.wait_for(
            lambda request: request.method == "setMyCommands", within_seconds=10
        )
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), STOP_WAIT_SECONDS)
    stderr = stderr_bytes.decode()

    assert "Your Telegram user id is 555." in reply.params["text"]
    assert process.returncode == 0, stderr
    assert "receiving Telegram updates by long polling" in stderr
    assert f"Telegram bot @{BOT_USERNAME} started" in stderr
    assert TEST_TOKEN not in stderr
