"""The bot token: checking its shape and keeping it out of logs.

Bot API URLs contain the token (`<base_url><token>/sendMessage`), so any library that logs a
request URL or an error that quotes it would leak the token.
"""

from __future__ import annotations

import logging
import re

from core.config import Settings
from core.errors import ConfigurationError

logger = logging.getLogger(__name__)

# BotFather prints tokens as the bot's numeric id, a colon and a url-safe secret of 35
# characters; accepting 30 or more leaves room for format changes.
TOKEN_PATTERN = re.compile(r"\d+:[A-Za-z0-9_-]{30,}")
REDACTED_TOKEN = "<telegram-token>"
HTTPX_LOGGERS = ("httpx", "httpcore")


def require_token(settings: Settings) -> str:
    """Return the configured token, or raise ConfigurationError without quoting it."""
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value():
        raise ConfigurationError(
            "PONDER_TELEGRAM_TOKEN is not set; create a bot with @BotFather (send /newbot) and "
            "set PONDER_TELEGRAM_TOKEN to the token it prints"
        )
    token = settings.telegram_token.get_secret_value()
    if not TOKEN_PATTERN.fullmatch(token):
        raise ConfigurationError(
            f"PONDER_TELEGRAM_TOKEN is malformed ({len(token)} characters): expected the bot's "
            "numeric id, a colon and at least 30 letters, digits, '-' or '_', as BotFather "
            "prints it; check for quotes, spaces or a 'bot' prefix around it"
        )
    return token


class TokenRedactingFilter(logging.Filter):
    """Replaces the token in a log record's message and traceback before a handler emits it."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg = message.replace(self.token, REDACTED_TOKEN)
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, REDACTED_TOKEN)
        return True


def protect_token_in_logs(token: str) -> None:
    """Keep httpx at WARNING and redact the token in every handler of the root logger.

    Handlers added to the root logger after this call are not covered.
    """
    for name in HTTPX_LOGGERS:
        logger_for_library = logging.getLogger(name)
        if logger_for_library.getEffectiveLevel() < logging.WARNING:
            logger_for_library.setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(
            isinstance(existing, TokenRedactingFilter) and existing.token == token
            for existing in handler.filters
        ):
            handler.addFilter(TokenRedactingFilter(token))
