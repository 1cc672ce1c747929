"""The per-user rate limit of core/ratelimit.py, on Redis and on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
import time_machine
from sqlalchemy import Engine, func
from sqlmodel import select

from core.config import Settings
from core.db import create_db_engine, session_scope, upgrade
from core.errors import RateLimitedError
from core.models import Question, utcnow
from core.questions import submit_question
from core.ratelimit import REDIS_KEY_PREFIX, redis_client, redis_decision
from core.schemas import AskRequest

LIMIT = 3


def limited(settings: Settings, **changes: object) -> Settings:
    values = {**dict(settings), "rate_limit_per_minute": LIMIT, **changes}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def ask(engine: Engine, settings: Settings, user: str = "telegram:42") -> int:
    platform, user_id = user.split(":")
    question = submit_question(
        engine, settings, AskRequest(platform=platform, user_id=user_id, text="What is 2 + 3?")
    )
    assert question.id is not None
    return question.id


def stored_questions(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(Question)).one())


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"ponder-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_database_limit_rejects_fourth(settings: Settings, migrated_engine: Engine) -> None:
    configured = limited(settings)
    for _ in range(LIMIT):
        ask(migrated_engine, configured)

    with pytest.raises(RateLimitedError) as raised:
        ask(migrated_engine, configured)

    assert stored_questions(migrated_engine) == LIMIT
    assert raised.value.user_message.startswith("You can ask 3 questions per minute.")
    assert "PONDER_RATE_LIMIT_PER_MINUTE" in str(raised.value)


def test_database_limit_is_per_user(settings: Settings, migrated_engine: Engine) -> None:
    configured = limited(settings)
    for _ in range(LIMIT):
        ask(migrated_engine, configured, "telegram:1")

    ask(migrated_engine, configured, "telegram:2")

    assert stored_questions(migrated_engine) == LIMIT + 1


def test_database_limit_frees_after_window(settings: Settings, migrated_engine: Engine) -> None:
    configured = limited(settings)
    with time_machine.travel(utcnow(), tick=False) as traveller:
        for _ in range(LIMIT):
            ask(migrated_engine, configured)
        traveller.shift(timedelta(seconds=30))
        with pytest.raises(RateLimitedError) as raised:
            ask(migrated_engine, configured)
        assert "accepted in 30 s" in str(raised.value)
        traveller.shift(timedelta(seconds=31))

        ask(migrated_engine, configured)

    assert stored_questions(migrated_engine) == LIMIT + 1


def test_zero_turns_limit_off(settings: Settings, migrated_engine: Engine) -> None:
    configured = limited(settings, rate_limit_per_minute=0)
    for _ in range(LIMIT * 3):
        ask(migrated_engine, configured)
    assert stored_questions(migrated_engine) == LIMIT * 3


def test_admins_and_console_are_exempt(settings: Settings, migrated_engine: Engine) -> None:
    configured = limited(settings, admin_ids="telegram:99")
    for _ in range(LIMIT + 2):
        ask(migrated_engine, configured, "telegram:99")
        ask(migrated_engine, configured, "cli:operator")
    assert stored_questions(migrated_engine) == 2 * (LIMIT + 2)


@pytest.mark.redis
def test_redis_limit_rejects_fourth(
    settings: Settings, migrated_engine: Engine, redis_url: str, key_prefix: str
) -> None:
    configured = limited(settings, broker_url=redis_url, broker_key_prefix=key_prefix)
    for _ in range(LIMIT):
        ask(migrated_engine, configured)

    with pytest.raises(RateLimitedError):
        ask(migrated_engine, configured)

    client = redis_client(redis_url)
    assert client.zcard(f"{key_prefix}{REDIS_KEY_PREFIX}telegram:42") == LIMIT
    assert 0 < client.pttl(f"{key_prefix}{REDIS_KEY_PREFIX}telegram:42") <= 60_000
    assert stored_questions(migrated_engine) == LIMIT


@pytest.mark.redis
def test_redis_window_slides(redis_url: str, key_prefix: str) -> None:
    client = redis_client(redis_url)
    key = f"{key_prefix}user"

    first = [redis_decision(client, key, limit=2, window_seconds=0.5) for _ in range(3)]
    time.sleep(0.6)
    later = redis_decision(client, key, limit=2, window_seconds=0.5)

    assert [decision.is_allowed for decision in first] == [True, True, False]
    assert 0 < first[2].retry_after_seconds <= 0.5
    assert later.is_allowed is True


@pytest.mark.redis
def test_redis_counts_concurrent_questions_exactly(redis_url: str, key_prefix: str) -> None:
    client = redis_client(redis_url)
    results: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        decision = redis_decision(client, f"{key_prefix}user", limit=5, window_seconds=60)
        with lock:
            results.append(decision.is_allowed)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 5
    assert results.count(False) == 35


def test_unreachable_redis_falls_back_to_database(
    settings: Settings, migrated_engine: Engine
) -> None:
    configured = limited(settings, broker_url="redis://127.0.0.1:1/0")
    for _ in range(LIMIT):
        ask(migrated_engine, configured)

    with pytest.raises(RateLimitedError):
        ask(migrated_engine, configured)

    assert stored_questions(migrated_engine) == LIMIT


@pytest.mark.postgres
def test_postgres_limit_holds_under_concurrency(settings: Settings, postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_db_engine(postgres_url)
    configured = limited(settings, database_url=postgres_url, rate_limit_per_minute=5)
    ask(engine, configured, "telegram:7")  # creates the user row that later askers lock
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        try:
            ask(engine, configured, "telegram:7")
            outcome = "stored"
        except RateLimitedError:
            outcome = "limited"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("stored") == 4
    assert outcomes.count("limited") == 8
    assert stored_questions(engine) == 5
    engine.dispose()
