"""`ponder bot telegram` stops with a one-line message when the token is missing or malformed."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from bots.cli.bot import bot_app
from bots.telegram.bot import build_application
from core.config import Settings, get_settings
from tests.bots.telegram.conftest import TEST_TOKEN


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
