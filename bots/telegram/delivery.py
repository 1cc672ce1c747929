"""Worker-side Telegram delivery: the typing action, throttled progress edits and the answer.

A worker has no bot process: it posts through the Bot API with one `telegram.Bot` per worker
process, created on first use and shut down in `close()`. The bot process stores the id of its
"thinking…" message in `Question.delivery`, and this module edits that message as samples come
in, posts the answer as replies to the question, and then deletes the progress message.

Each answer part is recorded in `Question.delivery` (core/delivery_records.py) right after
Telegram accepts it, so a delivery retried in any process posts only the parts still missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from telegram import Bot, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bots.telegram.credentials import protect_token_in_logs, require_token
from bots.telegram.formatting import MAX_MESSAGE_UTF16_UNITS, FormattedText, format_part
from core.chunking import FOOTNOTE_SEPARATOR, split_message, utf16_length
from core.config import Settings
from core.db import create_db_engine
from core.delivery import Deliverer
from core.delivery_records import posted_parts, record_posted_part
from core.errors import ConfigurationError, DeliveryError
from core.models import Question
from core.schemas import AdapterLimits, Reply
from core.strategies.base import Progress

logger = logging.getLogger(__name__)

T = TypeVar("T")

PROGRESS_MESSAGE_KEY = "progress_message_id"
EMPTY_ANSWER_TEXT = (
    "The model returned an empty answer. Please rephrase the question and ask again."
)
ANSWERED_BELOW_TEXT = "Answered below."
# Telegram shows "typing…" for 5 s after sendChatAction, so it is refreshed a little sooner.
TYPING_REFRESH_SECONDS = 4.5
# A flood-control wait longer than this fails the attempt instead, and the Celery delivery task
# retries later, so one chat's flood limit cannot hold a worker for minutes.
MAX_RETRY_AFTER_SECONDS = 30.0
MAX_FLOOD_RETRIES = 3
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 20.0
CONNECTION_POOL_SIZE = 8
# How many delivered questions this process remembers, to skip a second deliver() for one.
DELIVERED_MEMORY_SIZE = 10_000
PROGRESS_MEMORY_SIZE = 1_000


def retry_after_seconds(exc: RetryAfter) -> float:
    """Return the wait that a RetryAfter asks for, in seconds."""
    with warnings.catch_warnings():
        # python-telegram-bot 22 warns that `retry_after` will become a timedelta.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def is_entity_error(exc: BadRequest) -> bool:
    """Tell whether Telegram rejected a message's formatting rather than the message itself."""
    message = exc.message.lower()
    return "parse entities" in message or "entity" in message


