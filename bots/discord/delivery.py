"""Posting progress and answers to Discord from a worker, over the REST API only.

A `/ask` answer replaces the interaction's "thinking" response and continues in follow-up
messages; once the interaction token is about to expire (15 minutes) or has expired, the rest
goes into the channel. A question asked by mention gets a reply, which starts as the progress
message and becomes the answer's first part. Parts are at most 2,000 characters, and no message
pings anyone.

Delivery is idempotent per question: each posted part is recorded in the question's `delivery`
field, and channel messages carry a nonce made of the question id and part index, so Discord
itself drops a repeat that a crash left unrecorded. The interaction webhook takes no nonce.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bots.discord.parsing import validate_token
from bots.discord.progress import ProgressThrottle
from bots.discord.records import DeliveryRecords, posted_parts, progress_message_id
from bots.discord.rest import DiscordRequestError, DiscordRest, reply_reference
from bots.discord.targets import InteractionTarget, MessageTarget, delivery_target
from core.chunking import split_message
from core.config import Settings
from core.errors import DeliveryError
from core.models import Question
from core.schemas import AdapterLimits, Reply
from core.strategies.base import Progress

logger = logging.getLogger(__name__)

MAX_DISCORD_MESSAGE_CHARS = 2_000
# Discord accepts a nonce of at most 25 characters.
MAX_NONCE_CHARS = 25
PROGRESS_DRAIN_TIMEOUT_SECONDS = 10.0
UNKNOWN_MESSAGE_CODE = 10008
# Questions whose progress state one process keeps; far more than run at once in one worker.
MAX_TRACKED_QUESTIONS = 1_000
STARTED_TEXT = "thinking…"
EMPTY_ANSWER_TEXT = "(The answer is empty.)"

Now = Callable[[], datetime]


def part_nonce(question_id: int, part: int | str) -> str:
    """Return the nonce of answer part `part`, or of the progress message for part "progress"."""
    nonce = f"ponder-{question_id}-{part}"
    if len(nonce) > MAX_NONCE_CHARS:
        raise DeliveryError(
            f"nonce {nonce!r} is longer than Discord's {MAX_NONCE_CHARS} characters"
        )
    return nonce


def channel_header(asker_id: int) -> str:
    """Return the line that introduces a `/ask` answer posted in the channel, pinging nobody."""
    return f"<@{asker_id}> asked with /ask:"


def answer_parts(reply: Reply, *, max_length: int) -> list[str]:
    """Split a reply into message texts; the footnote ends the last one."""
    parts = split_message(reply.answer, max_length=max_length, footnote=reply.footnote)
    return parts or [EMPTY_ANSWER_TEXT]


class DiscordDeliverer:
    """Posts progress and answers for Discord questions; one instance per worker process."""

    def __init__(
        self,
        rest: DiscordRest,
        records: DeliveryRecords,
        *,
        progress_interval_seconds: float,
        now: Now = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = AdapterLimits(
            max_message_chars=MAX_DISCORD_MESSAGE_CHARS,
            can_edit=True,
            min_edit_interval_seconds=progress_interval_seconds,
        )
        self._rest = rest
        self._records = records
        self._now = now
        self._throttles: dict[int, ProgressThrottle] = {}
        self._progress_messages: dict[int, int] = {}

    async def started(self, question: Question) -> None:
        """Post the progress message for a mention; a `/ask` shows Discord's "thinking" already.

        A failure is logged and ignored, because the answer can still be delivered without it.
        """
        assert question.id is not None
        try:
            target = delivery_target(question)
            if not isinstance(target, MessageTarget):
                return
            known = progress_message_id(question)
            if known is not None:
                self._progress_messages[question.id] = known
                return
            message = await self._rest.create_message(
                target.channel_id,
                STARTED_TEXT,
                nonce=part_nonce(question.id, "progress"),
                reply_to=reply_reference(
                    channel_id=target.channel_id,
                    message_id=target.message_id,
                    guild_id=target.guild_id,
                ),
            )
            message_id = int(message["id"])
            self._forget_oldest_progress_state()
            self._progress_messages[question.id] = message_id
            await self._records.remember_progress_message(question.id, message_id)
        except DeliveryError as exc:
            logger.warning("question %d: posting the progress message failed: %s", question.id, exc)

    async def progress(self, question: Question, progress: Progress) -> None:
        """Queue a progress edit; the throttle sends at most one per interval and may drop some."""
        assert question.id is not None
        throttle = self._throttles.get(question.id) or self._new_throttle(question)
        if throttle is not None:
            throttle.submit(progress.describe())

    def _new_throttle(self, question: Question) -> ProgressThrottle | None:
        assert question.id is not None
        try:
            target = delivery_target(question)
        except DeliveryError as exc:
            logger.warning("question %d: no progress edits: %s", question.id, exc)
            return None

        question_id = question.id
        if isinstance(target, InteractionTarget):
            interaction = target

            async def edit_message(text: str) -> None:
                # Past the token's lifetime the edit would fail; the answer goes to the channel.
                if interaction.is_usable(self._now()):
                    await self._rest.edit_original_response(
                        interaction.application_id, interaction.token, text
                    )

        else:
            message_id = self._progress_messages.get(question_id) or progress_message_id(question)
            if message_id is None:
                return None
            channel_id = target.channel_id

            async def edit_message(text: str) -> None:
                await self._rest.edit_message(channel_id, message_id, text)

        async def edit(text: str) -> None:
            # Another worker process may be delivering the answer into the same message; once
            # the question is finished a late progress edit would overwrite the answer.
            if not await self._records.is_finished(question_id):
                await edit_message(text)

        self._forget_oldest_progress_state()
        throttle = ProgressThrottle(
            edit,
            interval_seconds=self.limits.min_edit_interval_seconds,
            label=f"question {question_id}",
        )
        self._throttles[question_id] = throttle
        return throttle

    def _forget_oldest_progress_state(self) -> None:
        """Drop the oldest progress state once too many questions have some.

        A question answered here may be delivered by another worker process, so this process
        never learns that its progress state is done with.
        """
        while len(self._throttles) >= MAX_TRACKED_QUESTIONS:
            oldest = next(iter(self._throttles))
            self._throttles.pop(oldest).abandon()
        while len(self._progress_messages) >= MAX_TRACKED_QUESTIONS:
            self._progress_messages.pop(next(iter(self._progress_messages)))

    async def deliver(self, question: Question, reply: Reply) -> list[str]:
        """Post the answer or error message and return the ids of all its messages, in order."""
        assert question.id is not None
        await self._stop_progress(question.id)
        target = delivery_target(question)
        posted = posted_parts(question)

        if isinstance(target, InteractionTarget):
            header = channel_header(target.asker_id)
            # Room for the header, in case part 0 has to go to the channel.
            parts = answer_parts(reply, max_length=MAX_DISCORD_MESSAGE_CHARS - len(header) - 1)
            message_ids = await self._deliver_interaction(question.id, target, parts, posted)
        else:
            parts = answer_parts(reply, max_length=MAX_DISCORD_MESSAGE_CHARS)
            progress_id = self._progress_messages.pop(question.id, None)
            message_ids = await self._post_in_channel(
                question.id,
                target.channel_id,
                parts,
                posted,
                reply_to=reply_reference(
                    channel_id=target.channel_id,
                    message_id=target.message_id,
                    guild_id=target.guild_id,
                ),
                progress_id=progress_id or progress_message_id(question),
            )
        logger.info(
            "question %d: posted %s in %d Discord message(s)",
            question.id,
            reply.status,
            len(message_ids),
        )
        return [str(message_id) for message_id in message_ids]

    async def _stop_progress(self, question_id: int) -> None:
        throttle = self._throttles.pop(question_id, None)
        if throttle is not None:
            await throttle.close(timeout_seconds=PROGRESS_DRAIN_TIMEOUT_SECONDS)

    async def _deliver_interaction(
        self,
        question_id: int,
        target: InteractionTarget,
        parts: list[str],
        posted: dict[int, int],
    ) -> list[int]:
        if target.is_usable(self._now()):
            try:
                return await self._post_to_interaction(question_id, target, parts, posted)
            except DiscordRequestError as exc:
                if not exc.is_expired_interaction:
                    raise
                logger.warning(
                    "question %d: the /ask interaction token expired; posting in channel %d",
                    question_id,
                    target.channel_id,
                )
        else:
            logger.info(
                "question %d: the /ask interaction is older than its token; posting in channel %d",
                question_id,
                target.channel_id,
            )
        if 0 not in posted:
            parts = [f"{channel_header(target.asker_id)}\n{parts[0]}", *parts[1:]]
        return await self._post_in_channel(
            question_id, target.channel_id, parts, posted, reply_to=None, progress_id=None
        )

    async def _post_to_interaction(
        self,
        question_id: int,
        target: InteractionTarget,
        parts: list[str],
        posted: dict[int, int],
    ) -> list[int]:
        """Edit the "thinking" response into part 0 and post the other parts as follow-ups."""
        for index, part in enumerate(parts):
            if index in posted:
                continue
            message = None
            if index == 0:
                message = await self._replace_original_response(target, part)
            if message is None:
                # NOTE: follow-ups take no nonce, so a crash between this post and recording it
                # makes a retried delivery post this part again.
                message = await self._rest.create_followup(
                    target.application_id, target.token, part
                )
            await self._remember_part(question_id, index, message, posted)
        return [posted[index] for index in range(len(parts))]

    async def _post_in_channel(
        self,
        question_id: int,
        channel_id: int,
        parts: list[str],
        posted: dict[int, int],
        *,
        reply_to: dict[str, Any] | None,
        progress_id: int | None,
    ) -> list[int]:
        """Post the parts not yet posted; part 0 replaces the progress message when there is one."""
        for index, part in enumerate(parts):
            if index in posted:
                continue
            message = None
            if index == 0 and progress_id is not None:
                message = await self._replace_progress_message(channel_id, progress_id, part)
            if message is None:
                message = await self._rest.create_message(
                    channel_id,
                    part,
                    nonce=part_nonce(question_id, index),
                    reply_to=reply_to if index == 0 else None,
                )
            await self._remember_part(question_id, index, message, posted)
        return [posted[index] for index in range(len(parts))]

    async def _replace_original_response(
        self, target: InteractionTarget, text: str
    ) -> dict[str, Any] | None:
        """Edit the "thinking" response into `text`; return None when someone deleted it."""
        try:
            return await self._rest.edit_original_response(
                target.application_id, target.token, text
            )
        except DiscordRequestError as exc:
            if exc.code != UNKNOWN_MESSAGE_CODE:
                raise
            logger.info("the /ask response was deleted; posting the answer as a follow-up")
            return None

    async def _replace_progress_message(
        self, channel_id: int, message_id: int, text: str
    ) -> dict[str, Any] | None:
        """Edit the progress message into `text`; return None when someone deleted it."""
        try:
            return await self._rest.edit_message(channel_id, message_id, text)
        except DiscordRequestError as exc:
            if exc.code != UNKNOWN_MESSAGE_CODE:
                raise
            logger.info("progress message %d was deleted; posting a new reply", message_id)
            return None

    async def _remember_part(
        self, question_id: int, index: int, message: dict[str, Any], posted: dict[int, int]
    ) -> None:
        message_id = int(message["id"])
        posted[index] = message_id
        await self._records.remember_part(question_id, index, message_id)

    async def close(self) -> None:
        for question_id in list(self._throttles):
            await self._stop_progress(question_id)
        await self._rest.close()
        self._records.close()


def create_deliverer(settings: Settings) -> DiscordDeliverer:
    """Return the Discord deliverer for a worker; raise ConfigurationError without a valid token."""
    token = validate_token(settings.discord_token)
    return DiscordDeliverer(
        DiscordRest(token, base_url=settings.discord_api_base_url),
        DeliveryRecords(settings.resolved_database_url),
        progress_interval_seconds=settings.discord_progress_interval_seconds,
    )
