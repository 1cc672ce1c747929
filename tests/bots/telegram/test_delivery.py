"""TelegramDeliverer, through the real python-telegram-bot Bot, against the fake Bot API server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from bots.telegram.delivery import (
    ANSWERED_BELOW_TEXT,
    EMPTY_ANSWER_TEXT,
    MAX_RETRY_AFTER_SECONDS,
    PROGRESS_MESSAGE_KEY,
    TelegramDeliverer,
)
from core.config import Settings
from core.db import session_scope
from core.delivery_records import POSTED_PARTS_KEY
from core.errors import ConfigurationError, DeliveryError
from core.models import Question
from core.questions import submit_question
from core.schemas import AskRequest, Reply
from core.strategies.base import Progress
from tests.fakes.telegram_server import FakeBotApi, RecordedRequest, utf16_length

CHAT_ID = 555
QUESTION_MESSAGE_ID = 10
FOOTNOTE = "— direct · 1 call · 12 + 30 tokens · 0.4 s (model 0.3 s) · smollm2"
MARKDOWN_TRAPS = (
    "Use *stars* and _under_scores_ like snake_case_name, [brackets](not a link) ~tilde~ "
    "> quote # hash + plus - minus = equals | pipe {braces} . dot ! bang `tick` and ``double``\n"
    "1. *unclosed bold and _unclosed italic [unclosed link(\n"
    "<b>not html</b> &amp; <i>\n"
    "```python\n"
    "def f(x): return x * 2  # an unbalanced fence follows\n"
)


@pytest.fixture
async def deliverer(
    telegram_settings: Settings, migrated_engine: Engine
) -> AsyncIterator[TelegramDeliverer]:
    # The deliverer records posted parts in the database; these questions are not stored, so
    # the records only need the tables.
    deliverer = TelegramDeliverer(telegram_settings)
    yield deliverer
    await deliverer.close()


def make_question(api: FakeBotApi, *, question_id: int = 1, chat_id: int = CHAT_ID) -> Question:
    progress_id = api.add_message(chat_id, "thinking…")
    return Question(
        id=question_id,
        user_id=1,
        platform="telegram",
        chat_id=str(chat_id),
        message_id=str(QUESTION_MESSAGE_ID),
        text="a question",
        delivery={PROGRESS_MESSAGE_KEY: progress_id},
    )


def stored_question(engine: Engine, settings: Settings, api: FakeBotApi) -> Question:
    """Store a Telegram question with a progress message, as the bot process does."""
    progress_id = api.add_message(CHAT_ID, "thinking…")
    question = submit_question(
        engine,
        settings,
        AskRequest(
            platform="telegram",
            user_id="7",
            chat_id=str(CHAT_ID),
            message_id=str(QUESTION_MESSAGE_ID),
            text="a question",
            delivery={PROGRESS_MESSAGE_KEY: progress_id},
        ),
    )
    assert question.id is not None
    return load(engine, question.id)


def load(engine: Engine, question_id: int) -> Question:
    with session_scope(engine) as session:
        question = session.get(Question, question_id)
    assert question is not None
    return question


def answered(answer: str, *, footnote: str = FOOTNOTE) -> Reply:
    return Reply(question_id=1, answer=answer, footnote=footnote, status="answered")


def sent_texts(api: FakeBotApi) -> list[str]:
    return [request.params["text"] for request in api.calls("sendMessage")]


def entity_text(request: RecordedRequest, entity: dict[str, Any]) -> str:
    encoded = str(request.params["text"]).encode("utf-16-le")
    start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
    return encoded[start:end].decode("utf-16-le")


def entities_of(request: RecordedRequest, kind: str) -> list[dict[str, Any]]:
    return [entity for entity in request.params.get("entities", []) if entity["type"] == kind]


async def test_deliver_short_answer_as_reply(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)

    message_ids = await deliverer.deliver(question, answered("Paris is the capital."))

    sends = fake_api.calls("sendMessage")
    assert len(sends) == 1
    assert sends[0].params["text"] == f"Paris is the capital.\n\n{FOOTNOTE}"
    assert sends[0].params["reply_parameters"]["message_id"] == QUESTION_MESSAGE_ID
    assert sends[0].params["link_preview_options"] == {"is_disabled": True}
    assert message_ids == [str(sends[0].result["message_id"])]
    italic = entities_of(sends[0], "italic")
    assert [entity_text(sends[0], entity) for entity in italic] == [FOOTNOTE]
    deleted = fake_api.calls("deleteMessage")
    assert [request.params["message_id"] for request in deleted] == [
        question.delivery[PROGRESS_MESSAGE_KEY]
    ]


async def test_long_answer_split_by_utf16_units(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    # 38 paragraphs of 50 emoji and 50 CJK characters: 3,988 characters in Python but 5,888
    # UTF-16 code units, because each emoji is a surrogate pair.
    paragraphs = [f"{index:02d} " + "😀" * 50 + "漢" * 50 for index in range(38)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) < 4_096 < utf16_length(answer)

    message_ids = await deliverer.deliver(make_question(fake_api), answered(answer))

    texts = sent_texts(fake_api)
    assert len(texts) == 2
    assert len(message_ids) == 2
    assert all(utf16_length(text) <= 4_096 for text in texts)
    assert "\n\n".join(texts) == f"{answer}\n\n{FOOTNOTE}"
    assert FOOTNOTE not in texts[0]
    assert texts[1].endswith(FOOTNOTE)
    first, last = fake_api.calls("sendMessage")
    assert "reply_parameters" in first.params
    assert "reply_parameters" not in last.params
    assert entities_of(first, "italic") == []
    assert [entity_text(last, entity) for entity in entities_of(last, "italic")] == [FOOTNOTE]


async def test_code_fence_reopened_across_parts(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    code_lines = [f"value_{index} = [{index}] * 3  # 🙂 列表" for index in range(300)]
    answer = "Here is the code:\n\n```python\n" + "\n".join(code_lines) + "\n```\n\nDone."

    await deliverer.deliver(make_question(fake_api), answered(answer))

    sends = fake_api.calls("sendMessage")
    assert len(sends) == 4
    assert sends[0].params["text"] == "Here is the code:"
    for request in sends[1:]:
        assert request.params["text"].startswith("```python\n")
    for request in sends[1:-1]:
        assert request.params["text"].endswith("\n```")
    received_code: list[str] = []
    for request in sends[1:]:
        blocks = entities_of(request, "pre")
        assert len(blocks) == 1
        assert blocks[0]["language"] == "python"
        received_code.extend(entity_text(request, blocks[0]).split("\n"))
    assert received_code == code_lines
    assert sends[-1].params["text"].endswith(f"Done.\n\n{FOOTNOTE}")


async def test_markdown_traps_arrive_intact(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    await deliverer.deliver(make_question(fake_api), answered(MARKDOWN_TRAPS))

    (send,) = fake_api.calls("sendMessage")
    assert send.params["text"] == f"{MARKDOWN_TRAPS.rstrip(chr(10))}\n\n{FOOTNOTE}"
    assert "parse_mode" not in send.params
    blocks = entities_of(send, "pre")
    assert [entity_text(send, block) for block in blocks] == [
        "def f(x): return x * 2  # an unbalanced fence follows"
    ]
    inline = [entity_text(send, entity) for entity in entities_of(send, "code")]
    assert inline == ["tick", "double"]


async def test_rejected_entities_fall_back_to_plain_text(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    fake_api.reject_formatting(1)

    message_ids = await deliverer.deliver(make_question(fake_api), answered(MARKDOWN_TRAPS))

    attempts = fake_api.calls("sendMessage", ok_only=False)
    assert [request.status for request in attempts] == [400, 200]
    assert "entities" in attempts[0].params
    assert "entities" not in attempts[1].params
    assert attempts[1].params["text"] == attempts[0].params["text"]
    assert len(message_ids) == 1


async def test_retry_after_waited_out(deliverer: TelegramDeliverer, fake_api: FakeBotApi) -> None:
    question = make_question(fake_api)
    await deliverer.bot()
    fake_api.fail_with_retry_after(2, seconds=1, methods={"sendMessage"})

    message_ids = await deliverer.deliver(question, answered("Four."))

    attempts = fake_api.calls("sendMessage", ok_only=False)
    assert [request.status for request in attempts] == [429, 429, 200]
    assert attempts[1].monotonic - attempts[0].monotonic >= 1.0
    assert attempts[2].monotonic - attempts[1].monotonic >= 1.0
    assert len(message_ids) == 1


async def test_long_retry_after_raises_then_retry_delivers(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    await deliverer.bot()
    fake_api.fail_with_retry_after(
        1, seconds=int(MAX_RETRY_AFTER_SECONDS) + 30, methods={"sendMessage"}
    )

    with pytest.raises(DeliveryError, match="flood control"):
        await deliverer.deliver(question, answered("Four."))
    message_ids = await deliverer.deliver(question, answered("Four."))

    assert sent_texts(fake_api) == [f"Four.\n\n{FOOTNOTE}"]
    assert len(message_ids) == 1


async def test_deliver_twice_posts_once(deliverer: TelegramDeliverer, fake_api: FakeBotApi) -> None:
    question = make_question(fake_api)

    first = await deliverer.deliver(question, answered("Once."))
    second = await deliverer.deliver(question, answered("Once."))

    assert sent_texts(fake_api) == [f"Once.\n\n{FOOTNOTE}"]
    assert second == first


async def test_failed_part_resumes_without_reposting(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    answer = "\n\n".join(["first " * 600, "second " * 500])
    await deliverer.bot()
    fake_api.fail_with_retry_after(1, seconds=120, methods={"sendMessage"}, skip=1)

    with pytest.raises(DeliveryError, match="flood control"):
        await deliverer.deliver(question, answered(answer))
    message_ids = await deliverer.deliver(question, answered(answer))

    texts = sent_texts(fake_api)
    assert len(texts) == 2
    assert texts[0].startswith("first ")
    assert texts[1].startswith("second ")
    assert message_ids == [
        str(request.result["message_id"]) for request in fake_api.calls("sendMessage")
    ]


async def test_new_process_resumes_at_unposted_part(
    telegram_settings: Settings, migrated_engine: Engine, fake_api: FakeBotApi
) -> None:
    question = stored_question(migrated_engine, telegram_settings, fake_api)
    assert question.id is not None
    reply = answered("\n\n".join(["first " * 600, "second " * 500, "third " * 500]))
    crashed = TelegramDeliverer(telegram_settings)
    await crashed.bot()
    fake_api.fail_with_server_error(1, methods={"sendMessage"}, skip=1)
    try:
        with pytest.raises(DeliveryError, match="part 2 of 3"):
            await crashed.deliver(question, reply)
    finally:
        await crashed.close()

    # A new deliverer stands for another worker process, which reloads the question.
    resumed = TelegramDeliverer(telegram_settings)
    try:
        message_ids = await resumed.deliver(load(migrated_engine, question.id), reply)
    finally:
        await resumed.close()

    attempts = fake_api.calls("sendMessage", ok_only=False)
    sends = fake_api.calls("sendMessage")
    assert [request.status for request in attempts] == [200, 500, 200, 200]
    assert [text.split(" ", 1)[0] for text in sent_texts(fake_api)] == ["first", "second", "third"]
    assert sent_texts(fake_api)[2].endswith(FOOTNOTE)
    assert "reply_parameters" in sends[0].params
    assert "reply_parameters" not in sends[1].params
    assert message_ids == [str(request.result["message_id"]) for request in sends]
    recorded = load(migrated_engine, question.id).delivery[POSTED_PARTS_KEY]
    assert recorded == {str(index): message_id for index, message_id in enumerate(message_ids)}


async def test_recorded_parts_not_posted_again(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    question.delivery = {**question.delivery, POSTED_PARTS_KEY: {"0": "77"}}
    answer = "\n\n".join(["first " * 600, "second " * 500])

    message_ids = await deliverer.deliver(question, answered(answer))

    (send,) = fake_api.calls("sendMessage")
    assert send.params["text"].startswith("second ")
    assert "reply_parameters" not in send.params
    assert message_ids == ["77", str(send.result["message_id"])]


async def test_blocked_bot_gives_up_without_error(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    fake_api.blocked_chats.add(CHAT_ID)

    message_ids = await deliverer.deliver(question, answered("Nobody reads this."))

    assert message_ids == []
    assert [request.status for request in fake_api.calls("sendMessage", ok_only=False)] == [403]


async def test_failure_reply_has_no_footnote(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    reply = Reply(
        question_id=1,
        answer="Your token budget is used up.",
        footnote="",
        status="refused",
        error="budget",
    )

    await deliverer.deliver(make_question(fake_api), reply)

    (send,) = fake_api.calls("sendMessage")
    assert send.params["text"] == "Your token budget is used up."
    assert "entities" not in send.params


async def test_empty_answer_gets_fixed_text(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    await deliverer.deliver(make_question(fake_api), answered("  \n "))

    assert sent_texts(fake_api) == [f"{EMPTY_ANSWER_TEXT}\n\n{FOOTNOTE}"]


async def test_undeletable_progress_message_marked_done(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    progress_id = question.delivery[PROGRESS_MESSAGE_KEY]
    fake_api.messages.pop((CHAT_ID, progress_id))
    fake_api.add_message(CHAT_ID, "placeholder")

    await deliverer.deliver(question, answered("Yes."))

    assert [request.status for request in fake_api.calls("deleteMessage", ok_only=False)] == [400]
    edits = fake_api.calls("editMessageText", ok_only=False)
    assert [request.params["text"] for request in edits] == [ANSWERED_BELOW_TEXT]


async def test_started_sends_typing(deliverer: TelegramDeliverer, fake_api: FakeBotApi) -> None:
    await deliverer.started(make_question(fake_api))

    (action,) = fake_api.calls("sendChatAction")
    assert action.params["action"] == "typing"
    assert action.params["chat_id"] == CHAT_ID


async def test_progress_edits_throttled_per_chat(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    other_chat = make_question(fake_api, question_id=2, chat_id=777)

    for done in range(1, 6):
        await deliverer.progress(question, Progress("self_consistency", "samples", done, 8))
    await deliverer.progress(other_chat, Progress("self_consistency", "samples", 1, 8))

    edits = fake_api.calls("editMessageText")
    assert [(request.params["chat_id"], request.params["text"]) for request in edits] == [
        (CHAT_ID, "thinking: self-consistency, 1 of 8 samples"),
        (777, "thinking: self-consistency, 1 of 8 samples"),
    ]


async def test_progress_edit_after_interval(
    telegram_settings: Settings, fake_api: FakeBotApi
) -> None:
    # The interval is long enough that a slow first edit on a loaded machine stays inside it.
    settings = telegram_settings.model_copy(update={"telegram_progress_interval_seconds": 2.0})
    deliverer = TelegramDeliverer(settings)
    question = make_question(fake_api)
    try:
        await deliverer.progress(question, Progress("best_of_n", "samples", 1, 4))
        await deliverer.progress(question, Progress("best_of_n", "samples", 2, 4))
        await asyncio.sleep(2.1)
        await deliverer.progress(question, Progress("best_of_n", "samples", 3, 4))
    finally:
        await deliverer.close()

    texts = [request.params["text"] for request in fake_api.calls("editMessageText")]
    assert texts == ["thinking: best-of-n, 1 of 4 samples", "thinking: best-of-n, 3 of 4 samples"]


async def test_progress_dropped_under_flood_answer_delivered(
    deliverer: TelegramDeliverer, fake_api: FakeBotApi
) -> None:
    question = make_question(fake_api)
    await deliverer.bot()
    fake_api.fail_with_retry_after(1, seconds=5, methods={"editMessageText"})

    started = time.monotonic()
    await deliverer.progress(question, Progress("self_consistency", "samples", 1, 8))
    progress_seconds = time.monotonic() - started
    message_ids = await deliverer.deliver(question, answered("Eight."))

    assert progress_seconds < 1.0
    assert fake_api.calls("editMessageText") == []
    assert sent_texts(fake_api) == [f"Eight.\n\n{FOOTNOTE}"]
    assert len(message_ids) == 1


async def test_missing_token_raises_configuration_error(
    telegram_settings: Settings, fake_api: FakeBotApi
) -> None:
    deliverer = TelegramDeliverer(telegram_settings.model_copy(update={"telegram_token": None}))

    with pytest.raises(ConfigurationError, match="PONDER_TELEGRAM_TOKEN is not set"):
        await deliverer.deliver(make_question(fake_api), answered("x"))


async def test_rejected_token_not_in_error(
    telegram_settings: Settings, fake_api: FakeBotApi
) -> None:
    other_token = "111:" + "B" * 35
    settings = telegram_settings.model_copy(update={"telegram_token": SecretStr(other_token)})
    deliverer = TelegramDeliverer(settings)

    with pytest.raises(ConfigurationError) as raised:
        await deliverer.deliver(make_question(fake_api), answered("x"))

    assert "rejected PONDER_TELEGRAM_TOKEN" in str(raised.value)
    assert other_token not in str(raised.value)
    assert raised.value.__cause__ is None
