"""The Telegram bot: turns messages into stored, queued questions and commands into replies.

The bot never answers a question itself. It validates and stores the question, replies with a
"thinking…" message whose id the worker edits and later deletes, and enqueues the question. A
worker then posts the answer through the Bot API (bots/telegram/delivery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import Engine
from telegram import BotCommand, Message, Update
from telegram.constants import UpdateType
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.telegram import parsing, texts
from bots.telegram.credentials import protect_token_in_logs, require_token
from bots.telegram.delivery import PROGRESS_MESSAGE_KEY
from bots.telegram.formatting import MAX_MESSAGE_UTF16_UNITS
from core.answering import record_failure
from core.chunking import split_message, utf16_length
from core.commands import CHAT_USAGE, Actor, CommandReply, parse_chat_command, run_command
from core.config import Settings
from core.errors import ConfigurationError, InvalidQuestionError, PonderError
from core.questions import find_answered_question, submit_question, validate_question_text
from core.recovery import mark_delivered
from core.schemas import AskRequest
from tasks.answer import enqueue_answer
from tasks.runtime import get_runtime

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
PONDER_KEY = "ponder"
ALLOWED_UPDATES = [UpdateType.MESSAGE]
# Handlers mostly wait on the database and the broker in threads, so several may run at once.
CONCURRENT_UPDATES = 16
MAX_FLOOD_RETRIES = 3
MAX_DISPLAY_NAME_CHARS = 128
ADMIN_COMMAND_NAMES = tuple(CHAT_USAGE)
# Telegram accepts 1 to 256 of these characters as a webhook secret token.
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
MENU_COMMANDS = (
    BotCommand("ask", "Ask a question"),
    BotCommand("budget", "Show your remaining token budget"),
    BotCommand("help", "How to ask and how budgets work"),
)


@dataclass(frozen=True, slots=True)
class PonderContext:
    """The handlers' shared state besides the update: the settings and the database engine."""

    settings: Settings
    engine: Engine


def ponder_context(context: ContextTypes.DEFAULT_TYPE) -> PonderContext:
    stored = context.bot_data[PONDER_KEY]
    assert isinstance(stored, PonderContext)
    return stored


def actor_of(update: Update) -> Actor | None:
    user = update.effective_user
    if user is None:
        return None
    return Actor(
        platform=PLATFORM,
        user_id=str(user.id),
        display_name=user.full_name[:MAX_DISPLAY_NAME_CHARS],
    )


async def reply_in_parts(message: Message, text: str) -> None:
    """Reply with plain text, split at Telegram's message length."""
    for part in split_message(text, max_length=MAX_MESSAGE_UTF16_UNITS, length=utf16_length):
        await message.reply_text(part)


async def handle_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain how to ask and how budgets work (/start and /help)."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    settings = ponder_context(context).settings
    await message.reply_text(
        texts.help_text(settings, user_id=user.id, bot_username=context.bot.username)
    )


