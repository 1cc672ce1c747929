"""The Telegram bot's handlers, run by the real Application against the fake Bot API server.

Updates arrive the way Telegram delivers them, through getUpdates (or a webhook POST), and the
tests read what the bot sent from the fake server's request log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp
import pytest
from kombu.exceptions import OperationalError
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import select
from telegram.ext import Application

from bots.telegram.bot import (
    ALLOWED_UPDATES,
    MENU_COMMANDS,
    announce_commands,
    build_application,
    startup_errors_translated,
    webhook_options,
)
from bots.telegram.delivery import PROGRESS_MESSAGE_KEY
from bots.telegram.texts import QUEUE_UNAVAILABLE_TEXT, THINKING_TEXT
from core.config import Settings
from core.db import create_db_engine, session_scope
from core.errors import ConfigurationError, UserBlockedError
from core.models import Question, User
from core.questions import record_answer_messages
from tests.bots.telegram.conftest import TEST_TOKEN
from tests.bots.telegram.updates import (
    ADMIN_ID,
    ASKER_ID,
    BOT_USERNAME,
    GROUP_CHAT_ID,
    PRIVATE_CHAT_ID,
    bot_user,
    mention_entity,
    message,
    update,
)
from tests.fakes.telegram_server import FakeBotApi

QUIET_SECONDS = 1.0

App = Application[Any, Any, Any, Any, Any, Any]


def stored_questions(engine: Engine) -> list[Question]:
    with session_scope(engine) as session:
        return list(session.exec(select(Question)).all())


async def ask_help_and_wait(api: FakeBotApi, chat_id: int = PRIVATE_CHAT_ID) -> None:
    """Send /help after the updates under test, so that their handlers have run when it returns."""
    before = len(api.sent_to(chat_id))
    api.queue_update(update(message("/help", message_id=99, chat_id=chat_id)))
    await api.next_message_to(chat_id, after=before)
    await asyncio.sleep(QUIET_SECONDS)


@pytest.mark.redis
async def test_private_question_stored_and_queued(
    broker_env: dict[str, str],
    running_bot: App,
    fake_api: FakeBotApi,
    migrated_engine: Engine,
) -> None:
    fake_api.queue_update(update(message("What is 2 + 3?", message_id=10)))

    thinking = await fake_api.next_message_to(PRIVATE_CHAT_ID)
    await asyncio.sleep(QUIET_SECONDS)

    assert thinking.params["text"] == THINKING_TEXT
    assert thinking.params["reply_parameters"]["message_id"] == 10
    (question,) = stored_questions(migrated_engine)
    assert question.platform == "telegram"
    assert question.text == "What is 2 + 3?"
    assert question.chat_id == str(PRIVATE_CHAT_ID)
    assert question.message_id == "10"
    assert question.thread_id is None
    assert question.follow_up_of_id is None
    assert question.status == "queued"
    assert question.delivery == {PROGRESS_MESSAGE_KEY: thinking.result["message_id"]}


@pytest.mark.redis
async def test_group_mention_stored_without_mention(
    broker_env: dict[str, str],
    running_bot: App,
    fake_api: FakeBotApi,
    migrated_engine: Engine,
) -> None:
    text = f"@{BOT_USERNAME} why is the sky blue?"
    payload = message(text, chat_id=GROUP_CHAT_ID, entities=[mention_entity(text)])
    fake_api.queue_update(update(payload))

    thinking = await fake_api.next_message_to(GROUP_CHAT_ID)
    await asyncio.sleep(QUIET_SECONDS)

    assert thinking.params["text"] == THINKING_TEXT
    (question,) = stored_questions(migrated_engine)
    assert question.text == "why is the sky blue?"
    assert question.chat_id == str(GROUP_CHAT_ID)


@pytest.mark.redis
async def test_group_reply_to_answer_is_follow_up(
    broker_env: dict[str, str],
    running_bot: App,
    fake_api: FakeBotApi,
    migrated_engine: Engine,
) -> None:
    with session_scope(migrated_engine) as session:
        asker = User(platform="telegram", platform_user_id=str(ASKER_ID))
        session.add(asker)
        session.flush()
        assert asker.id is not None
        earlier = Question(
            user_id=asker.id, platform="telegram", chat_id=str(GROUP_CHAT_ID), text="Why?"
        )
        session.add(earlier)
    record_answer_messages(migrated_engine, earlier, str(GROUP_CHAT_ID), ["500"])
    answer = message("Because.", message_id=500, chat_id=GROUP_CHAT_ID)
    answer["from"] = bot_user()
    fake_api.queue_update(
        update(message("And why is that?", message_id=501, chat_id=GROUP_CHAT_ID, reply_to=answer))
    )

    await fake_api.next_message_to(GROUP_CHAT_ID)
    await asyncio.sleep(QUIET_SECONDS)

    follow_up = [
        question for question in stored_questions(migrated_engine) if question.id != earlier.id
    ]
    assert [question.text for question in follow_up] == ["And why is that?"]
    assert follow_up[0].follow_up_of_id == earlier.id


@pytest.mark.redis
async def test_blocked_user_told_nothing_stored(
    broker_env: dict[str, str],
    running_bot: App,
    fake_api: FakeBotApi,
    migrated_engine: Engine,
) -> None:
    with session_scope(migrated_engine) as session:
        session.add(User(platform="telegram", platform_user_id=str(ASKER_ID), is_blocked=True))
    fake_api.queue_update(update(message("What is 2 + 3?")))

    thinking = await fake_api.next_message_to(PRIVATE_CHAT_ID)
    await fake_api.wait_for(lambda request: request.method == "editMessageText", within_seconds=10)

    (edit,) = fake_api.calls("editMessageText")
    assert edit.params["message_id"] == thinking.result["message_id"]
    assert edit.params["text"] == UserBlockedError.user_message
    assert stored_questions(migrated_engine) == []


async def test_group_chatter_ignored(
    running_bot: App, fake_api: FakeBotApi, migrated_engine: Engine
) -> None:
    fake_api.queue_update(update(message("hello all", chat_id=GROUP_CHAT_ID)))
    other = message("I agree", message_id=11, chat_id=GROUP_CHAT_ID, from_id=77)
    fake_api.queue_update(
        update(message("me too", message_id=12, chat_id=GROUP_CHAT_ID, reply_to=other))
    )

    await ask_help_and_wait(fake_api)

    assert fake_api.sent_to(GROUP_CHAT_ID) == []
    assert stored_questions(migrated_engine) == []


async def test_help_explains_asking_and_budgets(
    running_bot: App, fake_api: FakeBotApi, telegram_settings: Settings
) -> None:
    fake_api.queue_update(update(message("/start")))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    text = reply.params["text"]
    assert "/ask" in text
    assert f"@{BOT_USERNAME}" in text
    assert f"{telegram_settings.default_budget_tokens:,} tokens per day" in text
    assert "/budget shows your remaining budget" in text
    assert f"Your Telegram user id is {ASKER_ID}." in text


async def test_own_budget_shows_remaining_and_reset(
    running_bot: App, fake_api: FakeBotApi, telegram_settings: Settings
) -> None:
    fake_api.queue_update(update(message("/budget")))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    default = telegram_settings.default_budget_tokens
    assert reply.params["text"].startswith(
        f"Your daily budget: {default:,} of {default:,} tokens left"
    )
    assert "It resets " in reply.params["text"]


@pytest.mark.parametrize(
    "command",
    [
        "/setbudget 777 5000 week",
        "/budget 777",
        "/defaultbudget 100",
        "/usage 5",
        "/block 777",
        "/unblock 777",
        "/why 1",
    ],
)
async def test_admin_command_refused_for_non_admin(
    running_bot: App, fake_api: FakeBotApi, migrated_engine: Engine, command: str
) -> None:
    fake_api.queue_update(update(message(command, from_id=ASKER_ID)))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    assert reply.params["text"].startswith("Only Ponder admins can run this command.")
    assert f"telegram:{ASKER_ID}" in reply.params["text"]
    with session_scope(migrated_engine) as session:
        assert session.exec(select(User).where(User.platform_user_id == "777")).first() is None


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("/setbudget 777 lots", "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("/setbudget 777", "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("/setbudget 777 5000 fortnight", "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("/defaultbudget", "Usage: /defaultbudget TOKENS [day|week|month]"),
        ("/usage 5 day extra", "Usage: /usage [TOP] [day|week|month]"),
        ("/block", "Usage: /block USER [REASON]"),
        ("/unblock 1 2", "Usage: /unblock USER"),
        ("/why latest", "Usage: /why QUESTION_ID"),
    ],
)
async def test_wrong_arguments_get_usage_line(
    running_bot: App, fake_api: FakeBotApi, command: str, usage: str
) -> None:
    fake_api.queue_update(update(message(command, from_id=ADMIN_ID)))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    assert reply.params["text"] == usage


async def test_admin_sets_budget(
    running_bot: App, fake_api: FakeBotApi, migrated_engine: Engine
) -> None:
    fake_api.queue_update(update(message("/setbudget 777 5000 week", from_id=ADMIN_ID)))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    assert "telegram:777" in reply.params["text"]
    with session_scope(migrated_engine) as session:
        target = session.exec(select(User).where(User.platform_user_id == "777")).one()
    assert target.budget_tokens == 5_000
    assert target.budget_period == "week"


async def test_empty_ask_rejected_nothing_stored(
    running_bot: App, fake_api: FakeBotApi, migrated_engine: Engine
) -> None:
    fake_api.queue_update(update(message("/ask", chat_id=GROUP_CHAT_ID)))

    reply = await fake_api.next_message_to(GROUP_CHAT_ID)
    await asyncio.sleep(QUIET_SECONDS)

    assert reply.params["text"] == "Your question is empty. Please write a question."
    assert len(fake_api.sent_to(GROUP_CHAT_ID)) == 1
    assert stored_questions(migrated_engine) == []


async def test_huge_message_rejected_nothing_stored(
    running_bot: App, fake_api: FakeBotApi, migrated_engine: Engine, telegram_settings: Settings
) -> None:
    text = "why " * 1_020
    fake_api.queue_update(update(message(text)))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)
    await asyncio.sleep(QUIET_SECONDS)

    length = len(text.strip())
    maximum = telegram_settings.max_question_chars
    assert reply.params["text"] == (
        f"Your question is too long ({length:,} characters; the maximum is {maximum:,}). "
        "Please shorten it."
    )
    assert len(fake_api.sent_to(PRIVATE_CHAT_ID)) == 1
    assert stored_questions(migrated_engine) == []


async def test_unknown_command_points_to_help(running_bot: App, fake_api: FakeBotApi) -> None:
    fake_api.queue_update(update(message("/frobnicate now")))

    reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)

    assert reply.params["text"] == (
        "Unknown command /frobnicate. Send /help to see what Ponder understands."
    )


async def test_handler_error_gets_fixed_message(
    telegram_settings: Settings,
    fake_api: FakeBotApi,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database without tables makes storing the question fail with an unexpected error.
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    application = build_application(telegram_settings, engine)
    caplog.set_level(logging.ERROR, logger="bots.telegram.bot")
    async with application:
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        await application.start()
        fake_api.queue_update(update(message("What is 2 + 3?")))
        await fake_api.next_message_to(PRIVATE_CHAT_ID, after=1)
        await application.updater.stop()
        await application.stop()
    engine.dispose()

    texts = [request.params["text"] for request in fake_api.sent_to(PRIVATE_CHAT_ID)]
    assert texts == [
        THINKING_TEXT,
        "Something went wrong while answering. Please try again later.",
    ]
    thinking_id = fake_api.sent_to(PRIVATE_CHAT_ID)[0].result["message_id"]
    assert [request.params["message_id"] for request in fake_api.calls("deleteMessage")] == [
        thinking_id
    ]
    assert "handling Telegram update" in caplog.text
    assert TEST_TOKEN not in caplog.text


async def test_menu_commands_announced(
    telegram_settings: Settings, migrated_engine: Engine, fake_api: FakeBotApi
) -> None:
    application = build_application(telegram_settings, migrated_engine)
    async with application:
        await announce_commands(application)

    (request,) = fake_api.calls("setMyCommands")
    assert [command["command"] for command in request.params["commands"]] == [
        command.command for command in MENU_COMMANDS
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_webhook_accepts_only_secret_updates(
    telegram_settings: Settings, migrated_engine: Engine, fake_api: FakeBotApi
) -> None:
    port = free_port()
    settings = telegram_settings.model_copy(
        update={
            "telegram_webhook_url": f"http://127.0.0.1:{port}/telegram/hook",
            "telegram_webhook_listen": "127.0.0.1",
            "telegram_webhook_port": port,
            "telegram_webhook_secret": SecretStr("hook_secret-123"),
        }
    )
    options = webhook_options(settings)
    application = build_application(settings, migrated_engine)
    async with application:
        assert application.updater is not None
        await application.updater.start_webhook(
            listen=options.listen,
            port=options.port,
            url_path=options.url_path,
            webhook_url=options.webhook_url,
            secret_token=options.secret_token,
            allowed_updates=ALLOWED_UPDATES,
        )
        await application.start()
        hook = f"http://127.0.0.1:{port}/telegram/hook"
        body = {"update_id": 1, "message": message("/help")}
        async with aiohttp.ClientSession() as client:
            async with client.post(hook, json=body) as unsigned:
                unsigned_status = unsigned.status
            async with client.post(
                hook, json=body, headers={"X-Telegram-Bot-Api-Secret-Token": "hook_secret-123"}
            ) as signed:
                signed_status = signed.status
        reply = await fake_api.next_message_to(PRIVATE_CHAT_ID)
        await application.updater.stop()
        await application.stop()

    (set_webhook,) = fake_api.calls("setWebhook")
    assert set_webhook.params["url"] == hook
    assert set_webhook.params["secret_token"] == "hook_secret-123"
    assert unsigned_status == 403
    assert signed_status == 200
    assert "Your Telegram user id is 555." in reply.params["text"]


@pytest.mark.parametrize(
    ("changes", "message_part"),
    [
        ({"telegram_webhook_url": "ftp://example.org/x"}, "invalid PONDER_TELEGRAM_WEBHOOK_URL"),
        (
            {
                "telegram_webhook_url": "https://bot.example.org/x",
                "telegram_webhook_secret": SecretStr("has spaces"),
            },
            "PONDER_TELEGRAM_WEBHOOK_SECRET is invalid",
        ),
    ],
)
def test_webhook_settings_checked(
    telegram_settings: Settings, changes: dict[str, Any], message_part: str
) -> None:
    with pytest.raises(ConfigurationError, match=message_part) as raised:
        webhook_options(telegram_settings.model_copy(update=changes))

    assert "has spaces" not in str(raised.value)


def test_missing_token_stops_build(telegram_settings: Settings, migrated_engine: Engine) -> None:
    settings = telegram_settings.model_copy(update={"telegram_token": None})

    with pytest.raises(ConfigurationError, match="PONDER_TELEGRAM_TOKEN is not set"):
        build_application(settings, migrated_engine)


async def test_rejected_token_reported_without_token(
    telegram_settings: Settings, migrated_engine: Engine, fake_api: FakeBotApi
) -> None:
    other_token = "111:" + "C" * 35
    settings = telegram_settings.model_copy(update={"telegram_token": SecretStr(other_token)})
    application = build_application(settings, migrated_engine)

    with (
        pytest.raises(ConfigurationError, match="rejected PONDER_TELEGRAM_TOKEN") as raised,
        startup_errors_translated(settings),
    ):
        await application.initialize()

    assert other_token not in str(raised.value)
    assert raised.value.__cause__ is None


async def test_unreachable_api_reported(
    telegram_settings: Settings, migrated_engine: Engine
) -> None:
    settings = telegram_settings.model_copy(
        update={"telegram_base_url": f"http://127.0.0.1:{free_port()}/bot"}
    )
    application = build_application(settings, migrated_engine)

    with (
        pytest.raises(ConfigurationError, match="cannot reach the Telegram Bot API"),
        startup_errors_translated(settings),
    ):
        await application.initialize()


@pytest.mark.redis
async def test_broker_down_fails_question_once(
    broker_env: dict[str, str],
    running_bot: App,
    fake_api: FakeBotApi,
    migrated_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broker_down(question_id: int) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr("bots.telegram.bot.enqueue_answer", broker_down)
    fake_api.queue_update(update(message("What is 2 + 3?", message_id=12)))

    await fake_api.next_message_to(PRIVATE_CHAT_ID)
    await ask_help_and_wait(fake_api)

    (question,) = stored_questions(migrated_engine)
    assert question.status == "failed"
    assert question.delivered_at is not None
    edits = [call.params["text"] for call in fake_api.calls("editMessageText")]
    assert edits == [QUEUE_UNAVAILABLE_TEXT]
