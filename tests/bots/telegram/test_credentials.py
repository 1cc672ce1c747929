"""Checking the bot token's shape and keeping it out of logs."""

from __future__ import annotations

import logging

import pytest

from bots.telegram.credentials import (
    REDACTED_TOKEN,
    TokenRedactingFilter,
    protect_token_in_logs,
    require_token,
)
from core.config import Settings
from core.errors import ConfigurationError

VALID_TOKEN = "123456789:AAH" + "x" * 32


def settings_with(token: str | None) -> Settings:
    return Settings(_env_file=None, telegram_token=token)


def test_valid_token_returned() -> None:
    assert require_token(settings_with(VALID_TOKEN)) == VALID_TOKEN


def test_missing_token_rejected() -> None:
    with pytest.raises(ConfigurationError, match="PONDER_TELEGRAM_TOKEN is not set"):
        require_token(settings_with(None))


@pytest.mark.parametrize(
    "token",
    [
        "bot" + VALID_TOKEN,
        VALID_TOKEN + " ",
        "123456789:short",
        "abc:" + "x" * 35,
        "123456789" + "x" * 35,
        '"' + VALID_TOKEN + '"',
    ],
)
def test_malformed_token_rejected_without_echo(token: str) -> None:
    with pytest.raises(ConfigurationError, match="PONDER_TELEGRAM_TOKEN is malformed") as raised:
        require_token(settings_with(token))

    assert token.strip('" ') not in str(raised.value)


def test_filter_redacts_message_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.telegram.redaction")
    caplog.handler.addFilter(TokenRedactingFilter(VALID_TOKEN))
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{VALID_TOKEN}/getMe failed")
    except RuntimeError:
        logger.exception("request to %s failed", f"/bot{VALID_TOKEN}/getMe")

    assert VALID_TOKEN not in caplog.text
    assert f"/bot{REDACTED_TOKEN}/getMe" in caplog.text
    assert caplog.text.count(REDACTED_TOKEN) == 2


def test_protect_keeps_httpx_at_warning() -> None:
    httpx_logger = logging.getLogger("httpx")
    previous = httpx_logger.level
    httpx_logger.setLevel(logging.DEBUG)
    try:
        protect_token_in_logs(VALID_TOKEN)

        assert httpx_logger.level == logging.WARNING
    finally:
        httpx_logger.setLevel(previous)