async def handle_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Run a budget or admin command through the core command layer."""
    message, actor = update.effective_message, actor_of(update)
    if message is None or message.text is None or actor is None:
        return
    name = parsing.command_name(message.text)
    args = list(context.args or [])
    if name == "budget" and args:
        # `/budget USER` is the admin's view of someone else's budget.
        name = "showbudget"
    parsed = parse_chat_command(name, args, actor)
    if isinstance(parsed, CommandReply):
        reply = parsed
    else:
        ponder = ponder_context(context)
        reply = await asyncio.to_thread(run_command, ponder.engine, ponder.settings, parsed)
    await reply_in_parts(message, reply.text)


async def handle_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Point to /help when a private chat sends a command the bot does not know."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    name = parsing.command_name(message.text)
    await message.reply_text(texts.UNKNOWN_COMMAND_TEXT.format(name=name))


async def handle_question(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Store a message addressed to the bot as a question and queue it for a worker."""
    message, actor = update.effective_message, actor_of(update)
    if message is None or actor is None:
        return
    bot = context.bot
    text = parsing.question_text(message, username=bot.username, bot_id=bot.id)
    if text is None:
        return
    ponder = ponder_context(context)
    try:
        text = validate_question_text(text, max_chars=ponder.settings.max_question_chars)
    except InvalidQuestionError as exc:
        logger.info("rejected a question from %s: %s", actor.ref, exc)
        await message.reply_text(exc.user_message)
        return

    follow_up_of_id = await find_follow_up(ponder, message, bot_id=bot.id)
    thinking = await message.reply_text(texts.THINKING_TEXT, do_quote=True)
    request = AskRequest(
        platform=PLATFORM,
        user_id=actor.user_id,
        display_name=actor.display_name,
        text=text,
        chat_id=str(message.chat_id),
        thread_id=parsing.thread_id(message),
        message_id=str(message.message_id),
        follow_up_of_id=follow_up_of_id,
        delivery={PROGRESS_MESSAGE_KEY: thinking.message_id},
    )
    try:
        question = await asyncio.to_thread(submit_question, ponder.engine, ponder.settings, request)
    except PonderError as exc:
        logger.warning("storing a question from %s failed: %s", actor.ref, exc)
        await thinking.edit_text(exc.user_message)
        return
    except Exception:
        # The central error handler logs this and replies; "thinking…" must not linger.
        with contextlib.suppress(TelegramError):
            await thinking.delete()
        raise
    assert question.id is not None
    await enqueue(ponder, question.id, thinking)


async def find_follow_up(ponder: PonderContext, message: Message, *, bot_id: int) -> int | None:
    """Return the id of the question whose answer this message replies to, if any."""
    replied = message.reply_to_message
    if replied is None or not parsing.is_reply_to_bot(message, bot_id):
        return None
    earlier = await asyncio.to_thread(
        find_answered_question,
        ponder.engine,
        PLATFORM,
        str(message.chat_id),
        str(replied.message_id),
    )
    return earlier.id if earlier is not None else None


async def enqueue(ponder: PonderContext, question_id: int, thinking: Message) -> None:
    """Queue the stored question; when the broker is down, mark it failed and tell the asker."""
    try:
        await asyncio.to_thread(enqueue_answer, question_id)
    except BrokerError as exc:
        logger.error("queueing question %d failed: %s", question_id, exc)
        await asyncio.to_thread(
            record_failure,
            ponder.engine,
            question_id,
            PonderError(
                f"the broker was unreachable: {exc}",
                user_message=texts.QUEUE_UNAVAILABLE_TEXT,
            ),
        )
        await thinking.edit_text(texts.QUEUE_UNAVAILABLE_TEXT)
        # The asker has the failure notice already, so the sweep must not deliver it again.
        await asyncio.to_thread(mark_delivered, ponder.engine, question_id)
        return
    logger.info("queued question %d", question_id)


async def handle_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log an error no handler caught, and tell the user in a short, fixed message."""
    error = context.error
    if update is None and isinstance(error, NetworkError):
        # Polling retries on its own; a traceback per failed getUpdates would flood the log.
        logger.warning("Telegram network error while polling: %s", error)
        return
    update_id = update.update_id if isinstance(update, Update) else None
    logger.error("handling Telegram update %s failed", update_id, exc_info=error)
    if not isinstance(update, Update) or update.effective_message is None:
        return
    user_message = (
        error.user_message if isinstance(error, PonderError) else PonderError.user_message
    )
    try:
        await update.effective_message.reply_text(user_message)
    except TelegramError as exc:
        logger.warning("telling update %s about the error failed: %s", update_id, exc)


async def announce_commands(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Set the command menu that Telegram clients show, and log the bot's name."""
    try:
        await application.bot.set_my_commands(MENU_COMMANDS)
    except TelegramError as exc:
        logger.warning("setting the command menu failed: %s", exc)
    logger.info("Telegram bot @%s started", application.bot.username)


