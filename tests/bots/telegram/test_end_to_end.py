"""A Telegram question answered end to end: bot → Celery on Redis → worker → Bot API.

The bot (the real Application) runs in this process and long-polls the fake Bot API server; a
real `ponder worker` answers with the embedded model and delivers through the same fake server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from bots.telegram.delivery import PROGRESS_MESSAGE_KEY, answer_parts
from bots.telegram.texts import THINKING_TEXT
from core.answering import reply_from_question
from core.db import session_scope
from core.models import AnswerMessage, Question
from tests.bots.telegram.conftest import TEST_TOKEN, TelegramApplication
from tests.bots.telegram.updates import PRIVATE_CHAT_ID, message, update
from tests.fakes.telegram_server import FakeBotApi, RecordedRequest

pytestmark = [pytest.mark.redis, pytest.mark.model, pytest.mark.slow]

ANSWER_WAIT_SECONDS = 300
DELIVERED_WAIT_SECONDS = 30
AFTER_DELIVERY_SECONDS = 2.0


def answers_to(api: FakeBotApi, message_id: int) -> list[RecordedRequest]:
    """Return the bot's messages that reply to `message_id`, except the "thinking…" message."""
    return [
        request
        for request in api.sent_to(PRIVATE_CHAT_ID)
        if request.params.get("reply_parameters", {}).get("message_id") == message_id
        and request.params["text"] != THINKING_TEXT
    ]


async def delivered_question(engine: Engine, message_id: int) -> Question:
    """Wait until the question asked in `message_id` has `delivered_at` set, and return it."""
    deadline = time.monotonic() + DELIVERED_WAIT_SECONDS
    while True:
        with session_scope(engine) as session:
            question = session.exec(
                select(Question).where(Question.message_id == str(message_id))
            ).first()
        if question is not None and question.delivered_at is not None:
            return question
        assert time.monotonic() < deadline, f"question in message {message_id} not delivered"
        await asyncio.sleep(0.2)


def recorded_answer_ids(engine: Engine, question_id: int) -> list[str]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(AnswerMessage).where(AnswerMessage.question_id == question_id)
        ).all()
        return [row.message_id for row in rows]


async def ask_and_wait(api: FakeBotApi, payload: dict[str, Any]) -> RecordedRequest:
    api.queue_update(update(payload))
    message_id = payload["message_id"]
    await api.wait_for(
        lambda _: bool(answers_to(api, message_id)), within_seconds=ANSWER_WAIT_SECONDS
    )
    return answers_to(api, message_id)[0]


async def test_question_and_follow_up_answered(
    broker_env: dict[str, str],
    start_worker: Any,
    fake_api: FakeBotApi,
    running_bot: TelegramApplication,
    migrated_engine: Engine,
) -> None:
    worker = await asyncio.to_thread(
        start_worker,
        extra_env={
            "PONDER_TELEGRAM_TOKEN": TEST_TOKEN,
            "PONDER_TELEGRAM_BASE_URL": fake_api.base_url,
        },
    )

    first_answer = await ask_and_wait(fake_api, message("What is 2 + 3?", message_id=10))
    first = await delivered_question(migrated_engine, 10)
    await asyncio.sleep(AFTER_DELIVERY_SECONDS)

    assert first.status == "answered"
    expected = [part.text for part in answer_parts(reply_from_question(first))]
    assert [request.params["text"] for request in answers_to(fake_api, 10)] == expected
    assert first_answer.params["text"].endswith(first.footnote or "<no footnote>")
    assert recorded_answer_ids(migrated_engine, first.id or 0) == [
        str(first_answer.result["message_id"])
    ]
    typing = fake_api.calls("sendChatAction")
    assert typing[0].params["action"] == "typing"
    deleted = [request.params["message_id"] for request in fake_api.calls("deleteMessage")]
    assert deleted == [first.delivery[PROGRESS_MESSAGE_KEY]]

    follow_up_payload = message(
        "And what is that times 2?", message_id=11, reply_to=first_answer.result
    )
    second_answer = await ask_and_wait(fake_api, follow_up_payload)
    second = await delivered_question(migrated_engine, 11)

    assert second.follow_up_of_id == first.id
    assert second.status == "answered"
    assert second_answer.params["text"].endswith(second.footnote or "<no footnote>")
    assert f"answering question {second.id}" in worker.log()
    assert TEST_TOKEN not in worker.log()
