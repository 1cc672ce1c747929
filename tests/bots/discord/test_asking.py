"""`/ask` and messages for the bot, fed as gateway payloads to a PonderBot logged in to the fake."""

from __future__ import annotations

import discord
from sqlalchemy import Engine
from sqlmodel import select

from bots.discord.parsing import MENTION_USAGE
from core.db import session_scope
from core.errors import UserBlockedError
from core.models import Question
from core.questions import get_or_create_user, record_answer_messages, submit_question
from core.schemas import AskRequest
from tests.bots.discord.conftest import APPLICATION_ID, BOT_USER_ID, BotHarness
from tests.bots.discord.payloads import (
    CHANNEL_ID,
    GUILD_ID,
    STRING_OPTION,
    bot_message,
    interaction_create,
    message_create,
    option,
    snowflake,
)

ASKER_ID = 2_200_000_000_000_000_001
EPHEMERAL = 1 << 6
DEFERRED_CHANNEL_MESSAGE = 5
CHANNEL_MESSAGE = 4


def stored_questions(engine: Engine) -> list[Question]:
    with session_scope(engine) as session:
        return list(session.exec(select(Question).order_by(Question.id)).all())  # type: ignore[arg-type]


def ask_payload(question: str, effort: str | None = None) -> dict[str, object]:
    options = [option("question", STRING_OPTION, question)]
    if effort is not None:
        options.append(option("effort", STRING_OPTION, effort))
    return interaction_create(
        application_id=APPLICATION_ID, user_id=ASKER_ID, command="ask", options=options
    )


def block_asker(engine: Engine) -> None:
    with session_scope(engine) as session:
        user = get_or_create_user(session, "discord", str(ASKER_ID))
        user.is_blocked = True
        session.add(user)


