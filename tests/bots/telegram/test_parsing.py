"""Which Telegram messages are questions for the bot, and the question text they carry."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Message

from bots.telegram.parsing import (
    command_name,
    is_reply_to_bot,
    mentions_bot,
    question_text,
    strip_command,
    strip_mention,
    thread_id,
)
from tests.bots.telegram.updates import (
    BOT_ID,
    BOT_USERNAME,
    GROUP_CHAT_ID,
    bot_user,
    mention_entity,
    message,
)


def parsed(payload: dict[str, Any]) -> Message:
    result = Message.de_json(payload, None)
    assert result is not None
    return result


def question_of(payload: dict[str, Any]) -> str | None:
    return question_text(parsed(payload), username=BOT_USERNAME, bot_id=BOT_ID)


def bot_message(message_id: int = 5) -> dict[str, Any]:
    payload = message("An earlier answer", message_id=message_id, chat_id=GROUP_CHAT_ID)
    payload["from"] = bot_user()
    return payload


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ask what", "ask"),
        ("/Ask@Ponder_Test_Bot what", "ask"),
        ("/setbudget 1 2", "setbudget"),
        ("", ""),
    ],
)
def test_command_name(text: str, expected: str) -> None:
    assert command_name(text) == expected


def test_strip_command_keeps_line_breaks() -> None:
    assert strip_command("/ask ask me\n  indented") == "ask me\n  indented"


def test_strip_command_without_text() -> None:
    assert strip_command("/ask@ponder_test_bot") == ""


def test_strip_mention_case_insensitive() -> None:
    assert strip_mention("Hey @Ponder_Test_Bot, what is 2+2?", BOT_USERNAME) == "Hey , what is 2+2?"


def test_strip_mention_leaves_longer_names() -> None:
    assert strip_mention("ask @ponder_test_bot2", BOT_USERNAME) == "ask @ponder_test_bot2"


def test_private_text_is_question() -> None:
    assert question_of(message("What is  2 + 3?")) == "What is  2 + 3?"


def test_private_ask_command_is_question() -> None:
    assert question_of(message("/ask What is 2 + 3?")) == "What is 2 + 3?"


def test_other_command_is_not_question() -> None:
    assert question_of(message("/budget")) is None


def test_group_plain_text_ignored() -> None:
    assert question_of(message("hello all", chat_id=GROUP_CHAT_ID)) is None


def test_group_ask_command_is_question() -> None:
    text = f"/ask@{BOT_USERNAME} line one\nline two"

    assert question_of(message(text, chat_id=GROUP_CHAT_ID)) == "line one\nline two"


def test_group_empty_ask_is_empty_question() -> None:
    assert question_of(message("/ask", chat_id=GROUP_CHAT_ID)) == ""


def test_group_mention_is_question() -> None:
    text = f"@{BOT_USERNAME} why is the sky blue?"
    payload = message(text, chat_id=GROUP_CHAT_ID, entities=[mention_entity(text)])

    assert mentions_bot(parsed(payload), username=BOT_USERNAME, bot_id=BOT_ID)
    assert question_of(payload) == "why is the sky blue?"


def test_group_mention_of_other_bot_ignored() -> None:
    text = "@other_bot why is the sky blue?"
    payload = message(text, chat_id=GROUP_CHAT_ID, entities=[mention_entity(text, "@other_bot")])

    assert question_of(payload) is None


def test_group_text_mention_is_question() -> None:
    text = "Ponder, what is 6 * 7?"
    entity = {"type": "text_mention", "offset": 0, "length": 6, "user": bot_user()}
    payload = message(text, chat_id=GROUP_CHAT_ID, entities=[entity])

    assert question_of(payload) == text


def test_group_reply_to_bot_is_question() -> None:
    payload = message("And why?", chat_id=GROUP_CHAT_ID, reply_to=bot_message())

    assert is_reply_to_bot(parsed(payload), BOT_ID)
    assert question_of(payload) == "And why?"


def test_group_reply_to_person_ignored() -> None:
    other = message("I think so", message_id=4, chat_id=GROUP_CHAT_ID, from_id=77)
    payload = message("And why?", chat_id=GROUP_CHAT_ID, reply_to=other)

    assert question_of(payload) is None


def test_topic_message_thread_id() -> None:
    payload = message("In a topic", chat_id=GROUP_CHAT_ID)
    payload["message_thread_id"] = 7
    payload["is_topic_message"] = True

    assert thread_id(parsed(payload)) == "7"


def test_plain_message_has_no_thread() -> None:
    assert thread_id(parsed(message("hi"))) is None
