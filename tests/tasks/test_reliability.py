"""Reliability under faults and load, with real Redis, real `ponder worker` processes, a fake
Ollama server that controls timing and a fake Telegram Bot API that counts what reaches a chat.

Each test uses its own queue and its own Redis key prefix, so that its short visibility timeout
never makes a worker restore another test's unacknowledged tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import select

from core.config import Settings, get_settings
from core.db import session_scope, upgrade
from core.errors import (
    BudgetExceededError,
    ModelTimeoutError,
    ModelUnavailableError,
    RateLimitedError,
)
from core.models import Question, UsageEntry, User, utcnow
from core.questions import get_or_create_user, submit_question
from core.recovery import LEASE_GRACE_SECONDS
from core.schemas import AskRequest
from tasks.answer import deliver_answer, enqueue, enqueue_answer, queue_depth
from tasks.app import (
    DEFAULT_PRIORITY,
    DELIVERY_PRIORITY,
    SWEEP_TASK_NAME,
    app,
    celery_config,
)
from tasks.runtime import get_runtime, reset_runtime
from tasks.sweep import sweep
from tests.conftest import WorkerProcess, ponder_executable
from tests.fakes.background import TELEGRAM_TOKEN, BackgroundBotApi, start_delayed_ollama
from tests.fakes.ollama_server import FakeOllamaServer, Fault

pytestmark = [pytest.mark.redis, pytest.mark.slow]

VISIBILITY_TIMEOUT_SECONDS = 12
SOFT_TIME_LIMIT_SECONDS = 6
HARD_TIME_LIMIT_SECONDS = 9
MODEL_TIMEOUT_SECONDS = 2
MODEL_MAX_RETRIES = 2
ANSWER_WAIT_SECONDS = 90
GENERATION_PATHS = ("/api/chat", "/api/generate")
# Time for a duplicate task, if one existed, to post a second message after the first one.
DUPLICATE_WAIT_SECONDS = 3

StartWorker = Callable[..., WorkerProcess]


@dataclass
class Deployment:
    """The environment shared by the test process and its workers."""

    env: dict[str, str]
    key_prefix: str
    telegram: BackgroundBotApi
    monkeypatch: pytest.MonkeyPatch

    def configure(self, **variables: str) -> dict[str, str]:
        """Set more variables for this process and return the whole environment for workers."""
        for name, value in variables.items():
            self.monkeypatch.setenv(name, value)
            self.env[name] = value
        use_current_settings()
        return dict(self.env)

    @property
    def settings(self) -> Settings:
        return get_runtime().settings


def use_current_settings() -> None:
    """Make this process's runtime and Celery client follow the current environment."""
    get_settings.cache_clear()
    reset_runtime()
    app.conf.update(celery_config(get_settings()))
    # Drop broker connections made for earlier settings, so that the next task is sent with
    # the current broker URL and key prefix.
    app.close()
    app.amqp._producer_pool = None