async def test_ask_defers_then_stores_question(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    payload = ask_payload("What is 2 + 3?", effort="high")

    await bot_harness.dispatch_interaction(payload)

    callbacks = bot_harness.server.requests_to("POST", "/callback$")
    assert len(callbacks) == 1
    assert callbacks[0].path == f"/interactions/{payload['id']}/{payload['token']}/callback"
    assert callbacks[0].body["type"] == DEFERRED_CHANNEL_MESSAGE
    assert not (callbacks[0].body.get("data") or {}).get("flags", 0) & EPHEMERAL
    [question] = stored_questions(migrated_engine)
    assert bot_harness.enqueued == [question.id]
    assert question.text == "What is 2 + 3?"
    assert question.effort == "high"
    assert question.platform == "discord"
    assert question.chat_id == str(CHANNEL_ID)
    assert question.delivery["kind"] == "interaction"
    assert question.delivery["application_id"] == str(APPLICATION_ID)
    assert question.delivery["interaction_token"] == payload["token"]
    assert question.delivery["asker_id"] == str(ASKER_ID)
    created_at = discord.utils.snowflake_time(int(str(payload["id"])))
    assert question.delivery["interaction_created_at"] == created_at.isoformat()


async def test_ask_acknowledged_before_storing(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    callbacks_when_enqueued: list[int] = []

    def enqueue(question_id: int) -> None:
        callbacks_when_enqueued.append(len(bot_harness.server.requests_to("POST", "/callback$")))

    bot_harness.on_enqueue = enqueue

    await bot_harness.dispatch_interaction(ask_payload("What is 2 + 3?"))

    assert callbacks_when_enqueued == [1]


async def test_ask_effort_defaults_to_auto(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    await bot_harness.dispatch_interaction(ask_payload("Is ice cold?"))

    [question] = stored_questions(migrated_engine)
    assert question.effort == "auto"


async def test_ask_empty_question_answered_ephemerally(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    await bot_harness.dispatch_interaction(ask_payload("   "))

    [callback] = bot_harness.server.requests_to("POST", "/callback$")
    assert callback.body["type"] == CHANNEL_MESSAGE
    assert callback.body["data"]["flags"] == EPHEMERAL
    assert callback.body["data"]["content"] == "Your question is empty. Please write a question."
    assert stored_questions(migrated_engine) == []
    assert bot_harness.enqueued == []


async def test_ask_too_long_answered_ephemerally(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    await bot_harness.dispatch_interaction(ask_payload("why " * 1_500))

    [callback] = bot_harness.server.requests_to("POST", "/callback$")
    assert callback.body["data"]["flags"] == EPHEMERAL
    assert callback.body["data"]["content"] == (
        "Your question is too long (5,999 characters; the maximum is 4,000). Please shorten it."
    )
    assert stored_questions(migrated_engine) == []


async def test_ask_from_blocked_user_gets_short_message(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    block_asker(migrated_engine)

    await bot_harness.dispatch_interaction(ask_payload("What is 2 + 3?"))

    [edit] = bot_harness.server.requests_to("PATCH", "/messages/@original$")
    assert edit.body["content"] == UserBlockedError.user_message
    assert stored_questions(migrated_engine) == []


async def test_mention_becomes_question(bot_harness: BotHarness, migrated_engine: Engine) -> None:
    payload = message_create(
        author_id=ASKER_ID, content=f"<@{BOT_USER_ID}> what is 2 + 3?", mentions=[BOT_USER_ID]
    )

    await bot_harness.dispatch_message(payload)

    [question] = stored_questions(migrated_engine)
    assert question.text == "what is 2 + 3?"
    assert question.message_id == payload["id"]
    assert question.chat_id == str(CHANNEL_ID)
    assert question.follow_up_of_id is None
    assert question.delivery == {"kind": "message", "guild_id": str(GUILD_ID)}
    assert bot_harness.enqueued == [question.id]


async def test_nickname_mention_stripped(bot_harness: BotHarness, migrated_engine: Engine) -> None:
    payload = message_create(
        author_id=ASKER_ID,
        content=f"Hey <@!{BOT_USER_ID}>, is ice cold?",
        mentions=[BOT_USER_ID],
    )

    await bot_harness.dispatch_message(payload)

    [question] = stored_questions(migrated_engine)
    assert question.text == "Hey , is ice cold?"


async def test_mention_only_gets_usage_reply(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    payload = message_create(
        author_id=ASKER_ID, content=f"<@{BOT_USER_ID}>", mentions=[BOT_USER_ID]
    )

    await bot_harness.dispatch_message(payload)

    [reply] = bot_harness.server.requests_to("POST", rf"^/channels/{CHANNEL_ID}/messages$")
    assert reply.body["content"] == MENTION_USAGE
    assert str(reply.body["message_reference"]["message_id"]) == payload["id"]
    assert reply.body["allowed_mentions"] == {"parse": [], "replied_user": False}
    assert stored_questions(migrated_engine) == []


async def test_reply_to_answer_is_follow_up(
    bot_harness: BotHarness, discord_settings, migrated_engine: Engine
) -> None:
    earlier = submit_question(
        migrated_engine,
        discord_settings,
        AskRequest(
            platform="discord",
            user_id=str(ASKER_ID),
            text="What is 2 + 3?",
            chat_id=str(CHANNEL_ID),
        ),
    )
    answer_message_id = snowflake()
    record_answer_messages(migrated_engine, earlier, str(CHANNEL_ID), [str(answer_message_id)])
    # Replying with the ping on puts the bot in `mentions`, so Discord sends the content.
    payload = message_create(
        author_id=ASKER_ID,
        content="And times 2?",
        mentions=[BOT_USER_ID],
        referenced=bot_message(BOT_USER_ID, answer_message_id, "2 + 3 = 5."),
    )

    await bot_harness.dispatch_message(payload)

    follow_up = stored_questions(migrated_engine)[-1]
    assert follow_up.text == "And times 2?"
    assert follow_up.follow_up_of_id == earlier.id
    assert follow_up.message_id == payload["id"]


async def test_reply_to_other_bot_message_is_new_question(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    payload = message_create(
        author_id=ASKER_ID,
        content="What about 4 + 4?",
        mentions=[BOT_USER_ID],
        referenced=bot_message(BOT_USER_ID, snowflake(), MENTION_USAGE),
    )

    await bot_harness.dispatch_message(payload)

    [question] = stored_questions(migrated_engine)
    assert question.text == "What about 4 + 4?"
    assert question.follow_up_of_id is None


async def test_message_without_mention_ignored(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    await bot_harness.dispatch_message(message_create(author_id=ASKER_ID, content="hello all"))

    assert stored_questions(migrated_engine) == []
    assert bot_harness.server.requests_to("POST", "/messages$") == []


async def test_message_from_bot_ignored(bot_harness: BotHarness, migrated_engine: Engine) -> None:
    payload = message_create(
        author_id=ASKER_ID,
        content=f"<@{BOT_USER_ID}> what is 2 + 3?",
        mentions=[BOT_USER_ID],
        author_is_bot=True,
    )

    await bot_harness.dispatch_message(payload)

    assert stored_questions(migrated_engine) == []


async def test_direct_message_is_question(bot_harness: BotHarness, migrated_engine: Engine) -> None:
    payload = message_create(author_id=ASKER_ID, content="What is 2 + 3?", in_guild=False)

    await bot_harness.dispatch_message(payload)

    [question] = stored_questions(migrated_engine)
    assert question.text == "What is 2 + 3?"
    assert question.delivery == {"kind": "message", "guild_id": None}


async def test_mention_from_blocked_user_gets_reply(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    block_asker(migrated_engine)
    payload = message_create(
        author_id=ASKER_ID, content=f"<@{BOT_USER_ID}> what is 2 + 3?", mentions=[BOT_USER_ID]
    )

    await bot_harness.dispatch_message(payload)

    [reply] = bot_harness.server.requests_to("POST", rf"^/channels/{CHANNEL_ID}/messages$")
    assert reply.body["content"] == UserBlockedError.user_message
    assert str(reply.body["message_reference"]["message_id"]) == payload["id"]
    assert stored_questions(migrated_engine) == []


async def test_unexpected_error_logged_not_shown(
    bot_harness: BotHarness, migrated_engine: Engine, caplog
) -> None:
    def broken_enqueue(question_id: int) -> None:
        raise RuntimeError(f"broker down while queueing {question_id}")

    bot_harness.on_enqueue = broken_enqueue
    payload = message_create(
        author_id=ASKER_ID, content=f"<@{BOT_USER_ID}> what is 2 + 3?", mentions=[BOT_USER_ID]
    )

    await bot_harness.dispatch_message(payload)

    [reply] = bot_harness.server.requests_to("POST", rf"^/channels/{CHANNEL_ID}/messages$")
    assert reply.body["content"] == (
        "Something went wrong while answering. Please try again later."
    )
    assert "broker down" not in reply.body["content"]
    assert "RuntimeError: broker down while queueing" in caplog.text