def build_application(
    settings: Settings, engine: Engine
) -> Application[Any, Any, Any, Any, Any, Any]:
    """Create the Application with Ponder's handlers and error handler; it is not started."""
    token = require_token(settings)
    protect_token_in_logs(token)
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_base_url)
        .rate_limiter(AIORateLimiter(max_retries=MAX_FLOOD_RETRIES))
        .concurrent_updates(CONCURRENT_UPDATES)
        .post_init(announce_commands)
        .build()
    )
    application.bot_data[PONDER_KEY] = PonderContext(settings=settings, engine=engine)
    application.add_handler(CommandHandler(["start", "help"], handle_help))
    application.add_handler(CommandHandler(parsing.ASK_COMMAND, handle_question))
    application.add_handler(CommandHandler(list(ADMIN_COMMAND_NAMES), handle_command))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handle_question))
    application.add_handler(
        MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, handle_unknown_command)
    )
    application.add_error_handler(handle_error)
    return application


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """The webhook server's listen address and port, and the URL Telegram posts updates to."""

    listen: str
    port: int
    url_path: str
    webhook_url: str
    secret_token: str | None


def webhook_options(settings: Settings) -> WebhookOptions:
    """Return the webhook settings, checked; the local path is the public URL's path."""
    url = settings.telegram_webhook_url
    if not url:
        raise ConfigurationError("PONDER_TELEGRAM_WEBHOOK_URL is not set")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"invalid PONDER_TELEGRAM_WEBHOOK_URL {url!r}; use the public https:// URL that "
            "reaches this bot, for example https://bot.example.org/telegram"
        )
    secret = (
        settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret
        else None
    )
    if secret is not None and not WEBHOOK_SECRET_PATTERN.fullmatch(secret):
        raise ConfigurationError(
            "PONDER_TELEGRAM_WEBHOOK_SECRET is invalid: use 1 to 256 letters, digits, '_' or '-'"
        )
    if secret is None:
        logger.warning(
            "PONDER_TELEGRAM_WEBHOOK_SECRET is not set; anyone who learns the webhook URL can "
            "post updates to the bot"
        )
    return WebhookOptions(
        listen=settings.telegram_webhook_listen,
        port=settings.telegram_webhook_port,
        url_path=parts.path.lstrip("/"),
        webhook_url=url,
        secret_token=secret,
    )


@contextlib.contextmanager
def startup_errors_translated(settings: Settings) -> Iterator[None]:
    """Turn a rejected token or an unreachable Bot API into a ConfigurationError."""
    try:
        yield
    except InvalidToken:
        # The library's message quotes the token, so it is neither chained nor shown.
        raise ConfigurationError(
            "the Telegram Bot API rejected PONDER_TELEGRAM_TOKEN; check it with @BotFather "
            "(/token) and check PONDER_TELEGRAM_BASE_URL"
        ) from None
    except NetworkError as exc:
        raise ConfigurationError(
            f"cannot reach the Telegram Bot API at {settings.telegram_base_url!r}: "
            f"{type(exc).__name__}; check the network and PONDER_TELEGRAM_BASE_URL"
        ) from exc


def run_bot(settings: Settings) -> None:
    """Run the bot until interrupted, by long polling or, with a webhook URL set, as a webhook."""
    require_token(settings)
    options = webhook_options(settings) if settings.telegram_webhook_url else None
    application = build_application(settings, get_runtime().engine)
    with startup_errors_translated(settings):
        if options is not None:
            logger.info(
                "receiving Telegram updates by webhook on %s:%d", options.listen, options.port
            )
            application.run_webhook(
                listen=options.listen,
                port=options.port,
                url_path=options.url_path,
                webhook_url=options.webhook_url,
                secret_token=options.secret_token,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            logger.info("receiving Telegram updates by long polling")
            application.run_polling(allowed_updates=ALLOWED_UPDATES)