def is_not_modified_error(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def answer_parts(reply: Reply) -> list[FormattedText]:
    """Split the reply into messages of at most 4,096 UTF-16 code units, with entities."""
    text = reply.answer.strip("\n") if reply.answer.strip() else EMPTY_ANSWER_TEXT
    footnote = reply.footnote if reply.status == "answered" else ""
    whole = f"{text}{FOOTNOTE_SEPARATOR}{footnote}" if footnote else text
    if utf16_length(whole) <= MAX_MESSAGE_UTF16_UNITS:
        # One message needs no splitting, so an unbalanced fence stays exactly as the model
        # wrote it; split_message would close it.
        return [format_part(whole, footnote=footnote)]
    parts = split_message(
        text, max_length=MAX_MESSAGE_UTF16_UNITS, footnote=footnote, length=utf16_length
    )
    last = len(parts) - 1
    return [
        format_part(part, footnote=footnote if index == last else "")
        for index, part in enumerate(parts)
    ]


class TelegramDeliverer:
    """Delivers progress and answers to Telegram for one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = AdapterLimits(
            max_message_chars=MAX_MESSAGE_UTF16_UNITS,
            can_edit=True,
            min_edit_interval_seconds=settings.telegram_progress_interval_seconds,
        )
        self._bot: Bot | None = None
        self._bot_lock: asyncio.Lock | None = None
        self._next_edit_at: dict[str, float] = {}
        self._typing_sent_at: dict[str, float] = {}
        self._progress_text: OrderedDict[int, str] = OrderedDict()
        self._records_engine: Engine | None = None
        self._posted: dict[int, dict[int, str]] = {}
        self._delivered: OrderedDict[int, list[str]] = OrderedDict()
        self._question_locks: dict[int, asyncio.Lock] = {}

    async def bot(self) -> Bot:
        """Return this process's Bot, creating and initializing it on first use."""
        if self._bot_lock is None:
            self._bot_lock = asyncio.Lock()
        async with self._bot_lock:
            if self._bot is None:
                self._bot = await self._create_bot()
            return self._bot

    async def _create_bot(self) -> Bot:
        token = require_token(self.settings)
        protect_token_in_logs(token)
        request = HTTPXRequest(
            connection_pool_size=CONNECTION_POOL_SIZE,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            write_timeout=READ_TIMEOUT_SECONDS,
        )
        bot = Bot(token, base_url=self.settings.telegram_base_url, request=request)
        try:
            await bot.initialize()
        except InvalidToken:
            # The library's own message quotes the token, so it is not chained or logged.
            raise ConfigurationError(
                "the Telegram Bot API rejected PONDER_TELEGRAM_TOKEN; check the token with "
                "@BotFather (/token) and PONDER_TELEGRAM_BASE_URL"
            ) from None
        except TelegramError as exc:
            raise DeliveryError(
                f"cannot reach the Telegram Bot API at PONDER_TELEGRAM_BASE_URL: "
                f"{type(exc).__name__}; check the network and the setting"
            ) from exc
        logger.info("Telegram delivery bot @%s ready", bot.username)
        return bot

    async def started(self, question: Question) -> None:
        """Show "typing…" in the question's chat."""
        if question.chat_id is not None:
            await self._send_typing(question)

    async def progress(self, question: Question, progress: Progress) -> None:
        """Edit the "thinking…" message, at most once per interval per chat; drop the rest.

        NOTE: the throttle is per worker process, so two processes that answer questions in the
        same chat at once can each edit within one interval.
        """
        chat_id = question.chat_id
        if chat_id is None or question.id is None:
            return
        now = time.monotonic()
        if now - self._typing_sent_at.get(chat_id, 0.0) >= TYPING_REFRESH_SECONDS:
            await self._send_typing(question)

        message_id = question.delivery.get(PROGRESS_MESSAGE_KEY)
        text = progress.describe()
        if message_id is None or self._progress_text.get(question.id) == text:
            return
        if now < self._next_edit_at.get(chat_id, 0.0):
            logger.debug("question %d: progress edit dropped by the throttle", question.id)
            return
        self._next_edit_at[chat_id] = now + self.limits.min_edit_interval_seconds

        if await self._edit_progress(question.id, chat_id, int(message_id), text):
            self._progress_text[question.id] = text
            while len(self._progress_text) > PROGRESS_MEMORY_SIZE:
                self._progress_text.popitem(last=False)

    async def _edit_progress(
        self, question_id: int, chat_id: str, message_id: int, text: str
    ) -> bool:
        """Edit the progress message once, without waiting out flood control; report success."""
        try:
            bot = await self.bot()
            await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
        except RetryAfter as exc:
            wait = retry_after_seconds(exc)
            self._next_edit_at[chat_id] = time.monotonic() + wait
            logger.info(
                "question %d: flood control, no progress edits for %.0f s", question_id, wait
            )
            return False
        except BadRequest as exc:
            if not is_not_modified_error(exc):
                logger.warning("question %d: progress edit rejected: %s", question_id, exc)
            return False
        except (TelegramError, ConfigurationError, DeliveryError) as exc:
            logger.warning("question %d: progress edit failed: %s", question_id, exc)
            return False
        return True

    async def deliver(self, question: Question, reply: Reply) -> list[str]:
        """Post the answer as replies to the question and return their ids.

        Parts recorded in `question.delivery`, or posted by an earlier attempt in this process,
        are not posted again. NOTE: a part is posted twice when the worker dies after Telegram
        accepted it but before its record is written, or when a send timed out after Telegram
        took it, because the Bot API's sendMessage takes no idempotency key.
        """
        assert question.id is not None
        lock = self._question_locks.setdefault(question.id, asyncio.Lock())
        async with lock:
            if question.id in self._delivered:
                logger.info("question %d already delivered by this process", question.id)
                return list(self._delivered[question.id])
            message_ids = await self._post_answer(question, reply)
            self._remember_delivered(question.id, message_ids)
        self._question_locks.pop(question.id, None)
        self._progress_text.pop(question.id, None)
        await self._remove_progress_message(question)
        return message_ids

    async def close(self) -> None:
        """Shut down the Bot's HTTP client and the database engine of the part records."""
        engine, self._records_engine = self._records_engine, None
        if engine is not None:
            engine.dispose()
        bot, self._bot = self._bot, None
        if bot is not None:
            try:
                await bot.shutdown()
            except TelegramError as exc:
                logger.warning("shutting down the Telegram delivery bot failed: %s", exc)

    async def _post_answer(self, question: Question, reply: Reply) -> list[str]:
        assert question.id is not None
        if question.chat_id is None:
            logger.warning("question %d has no Telegram chat id; nothing to deliver", question.id)
            return []
        bot = await self.bot()
        posted = self._posted.setdefault(question.id, {})
        posted.update(posted_parts(question))
        parts = answer_parts(reply)
        for index, part in enumerate(parts):
            if index in posted:
                continue
            try:
                message = await self._send_part(bot, question, part, is_first=index == 0)
            except (Forbidden, BadRequest) as exc:
                # The chat is gone, the bot was blocked or removed: retrying cannot help.
                logger.warning(
                    "question %d: Telegram refused the answer in chat %s, giving up: %s",
                    question.id,
                    question.chat_id,
                    exc,
                )
                break
            except TelegramError as exc:
                raise DeliveryError(
                    f"posting part {index + 1} of {len(parts)} of question {question.id} "
                    f"to Telegram failed: {exc}; the delivery task retries"
                ) from exc
            posted[index] = str(message.message_id)
            await self._record_part(question.id, index, posted[index])
        self._posted.pop(question.id)
        return [posted[index] for index in sorted(posted)]

    async def _record_part(self, question_id: int, index: int, message_id: str) -> None:
        """Record a posted part in the database; raise DeliveryError when that fails.

        The part stays in this process's memory, so a retry here does not post it again.
        """
        if self._records_engine is None:
            self._records_engine = create_db_engine(self.settings.resolved_database_url)
        try:
            await asyncio.to_thread(
                record_posted_part,
                self._records_engine,
                question_id,
                index=index,
                message_id=message_id,
            )
        except SQLAlchemyError as exc:
            raise DeliveryError(
                f"recording part {index + 1} (message {message_id}) of question {question_id} "
                f"failed: {type(exc).__name__}; check the database, the delivery task retries"
            ) from exc

    async def _send_part(
        self, bot: Bot, question: Question, part: FormattedText, *, is_first: bool
    ) -> Message:
        assert question.chat_id is not None
        chat_id = question.chat_id
        thread_id = int(question.thread_id) if question.thread_id else None
        reply_parameters = None
        if is_first and question.message_id is not None:
            reply_parameters = ReplyParameters(
                int(question.message_id), allow_sending_without_reply=True
            )

        def send(with_entities: bool) -> Callable[[], Awaitable[Message]]:
            return lambda: bot.send_message(
                chat_id,
                part.text,
                entities=part.entities if with_entities and part.entities else None,
                reply_parameters=reply_parameters,
                message_thread_id=thread_id,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )

        try:
            return await self._with_flood_retry(send(True), description=f"question {question.id}")
        except BadRequest as exc:
            if not (part.entities and is_entity_error(exc)):
                raise
            logger.warning(
                "question %d: Telegram rejected the formatting (%s); sending plain text",
                question.id,
                exc,
            )
            return await self._with_flood_retry(send(False), description=f"question {question.id}")

    async def _with_flood_retry(
        self, operation: Callable[[], Awaitable[T]], *, description: str
    ) -> T:
        """Run a Bot API call, waiting out flood control up to MAX_FLOOD_RETRIES times."""
        attempt = 0
        while True:
            try:
                return await operation()
            except RetryAfter as exc:
                attempt += 1
                wait = retry_after_seconds(exc)
                if wait > MAX_RETRY_AFTER_SECONDS or attempt > MAX_FLOOD_RETRIES:
                    raise DeliveryError(
                        f"Telegram flood control for {description}: retry after {wait:.0f} s on "
                        f"attempt {attempt}; the delivery task retries later"
                    ) from exc
                logger.info(
                    "Telegram flood control for %s: waiting %.1f s (retry %d of %d)",
                    description,
                    wait,
                    attempt,
                    MAX_FLOOD_RETRIES,
                )
                await asyncio.sleep(wait)

    async def _send_typing(self, question: Question) -> None:
        assert question.chat_id is not None
        self._typing_sent_at[question.chat_id] = time.monotonic()
        try:
            bot = await self.bot()
            await bot.send_chat_action(
                question.chat_id,
                ChatAction.TYPING,
                message_thread_id=int(question.thread_id) if question.thread_id else None,
            )
        except (TelegramError, ConfigurationError, DeliveryError) as exc:
            logger.warning("question %s: typing action failed: %s", question.id, exc)

    async def _remove_progress_message(self, question: Question) -> None:
        """Delete the "thinking…" message, or mark it done when Telegram forbids deleting it."""
        message_id = question.delivery.get(PROGRESS_MESSAGE_KEY)
        if message_id is None or question.chat_id is None:
            return
        bot = await self.bot()
        try:
            await bot.delete_message(question.chat_id, int(message_id))
            return
        except TelegramError as exc:
            logger.info("question %s: deleting the progress message failed: %s", question.id, exc)
        try:
            await bot.edit_message_text(
                ANSWERED_BELOW_TEXT, chat_id=question.chat_id, message_id=int(message_id)
            )
        except TelegramError as exc:
            logger.info("question %s: editing the progress message failed: %s", question.id, exc)

    def _remember_delivered(self, question_id: int, message_ids: list[str]) -> None:
        self._delivered[question_id] = list(message_ids)
        while len(self._delivered) > DELIVERED_MEMORY_SIZE:
            self._delivered.popitem(last=False)


def create_deliverer(settings: Settings) -> Deliverer:
    """Return the Telegram deliverer; the Bot is created when the first message goes out."""
    return TelegramDeliverer(settings)