@pytest.fixture
def deployment(worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    saved_conf = {key: app.conf.get(key) for key in celery_config(get_settings())}
    telegram = BackgroundBotApi().start()
    key_prefix = f"ponder-test-{uuid.uuid4().hex[:10]}:"
    result = Deployment(dict(worker_env), key_prefix, telegram, monkeypatch)
    result.configure(
        PONDER_BROKER_KEY_PREFIX=key_prefix,
        PONDER_BROKER_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_TIMEOUT_SECONDS),
        PONDER_TASK_SOFT_TIME_LIMIT_SECONDS=str(SOFT_TIME_LIMIT_SECONDS),
        PONDER_TASK_HARD_TIME_LIMIT_SECONDS=str(HARD_TIME_LIMIT_SECONDS),
        PONDER_MODEL_BACKEND="ollama",
        PONDER_MODEL_TIMEOUT_SECONDS=str(MODEL_TIMEOUT_SECONDS),
        PONDER_MODEL_MAX_RETRIES=str(MODEL_MAX_RETRIES),
        PONDER_MODEL_RETRY_BACKOFF_SECONDS="0.2,0.4",
        PONDER_TELEGRAM_TOKEN=TELEGRAM_TOKEN,
        PONDER_TELEGRAM_BASE_URL=telegram.base_url,
        PONDER_RATE_LIMIT_PER_MINUTE="0",
    )
    yield result
    telegram.stop()
    client = redis.Redis.from_url(worker_env["PONDER_BROKER_URL"])
    keys = list(client.scan_iter(f"{key_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    app.conf.update(saved_conf)
    app.close()
    app.amqp._producer_pool = None


@pytest.fixture
def ollama() -> Iterator[FakeOllamaServer]:
    server = FakeOllamaServer().start()
    yield server
    server.stop()


def ask_on_telegram(
    chat_id: str, *, user_id: str = "7", enqueue: bool = True, **options: Any
) -> int:
    """Store a Telegram question for `chat_id` as an adapter does, and enqueue it."""
    runtime = get_runtime()
    question = submit_question(
        runtime.engine,
        runtime.settings,
        AskRequest(
            platform="telegram",
            user_id=user_id,
            chat_id=chat_id,
            message_id="1",
            text="What is 2 + 3?",
            **options,
        ),
    )
    assert question.id is not None
    if enqueue:
        enqueue_answer(question.id)
    return question.id


def finished_on_telegram(
    chat_id: str, *, finished_seconds_ago: float, claimed_seconds_ago: float | None = None
) -> int:
    """Store an answered Telegram question with no task in the broker and no delivery yet."""
    question_id = ask_on_telegram(chat_id, enqueue=False)
    now = utcnow()
    with session_scope(get_runtime().engine) as session:
        question = session.get(Question, question_id)
        assert question is not None
        question.status = "answered"
        question.answer = f"Answer for chat {chat_id}."
        question.finished_at = now - timedelta(seconds=finished_seconds_ago)
        if claimed_seconds_ago is not None:
            question.delivery_claimed_at = now - timedelta(seconds=claimed_seconds_ago)
        session.add(question)
    return question_id


def load(question_id: int) -> Question:
    with session_scope(get_runtime().engine) as session:
        question = session.get(Question, question_id)
    assert question is not None
    return question


def ledger_rows(question_id: int) -> int:
    with session_scope(get_runtime().engine) as session:
        count = session.exec(
            select(func.count())
            .select_from(UsageEntry)
            .where(UsageEntry.question_id == question_id)
        ).one()
    return int(count)


def wait_until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds} s waiting until {what}")
        time.sleep(0.1)


def wait_delivered(
    telegram: BackgroundBotApi, chat_ids: list[str], workers: list[WorkerProcess]
) -> None:
    """Wait until every chat has received a message, then long enough for any duplicate."""
    try:
        wait_until(
            lambda: all(telegram.sent_texts(chat_id) for chat_id in chat_ids),
            seconds=ANSWER_WAIT_SECONDS,
            what=f"chats {chat_ids} receive an answer",
        )
    except AssertionError as exc:
        logs = "\n".join(worker.log()[-4000:] for worker in workers)
        raise AssertionError(f"{exc}\nworker logs:\n{logs}") from None
    time.sleep(DUPLICATE_WAIT_SECONDS)


def test_time_limits_stay_below_visibility_timeout() -> None:
    config = celery_config(Settings(_env_file=None))  # type: ignore[call-arg]
    visibility = config["broker_transport_options"]["visibility_timeout"]
    assert config["task_soft_time_limit"] < config["task_time_limit"]
    assert config["task_time_limit"] < visibility
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True


def test_settings_reject_hard_limit_at_visibility() -> None:
    with pytest.raises(ValidationError, match="soft < hard < visibility timeout"):
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            broker_visibility_timeout_seconds=600,
            task_hard_time_limit_seconds=600,
        )


def test_beat_schedules_registered_sweep() -> None:
    config = celery_config(Settings(_env_file=None, sweep_interval_seconds=30))  # type: ignore[call-arg]
    entry = config["beat_schedule"]["sweep-stranded-questions"]
    assert entry["task"] == SWEEP_TASK_NAME
    assert entry["schedule"] == 30
    assert SWEEP_TASK_NAME in app.tasks


