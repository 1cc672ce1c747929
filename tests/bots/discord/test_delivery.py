"""The Discord deliverer, run through the real discord.py HTTP client against the fake server."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from bots.discord.delivery import (
    MAX_DISCORD_MESSAGE_CHARS,
    STARTED_TEXT,
    DiscordDeliverer,
    channel_header,
    create_deliverer,
)
from bots.discord.targets import interaction_delivery, message_delivery
from core.config import Settings, get_settings
from core.db import session_scope
from core.errors import BudgetExceededError, ConfigurationError
from core.models import Question
from core.questions import find_answered_question, load_question, submit_question
from core.schemas import AskRequest, Reply
from core.strategies.base import Progress
from tasks.answer import deliver_answer, enqueue_answer
from tasks.delivery import forget_deliverers
from tasks.runtime import Runtime, get_runtime, reset_runtime
from tests.bots.discord.conftest import APPLICATION_ID, BOT_TOKEN, PROGRESS_INTERVAL_SECONDS
from tests.fakes.discord_server import FakeDiscordServer

ASKER_ID = 2_200_000_000_000_000_001
CHANNEL_ID = 3_300_000_000_000_000_001
GUILD_ID = 4_400_000_000_000_000_001
ASKER_MESSAGE_ID = 5_500_000_000_000_000_001
INTERACTION_ID = 6_600_000_000_000_000_001
INTERACTION_TOKEN = "aW50ZXJhY3Rpb246dGVzdA-interaction-token"
FOOTNOTE = "-# direct · 1 call · 12 + 3 tokens · 0.4 s"
PINGS = "@everyone @here <@123456789012345678> <@!123456789012345678> <@&765432109876543210>"
RETRY_AFTER_SECONDS = 0.6
RETRY_SLACK_SECONDS = 2.0


@pytest.fixture
async def deliverer(
    discord_settings: Settings, migrated_engine: Engine
) -> AsyncIterator[DiscordDeliverer]:
    deliverer = create_deliverer(discord_settings)
    yield deliverer
    await deliverer.close()


def store_mention_question(engine: Engine, settings: Settings) -> Question:
    return submit_question(
        engine,
        settings,
        AskRequest(
            platform="discord",
            user_id=str(ASKER_ID),
            text="What is 2 + 3?",
            chat_id=str(CHANNEL_ID),
            message_id=str(ASKER_MESSAGE_ID),
            delivery=message_delivery(guild_id=GUILD_ID),
        ),
    )


def store_ask_question(
    engine: Engine, settings: Settings, *, created_at: datetime | None = None
) -> Question:
    return submit_question(
        engine,
        settings,
        AskRequest(
            platform="discord",
            user_id=str(ASKER_ID),
            text="What is 2 + 3?",
            chat_id=str(CHANNEL_ID),
            delivery=interaction_delivery(
                application_id=APPLICATION_ID,
                token=INTERACTION_TOKEN,
                created_at=created_at or datetime.now(UTC),
                asker_id=ASKER_ID,
            ),
        ),
    )


def answered(question: Question, answer: str, *, footnote: str = FOOTNOTE) -> Reply:
    assert question.id is not None
    return Reply(question_id=question.id, answer=answer, footnote=footnote, status="answered")


def long_answer_with_code() -> str:
    """About 5,000 characters: prose paragraphs, then one code block longer than a message."""
    prose = "\n\n".join(f"Paragraph {index}: " + "words " * 60 for index in range(6))
    code = "\n".join(f"    total += {index}  # add the next number" for index in range(80))
    return f"{prose}\n\n```python\ntotal = 0\n{code}\nprint(total)\n```\n\nThat is all."


def fence_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip().startswith("```")]


def content_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip() and not line.startswith("```")]


def posted_contents(server: FakeDiscordServer, method: str, path: str) -> list[str]:
    return [request.body["content"] for request in server.requests_to(method, path)]


async def test_long_answer_split_keeps_fences(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    answer = long_answer_with_code()

    message_ids = await deliverer.deliver(question, answered(question, answer))

    parts = posted_contents(discord_server, "POST", r"^/channels/\d+/messages$")
    assert len(parts) >= 3
    assert len(message_ids) == len(parts)
    for part in parts:
        assert len(part) <= MAX_DISCORD_MESSAGE_CHARS
        assert len(fence_lines(part)) % 2 == 0, part
    assert content_lines("\n".join(parts)) == content_lines(f"{answer}\n\n{FOOTNOTE}")
    assert parts[-1].endswith(FOOTNOTE)
    assert all(FOOTNOTE not in part for part in parts[:-1])


async def test_every_message_suppresses_mentions(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    mention = store_mention_question(migrated_engine, discord_settings)
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    ask = store_ask_question(migrated_engine, discord_settings)
    long_answer = f"{PINGS}\n\n" + "\n\n".join([PINGS + " " + "x" * 900] * 4)

    for question in (mention, ask):
        await deliverer.started(question)
        await deliverer.progress(question, Progress("self_consistency", "samples", 1, 8))
        await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
        await deliverer.deliver(question, answered(question, long_answer, footnote=PINGS))

    with_content = [request for request in discord_server.requests if request.body]
    assert {request.method for request in with_content} == {"POST", "PATCH"}
    assert len(with_content) >= 10
    for request in with_content:
        assert request.body["allowed_mentions"] == {"parse": []}, request.path


async def test_rate_limited_post_waits_retry_after(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    discord_server.fail_next(
        1, method="POST", path=r"^/channels/\d+/messages$", retry_after=RETRY_AFTER_SECONDS
    )

    message_ids = await deliverer.deliver(question, answered(question, "5"))

    attempts = discord_server.requests_to("POST", r"^/channels/\d+/messages$")
    assert [attempt.status for attempt in attempts] == [429, 200]
    waited = attempts[1].received_at - attempts[0].received_at
    assert waited >= RETRY_AFTER_SECONDS
    assert waited < RETRY_AFTER_SECONDS + RETRY_SLACK_SECONDS
    assert len(message_ids) == 1
    assert [m.content for m in discord_server.channel_messages(CHANNEL_ID)] == [f"5\n\n{FOOTNOTE}"]


async def test_progress_edits_are_throttled(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(migrated_engine, discord_settings)
    event_count = 50
    started = asyncio.get_running_loop().time()

    await deliverer.started(question)
    for done in range(1, event_count + 1):
        await deliverer.progress(question, Progress("self_consistency", "samples", done, 50))
        await asyncio.sleep(0.02)
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.sleep(PROGRESS_INTERVAL_SECONDS * 2)
    progress_edits = discord_server.requests_to("PATCH", "/messages/@original")
    await deliverer.deliver(question, answered(question, "5"))

    allowed = math.ceil((elapsed + PROGRESS_INTERVAL_SECONDS * 2) / PROGRESS_INTERVAL_SECONDS) + 1
    assert 2 <= len(progress_edits) <= allowed
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(progress_edits)]
    # The client spaces edit starts by the interval; arrival times at the server can come
    # closer when one request is slower in transit than the next on a loaded machine.
    assert min(gaps) >= PROGRESS_INTERVAL_SECONDS * 0.5
    assert progress_edits[-1].body["content"] == "thinking: self-consistency, 50 of 50 samples"
    final = discord_server.requests_to("PATCH", "/messages/@original")[-1]
    assert final.body["content"] == f"5\n\n{FOOTNOTE}"


async def test_answer_delivered_after_progress_429(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    await deliverer.started(question)
    discord_server.fail_next(1, method="PATCH", retry_after=RETRY_AFTER_SECONDS)

    await deliverer.progress(question, Progress("best_of_n", "samples", 1, 4))
    await asyncio.sleep(0.05)
    message_ids = await deliverer.deliver(question, answered(question, "5"))

    edits = discord_server.requests_to("PATCH", r"^/channels/\d+/messages/\d+$")
    assert [edit.status for edit in edits] == [429, 200, 200]
    assert edits[-1].body["content"] == f"5\n\n{FOOTNOTE}"
    messages = discord_server.channel_messages(CHANNEL_ID)
    assert [message.content for message in messages] == [f"5\n\n{FOOTNOTE}"]
    assert message_ids == [str(messages[0].id)]


async def test_progress_stops_once_question_finished(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(migrated_engine, discord_settings)
    assert question.id is not None

    await deliverer.progress(question, Progress("best_of_n", "samples", 1, 4))
    await asyncio.sleep(0.05)
    # Another worker process finishes the question and delivers it into the same message.
    mark_answered(migrated_engine, question.id, "5")
    await deliverer.progress(question, Progress("best_of_n", "samples", 2, 4))
    await asyncio.sleep(PROGRESS_INTERVAL_SECONDS * 2)

    edits = posted_contents(discord_server, "PATCH", "/messages/@original")
    assert edits == ["thinking: best-of-n, 1 of 4 samples"]


async def test_answer_delivered_after_progress_failure(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(migrated_engine, discord_settings)
    discord_server.fail_next(1, method="PATCH", status=403, code=50001)

    await deliverer.progress(question, Progress("best_of_n", "samples", 1, 4))
    await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
    await deliverer.deliver(question, answered(question, "5"))

    edits = discord_server.requests_to("PATCH", "/messages/@original")
    assert [edit.status for edit in edits] == [403, 200]
    assert [m.content for m in discord_server.channel_messages(CHANNEL_ID)] == [f"5\n\n{FOOTNOTE}"]


async def test_mention_reply_replaces_progress_message(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)

    await deliverer.started(question)
    message_ids = await deliverer.deliver(question, answered(question, "5"))

    created = discord_server.requests_to("POST", r"^/channels/\d+/messages$")
    assert len(created) == 1
    assert created[0].body["content"] == STARTED_TEXT
    assert created[0].body["message_reference"] == {
        "message_id": str(ASKER_MESSAGE_ID),
        "channel_id": str(CHANNEL_ID),
        "guild_id": str(GUILD_ID),
        "fail_if_not_exists": False,
    }
    assert created[0].body["enforce_nonce"] is True
    messages = discord_server.channel_messages(CHANNEL_ID)
    assert message_ids == [str(messages[0].id)]
    assert messages[0].content == f"5\n\n{FOOTNOTE}"


async def test_deliver_twice_posts_mention_answer_once(
    discord_server: FakeDiscordServer, discord_settings: Settings, migrated_engine: Engine
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    reply = answered(question, long_answer_with_code())
    assert question.id is not None

    first = create_deliverer(discord_settings)
    await first.started(question)
    first_ids = await first.deliver(question, reply)
    await first.close()
    # A retry runs in a fresh process: a new deliverer and the question reloaded from the database.
    second = create_deliverer(discord_settings)
    second_ids = await second.deliver(load_question(migrated_engine, question.id), reply)
    await second.close()

    assert second_ids == first_ids
    assert [str(m.id) for m in discord_server.channel_messages(CHANNEL_ID)] == first_ids


async def test_deliver_twice_posts_ask_answer_once(
    discord_server: FakeDiscordServer, discord_settings: Settings, migrated_engine: Engine
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(migrated_engine, discord_settings)
    reply = answered(question, long_answer_with_code())
    assert question.id is not None

    first = create_deliverer(discord_settings)
    first_ids = await first.deliver(question, reply)
    await first.close()
    second = create_deliverer(discord_settings)
    second_ids = await second.deliver(load_question(migrated_engine, question.id), reply)
    await second.close()

    assert second_ids == first_ids
    assert [str(m.id) for m in discord_server.channel_messages(CHANNEL_ID)] == first_ids
    assert len(discord_server.requests_to("POST", r"^/webhooks/")) == len(first_ids) - 1


async def test_unrecorded_repeat_deduplicated_by_nonce(
    discord_server: FakeDiscordServer, discord_settings: Settings, migrated_engine: Engine
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    reply = answered(question, long_answer_with_code())

    first = create_deliverer(discord_settings)
    first_ids = await first.deliver(question, reply)
    await first.close()
    # The same stale question object: as if the process crashed before recording the parts.
    second = create_deliverer(discord_settings)
    second_ids = await second.deliver(question, reply)
    await second.close()

    posts = discord_server.requests_to("POST", r"^/channels/\d+/messages$")
    assert len(posts) == 2 * len(first_ids)
    assert second_ids == first_ids
    assert [str(m.id) for m in discord_server.channel_messages(CHANNEL_ID)] == first_ids


async def test_old_interaction_answer_goes_to_channel(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    created_at = datetime.now(UTC) - timedelta(minutes=20)
    question = store_ask_question(migrated_engine, discord_settings, created_at=created_at)

    await deliverer.progress(question, Progress("best_of_n", "samples", 1, 4))
    await deliverer.deliver(question, answered(question, "5"))

    assert discord_server.requests_to("PATCH", "/webhooks/") == []
    posts = posted_contents(discord_server, "POST", r"^/channels/\d+/messages$")
    assert posts == [f"{channel_header(ASKER_ID)}\n5\n\n{FOOTNOTE}"]


async def test_expired_interaction_token_falls_back(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    discord_server.expire_interaction(INTERACTION_TOKEN)
    question = store_ask_question(migrated_engine, discord_settings)

    message_ids = await deliverer.deliver(question, answered(question, "5"))

    assert [r.status for r in discord_server.requests_to("PATCH", "/messages/@original")] == [401]
    posts = discord_server.requests_to("POST", r"^/channels/\d+/messages$")
    assert [post.body["content"] for post in posts] == [
        f"{channel_header(ASKER_ID)}\n5\n\n{FOOTNOTE}"
    ]
    assert message_ids == [str(discord_server.channel_messages(CHANNEL_ID)[-1].id)]


async def test_refusal_posts_user_message(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(migrated_engine, discord_settings)
    assert question.id is not None
    message = BudgetExceededError.user_message
    reply = Reply(question_id=question.id, answer=message, footnote="", status="refused")

    await deliverer.deliver(question, reply)

    assert posted_contents(discord_server, "PATCH", "/messages/@original") == [message]


async def test_deleted_progress_message_gets_new_reply(
    deliverer: DiscordDeliverer,
    discord_server: FakeDiscordServer,
    discord_settings: Settings,
    migrated_engine: Engine,
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    await deliverer.started(question)
    discord_server.fail_next(1, method="PATCH", status=404, code=10008)

    message_ids = await deliverer.deliver(question, answered(question, "5"))

    posts = discord_server.requests_to("POST", r"^/channels/\d+/messages$")
    assert [post.body["content"] for post in posts] == [STARTED_TEXT, f"5\n\n{FOOTNOTE}"]
    assert posts[1].body["message_reference"]["message_id"] == str(ASKER_MESSAGE_ID)
    assert message_ids == [str(discord_server.channel_messages(CHANNEL_ID)[-1].id)]


async def test_delivered_parts_recorded_on_question(
    deliverer: DiscordDeliverer, discord_settings: Settings, migrated_engine: Engine
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    assert question.id is not None

    await deliverer.started(question)
    message_ids = await deliverer.deliver(question, answered(question, long_answer_with_code()))

    with session_scope(migrated_engine) as session:
        stored = session.get(Question, question.id)
    assert stored is not None
    assert stored.delivery["progress_message_id"] == message_ids[0]
    assert stored.delivery["posted_parts"] == {
        str(index): message_id for index, message_id in enumerate(message_ids)
    }


def test_create_deliverer_requires_token(discord_settings: Settings) -> None:
    without_token = discord_settings.model_copy(update={"discord_token": None})

    with pytest.raises(ConfigurationError, match="PONDER_DISCORD_TOKEN is not set"):
        create_deliverer(without_token)


async def test_wrong_token_reported_as_configuration_error(
    discord_settings: Settings, migrated_engine: Engine
) -> None:
    question = store_mention_question(migrated_engine, discord_settings)
    other_token = SecretStr("MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDe." + "y" * 38)
    deliverer = create_deliverer(discord_settings.model_copy(update={"discord_token": other_token}))

    with pytest.raises(ConfigurationError, match="Discord rejected PONDER_DISCORD_TOKEN"):
        await deliverer.deliver(question, answered(question, "5"))
    await deliverer.close()


@pytest.fixture
def worker_runtime(
    ponder_env: dict[str, str], discord_server: FakeDiscordServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    """The worker's process runtime, with Discord settings that point at the fake server."""
    monkeypatch.setenv("PONDER_DISCORD_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("PONDER_DISCORD_API_BASE_URL", discord_server.base_url)
    get_settings.cache_clear()
    reset_runtime()
    runtime = get_runtime()
    yield runtime
    for cached in forget_deliverers():
        runtime.run(cached.close(), timeout=30)


def mark_answered(engine: Engine, question_id: int, answer: str) -> None:
    with session_scope(engine) as session:
        stored = session.get(Question, question_id)
        assert stored is not None
        stored.status = "answered"
        stored.answer = answer
        stored.footnote = FOOTNOTE
        stored.finished_at = datetime.now(UTC)
        session.add(stored)


def test_deliver_answer_task_posts_to_discord(
    worker_runtime: Runtime, discord_server: FakeDiscordServer
) -> None:
    discord_server.add_interaction(
        interaction_id=INTERACTION_ID, token=INTERACTION_TOKEN, channel_id=CHANNEL_ID
    )
    question = store_ask_question(worker_runtime.engine, worker_runtime.settings)
    assert question.id is not None
    mark_answered(worker_runtime.engine, question.id, "2 + 3 = 5.")

    outcome = deliver_answer.apply(args=(question.id,), throw=True).get()

    assert outcome == "delivered"
    edits = discord_server.requests_to("PATCH", "/messages/@original")
    assert [edit.body["content"] for edit in edits] == [f"2 + 3 = 5.\n\n{FOOTNOTE}"]
    answer_message = discord_server.channel_messages(CHANNEL_ID)[0]
    found = find_answered_question(
        worker_runtime.engine, "discord", str(CHANNEL_ID), str(answer_message.id)
    )
    assert found is not None
    assert found.id == question.id
    assert load_question(worker_runtime.engine, question.id).delivered_at is not None


@pytest.mark.model
@pytest.mark.slow
def test_mention_answered_end_to_end(
    worker_runtime: Runtime, discord_server: FakeDiscordServer
) -> None:
    question = submit_question(
        worker_runtime.engine,
        worker_runtime.settings,
        AskRequest(
            platform="discord",
            user_id=str(ASKER_ID),
            text="What is 2 + 3?",
            chat_id=str(CHANNEL_ID),
            message_id=str(ASKER_MESSAGE_ID),
            strategy="direct",
            delivery=message_delivery(guild_id=GUILD_ID),
        ),
    )
    assert question.id is not None

    enqueue_answer(question.id)

    stored = load_question(worker_runtime.engine, question.id)
    assert stored.status == "answered"
    assert stored.delivered_at is not None
    messages = discord_server.channel_messages(CHANNEL_ID)
    assert len(messages) == 1
    assert messages[0].content == f"{stored.answer}\n\n{stored.footnote}"
    assert messages[0].reference is not None
    assert messages[0].reference["message_id"] == str(ASKER_MESSAGE_ID)