def test_priorities_hold_for_concurrent_senders(deployment: Deployment) -> None:
    start = threading.Barrier(10)

    def send(question_id: int) -> None:
        start.wait()
        enqueue_answer(question_id)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    enqueue(deliver_answer, 99)

    broker = redis.Redis.from_url(deployment.env["PONDER_BROKER_URL"])
    sent: list[tuple[str, int]] = []
    for key in broker.scan_iter(f"{deployment.key_prefix}{deployment.settings.task_queue}*"):
        for raw in broker.lrange(key, 0, -1):
            message = json.loads(raw)
            sent.append((message["headers"]["task"], message["properties"]["priority"]))
    broker.close()
    assert sorted(sent) == [("ponder.answer_question", DEFAULT_PRIORITY)] * 10 + [
        ("ponder.deliver_answer", DELIVERY_PRIORITY)
    ]


def test_killed_worker_answer_delivered_once(
    deployment: Deployment, start_worker: StartWorker, ollama: FakeOllamaServer
) -> None:
    # The first worker's model call hangs, so that SIGKILL lands in the middle of the answer.
    ollama.inject(Fault(kind="hang", hang_seconds=30))
    env = deployment.configure(PONDER_OLLAMA_HOST=ollama.url)
    first = start_worker(extra_env=env)
    question_id = ask_on_telegram("555")
    wait_until(
        lambda: any(request.path in GENERATION_PATHS for request in ollama.requests),
        seconds=30,
        what="the first worker calls the model",
    )
    taken_at = time.monotonic()

    first.kill()
    ollama.inject(None)
    assert load(question_id).status == "running"
    # Redis hands an unacknowledged task to a worker that starts after its visibility timeout.
    time.sleep(max(0.0, VISIBILITY_TIMEOUT_SECONDS + 1 - (time.monotonic() - taken_at)))
    second = start_worker(extra_env=env)
    wait_delivered(deployment.telegram, ["555"], [first, second])

    answered = load(question_id)
    assert answered.status == "answered"
    assert answered.attempts == 2
    assert answered.reserved_tokens == 0
    assert ledger_rows(question_id) == 1
    assert len(deployment.telegram.sent_texts("555")) == 1
    assert "5" in deployment.telegram.sent_texts("555")[0]
    assert f"answering question {question_id} (attempt 2)" in second.log()


def test_sweep_requeues_lost_questions(
    deployment: Deployment, start_worker: StartWorker, ollama: FakeOllamaServer
) -> None:
    deployment.configure(PONDER_OLLAMA_HOST=ollama.url, PONDER_SWEEP_QUEUED_AFTER_SECONDS="30")
    settings = deployment.settings
    broker = redis.Redis.from_url(deployment.env["PONDER_BROKER_URL"])

    never_sent = ask_on_telegram("601", enqueue=False)
    lost = ask_on_telegram("602")
    assert queue_depth(settings) == 1
    # The broker loses its queue: every priority list of it.
    broker.delete(*broker.scan_iter(f"{deployment.key_prefix}{settings.task_queue}*"))
    assert queue_depth(settings) == 0
    abandoned = ask_on_telegram("603", enqueue=False)
    running = ask_on_telegram("604", enqueue=False)
    now = utcnow()
    lease = HARD_TIME_LIMIT_SECONDS + LEASE_GRACE_SECONDS
    with session_scope(get_runtime().engine) as session:
        for question_id in (never_sent, lost, abandoned, running):
            question = session.get(Question, question_id)
            assert question is not None
            question.created_at = now - timedelta(seconds=60)
            if question_id in (abandoned, running):
                question.status = "running"
                question.attempts = 1
                question.reserved_tokens = 300
                started = lease + 5 if question_id == abandoned else 1
                question.started_at = now - timedelta(seconds=started)
            session.add(question)

    report = sweep(get_runtime().engine, settings, now=utcnow())
    repeated = sweep(get_runtime().engine, settings, now=utcnow())

    assert sorted(report.requeued) == [never_sent, lost, abandoned]
    assert report.recovered == (abandoned,)
    assert report.failed == ()
    assert load(abandoned).status == "queued"
    assert load(abandoned).reserved_tokens == 0
    assert load(running).reserved_tokens == 300
    assert repeated.requeued == ()
    assert queue_depth(settings) == 3
    worker = start_worker(extra_env=deployment.env)
    wait_delivered(deployment.telegram, ["601", "602", "603"], [worker])
    for question_id, chat_id in ((never_sent, "601"), (lost, "602"), (abandoned, "603")):
        assert load(question_id).status == "answered"
        assert len(deployment.telegram.sent_texts(chat_id)) == 1
    assert load(abandoned).attempts == 2
    still_running = load(running)
    assert still_running.status == "running"
    assert still_running.attempts == 1
    assert deployment.telegram.sent_texts("604") == []
    broker.close()


def test_beat_runs_sweep_periodically(
    deployment: Deployment,
    start_worker: StartWorker,
    ollama: FakeOllamaServer,
    tmp_path: Path,
) -> None:
    env = deployment.configure(
        PONDER_OLLAMA_HOST=ollama.url,
        PONDER_SWEEP_INTERVAL_SECONDS="1",
        PONDER_SWEEP_QUEUED_AFTER_SECONDS="30",
    )
    question_id = ask_on_telegram("950", enqueue=False)
    with session_scope(get_runtime().engine) as session:
        question = session.get(Question, question_id)
        assert question is not None
        question.created_at = utcnow() - timedelta(seconds=60)
        session.add(question)
    worker = start_worker(extra_env=env)
    beat_log = tmp_path / "beat.log"
    with beat_log.open("wb") as log:
        beat = subprocess.Popen(
            [ponder_executable(), "beat"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_delivered(deployment.telegram, ["950"], [worker])
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(30)

    answered = load(question_id)
    assert answered.status == "answered"
    assert answered.attempts == 1
    assert "Sending due task sweep-stranded-questions" in beat_log.read_text()
    assert len(deployment.telegram.sent_texts("950")) == 1


def test_sweep_fails_question_that_keeps_dying(
    deployment: Deployment, start_worker: StartWorker, ollama: FakeOllamaServer
) -> None:
    deployment.configure(PONDER_OLLAMA_HOST=ollama.url)
    question_id = ask_on_telegram("650", enqueue=False)
    with session_scope(get_runtime().engine) as session:
        question = session.get(Question, question_id)
        assert question is not None
        question.status = "running"
        question.attempts = 3
        question.reserved_tokens = 500
        question.started_at = utcnow() - timedelta(hours=1)
        session.add(question)

    report = sweep(get_runtime().engine, deployment.settings, now=utcnow())
    worker = start_worker(extra_env=deployment.env)
    wait_delivered(deployment.telegram, ["650"], [worker])

    failed = load(question_id)
    assert report.failed == (question_id,)
    assert report.requeued == ()
    assert failed.status == "failed"
    assert failed.reserved_tokens == 0
    assert ledger_rows(question_id) == 0
    assert deployment.telegram.sent_texts("650") == [
        "Ponder could not finish this question. Please ask again, perhaps in a shorter form."
    ]
    assert ollama.requests == []


def test_sweep_redelivers_dead_workers_claim(
    deployment: Deployment, start_worker: StartWorker
) -> None:
    deployment.configure(PONDER_SWEEP_QUEUED_AFTER_SECONDS="30", PONDER_DELIVERY_LEASE_SECONDS="60")
    # A worker claimed each delivery and died before posting; one claim is past the lease.
    expired = finished_on_telegram("660", finished_seconds_ago=300, claimed_seconds_ago=120)
    fresh = finished_on_telegram("661", finished_seconds_ago=300, claimed_seconds_ago=5)
    assert queue_depth(deployment.settings) == 0

    report = sweep(get_runtime().engine, deployment.settings, now=utcnow())
    repeated = sweep(get_runtime().engine, deployment.settings, now=utcnow())
    # The broker redelivers the dead worker's task too; the lease lets only one copy post.
    enqueue(deliver_answer, expired)
    enqueue(deliver_answer, fresh)
    worker = start_worker(extra_env=deployment.env)
    wait_delivered(deployment.telegram, ["660"], [worker])

    assert report.redelivered == (expired,)
    assert report.requeued == ()
    assert repeated.redelivered == ()
    assert deployment.telegram.sent_texts("660") == ["Answer for chat 660."]
    assert deployment.telegram.sent_texts("661") == []
    assert load(expired).delivered_at is not None
    assert load(fresh).delivered_at is None
    assert f"question {fresh} is delivered or being delivered" in worker.log()


def test_sweep_delivers_lost_delivery_task(
    deployment: Deployment, start_worker: StartWorker
) -> None:
    deployment.configure(PONDER_SWEEP_QUEUED_AFTER_SECONDS="30")
    # The answer task finished, and the broker lost its delivery task (Redis restarted without
    # persistence); a question that finished recently still has time for its own task.
    lost = finished_on_telegram("670", finished_seconds_ago=60)
    recent = finished_on_telegram("671", finished_seconds_ago=5)
    assert queue_depth(deployment.settings) == 0

    report = sweep(get_runtime().engine, deployment.settings, now=utcnow())
    worker = start_worker(extra_env=deployment.env)
    wait_delivered(deployment.telegram, ["670"], [worker])

    delivered = load(lost)
    assert report.redelivered == (lost,)
    assert deployment.telegram.sent_texts("670") == ["Answer for chat 670."]
    assert deployment.telegram.sent_texts("671") == []
    assert delivered.delivered_at is not None
    assert list(delivered.delivery["posted_parts"]) == ["0"]
    assert load(recent).delivered_at is None


def test_delivery_goes_ahead_of_backlog(deployment: Deployment, start_worker: StartWorker) -> None:
    slow = start_delayed_ollama(0.3)
    try:
        env = deployment.configure(PONDER_OLLAMA_HOST=slow.url)
        backlog = {chat_id: ask_on_telegram(chat_id) for chat_id in ("901", "902", "903")}
        finished = ask_on_telegram("900", enqueue=False)
        with session_scope(get_runtime().engine) as session:
            question = session.get(Question, finished)
            assert question is not None
            question.status = "answered"
            question.answer = "Already answered."
            session.add(question)
        enqueue(deliver_answer, finished)
        assert queue_depth(deployment.settings) == 4

        # One worker process takes one task at a time, so the order of claims shows the order
        # in which Redis handed the tasks out.
        worker = start_worker(extra_env=env, concurrency=1)
        wait_delivered(deployment.telegram, ["900", *backlog], [worker])
    finally:
        slow.stop()

    first, third = load(backlog["901"]), load(backlog["903"])
    assert load(finished).delivered_at < first.started_at
    assert first.delivered_at < third.started_at
    assert sorted(deployment.telegram.messages_per_chat().values()) == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("fault", "user_message"),
    [
        ("down", ModelUnavailableError.user_message),
        ("hangs", ModelTimeoutError.user_message),
    ],
)
def test_model_failure_retries_then_tells_user(
    deployment: Deployment,
    start_worker: StartWorker,
    ollama: FakeOllamaServer,
    fault: str,
    user_message: str,
) -> None:
    if fault == "down":
        host = ollama.url
        ollama.stop()
    else:
        host = ollama.url
        ollama.inject(Fault(kind="hang", hang_seconds=MODEL_TIMEOUT_SECONDS * 3))
    env = deployment.configure(PONDER_OLLAMA_HOST=host)
    worker = start_worker(extra_env=env)

    question_id = ask_on_telegram("700")
    wait_delivered(deployment.telegram, ["700"], [worker])

    failed = load(question_id)
    assert failed.status == "failed"
    assert failed.attempts == MODEL_MAX_RETRIES + 1
    assert failed.reserved_tokens == 0
    assert ledger_rows(question_id) == 0
    assert deployment.telegram.sent_texts("700") == [user_message]
    assert f"retry {MODEL_MAX_RETRIES} of {MODEL_MAX_RETRIES} in 0.4 s" in worker.log()
    if fault == "hangs":
        generations = [r for r in ollama.requests if r.path in GENERATION_PATHS]
        assert len(generations) == MODEL_MAX_RETRIES + 1


def test_deadline_returns_best_answer_so_far(
    deployment: Deployment, start_worker: StartWorker
) -> None:
    # Each model call takes 1 s. The deadline stops new calls min(model timeout, soft / 2) =
    # 2 s before the 6 s soft limit, so about 4 of the 16 requested samples run.
    slow = start_delayed_ollama(1.0)
    try:
        env = deployment.configure(PONDER_OLLAMA_HOST=slow.url)
        worker = start_worker(extra_env=env)
        question_id = ask_on_telegram(
            "800",
            strategy="self_consistency",
            strategy_options={"samples": 16, "early_stop": False},
        )
        wait_delivered(deployment.telegram, ["800"], [worker])
    finally:
        slow.stop()

    answered = load(question_id)
    assert answered.status == "answered"
    assert answered.trace["stop_reason"] == "deadline"
    assert 2 <= answered.calls <= 5
    assert answered.short_answer == "5"
    assert answered.wall_seconds < SOFT_TIME_LIMIT_SECONDS
    assert answered.reserved_tokens == 0
    assert len(deployment.telegram.sent_texts("800")) == 1


@pytest.mark.postgres
def test_burst_loses_nothing_and_never_overspends(
    deployment: Deployment, start_worker: StartWorker, postgres_url: str
) -> None:
    users, questions_per_user, rate_limit = 20, 4, 3
    # Even users can afford a few answers; odd users have less than any question needs.
    budgets = {str(1000 + index): 400 if index % 2 == 0 else 40 for index in range(users)}
    fast = start_delayed_ollama(0.02)
    upgrade(postgres_url)
    env = deployment.configure(
        PONDER_OLLAMA_HOST=fast.url,
        PONDER_DATABASE_URL=postgres_url,
        PONDER_RATE_LIMIT_PER_MINUTE=str(rate_limit),
    )
    with session_scope(get_runtime().engine) as session:
        for user_id, tokens in budgets.items():
            user = get_or_create_user(session, "telegram", user_id)
            user.budget_tokens = tokens
            session.add(user)
    worker = start_worker(extra_env=env, concurrency=4)
    stored: list[int] = []
    stored_chats: list[str] = []
    rejected: list[str] = []
    lock = threading.Lock()

    def ask_many(user_index: int) -> None:
        for number in range(questions_per_user):
            chat_id = str(10_000 + user_index * 10 + number)
            try:
                question_id = ask_on_telegram(chat_id, user_id=str(1000 + user_index))
            except (RateLimitedError, BudgetExceededError) as exc:
                with lock:
                    rejected.append(type(exc).__name__)
                continue
            with lock:
                stored.append(question_id)
                stored_chats.append(chat_id)

    try:
        threads = [threading.Thread(target=ask_many, args=(index,)) for index in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_delivered(deployment.telegram, stored_chats, [worker])
    finally:
        fast.stop()

    statuses = [load(question_id).status for question_id in stored]
    affording_users = users // 2
    assert len(stored) == affording_users * rate_limit
    assert rejected.count("RateLimitedError") == affording_users * (questions_per_user - rate_limit)
    assert rejected.count("BudgetExceededError") == (users - affording_users) * questions_per_user
    assert statuses.count("answered") + statuses.count("refused") == len(stored)
    assert statuses.count("answered") >= affording_users
    assert all(load(question_id).reserved_tokens == 0 for question_id in stored)
    per_chat = deployment.telegram.messages_per_chat()
    assert sum(per_chat.values()) == len(stored)
    assert max(per_chat.values()) == 1
    with session_scope(get_runtime().engine) as session:
        spent = session.exec(
            select(User.platform_user_id, func.sum(UsageEntry.tokens))
            .join(UsageEntry, UsageEntry.user_id == User.id)  # type: ignore[arg-type]
            .group_by(User.platform_user_id)
        ).all()
    assert len(spent) == affording_users
    for user_id, tokens in spent:
        assert tokens <= budgets[user_id], f"user {user_id} spent {tokens} tokens"
