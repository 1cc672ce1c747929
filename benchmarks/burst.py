"""Burst benchmark: many questions from many users queued at once, answered by real workers.

It starts a fake Ollama server that answers every generation after a fixed delay, a fake Telegram
Bot API that receives the answers, and `ponder worker` processes on the real Redis. One thread
per user stores that user's questions in a fresh PostgreSQL database and enqueues each one right
after storing it. When every chat has received its message, the script checks that nothing was
lost or delivered twice and that no user spent more than their budget, and prints:

- queue latency: from storing a question to a worker starting it (p50, p95, max);
- Ponder's overhead per answered question: the answer task's wall time minus the time spent in
  model calls (planning, budget reservation, database writes, the strategy's own work);
- delivery wait, from a finished answer to its delivery being claimed by a worker;
- end-to-end latency, from storing a question to its delivery being claimed.

Run from the repository root, with Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432:

    .venv/bin/python -m benchmarks.burst --questions 200 --users 20 --workers 2 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from sqlalchemy import Engine, func
from sqlmodel import select

from core.config import Settings
from core.db import create_db_engine, session_scope, upgrade
from core.errors import BudgetExceededError, RateLimitedError
from core.models import TERMINAL_STATUSES, Question, UsageEntry, User
from core.questions import get_or_create_user, submit_question
from core.schemas import AskRequest
from tests.fakes.background import TELEGRAM_TOKEN, BackgroundBotApi, start_delayed_ollama
from tests.fakes.ollama_server import FakeReply

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/11"
WORKER_READY_SECONDS = 120.0
FIRST_CHAT_ID = 100_000


@dataclass(frozen=True)
class Submission:
    """The outcome of the burst's submissions."""

    stored: dict[int, str]  # question id -> chat id
    rejected: Counter[str]
    seconds: float


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `values`."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def create_database() -> tuple[str, str]:
    name = f"ponder_burst_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_workers(env: dict[str, str], count: int, concurrency: int, logs: Path) -> list:
    ponder = str(Path(sys.executable).parent / "ponder")
    workers = []
    for index in range(count):
        log_path = logs / f"worker-{index}.log"
        process = subprocess.Popen(
            [ponder, "worker", f"--concurrency={concurrency}", f"--hostname=burst{index}@%h"],
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers.append((process, log_path))
    deadline = time.monotonic() + WORKER_READY_SECONDS
    for process, log_path in workers:
        while " ready." not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start; see {log_path}")
            time.sleep(0.2)
    return workers


def submit_burst(engine: Engine, settings: Settings, users: int, per_user: int) -> Submission:
    """Store and enqueue `per_user` questions for each user, one thread per user, all at once."""
    from tasks.answer import enqueue_answer

    stored: dict[int, str] = {}
    rejected: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(users)

    def ask_many(user_index: int) -> None:
        start.wait()
        for number in range(per_user):
            chat_id = str(FIRST_CHAT_ID + user_index * per_user + number)
            request = AskRequest(
                platform="telegram",
                user_id=str(user_index + 1),
                chat_id=chat_id,
                message_id="1",
                text=f"What is {user_index} + {number}?",
            )
            try:
                question = submit_question(engine, settings, request)
            except (RateLimitedError, BudgetExceededError) as exc:
                with lock:
                    rejected[type(exc).__name__] += 1
                continue
            assert question.id is not None
            enqueue_answer(question.id)
            with lock:
                stored[question.id] = chat_id

    started = time.monotonic()
    threads = [threading.Thread(target=ask_many, args=(index,)) for index in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Submission(stored=stored, rejected=rejected, seconds=time.monotonic() - started)


def wait_for_chats(telegram: BackgroundBotApi, chats: set[str], timeout_seconds: float) -> float:
    started = time.monotonic()
    while not chats <= set(telegram.messages_per_chat()):
        if time.monotonic() - started > timeout_seconds:
            missing = len(chats - set(telegram.messages_per_chat()))
            raise SystemExit(f"{missing} chats received no message in {timeout_seconds:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def report(engine: Engine, submission: Submission, telegram: BackgroundBotApi, budget: int) -> str:
    with session_scope(engine) as session:
        questions = session.exec(
            select(Question).where(Question.id.in_(list(submission.stored)))  # type: ignore[union-attr]
        ).all()
        spent = session.exec(
            select(User.platform_user_id, func.sum(UsageEntry.tokens))
            .join(UsageEntry, UsageEntry.user_id == User.id)  # type: ignore[arg-type]
            .group_by(User.platform_user_id)
        ).all()
    statuses = Counter(question.status for question in questions)
    per_chat = telegram.messages_per_chat()
    lost = [q.id for q in questions if q.status not in TERMINAL_STATUSES]
    duplicates = [chat for chat, count in per_chat.items() if count > 1]
    overspent = [user for user, tokens in spent if tokens > budget]

    queue = [(q.started_at - q.created_at).total_seconds() for q in questions if q.started_at]
    answered = [q for q in questions if q.status == "answered"]
    overhead = [q.wall_seconds - q.model_seconds for q in answered]
    model = [q.model_seconds for q in answered]
    delivery_wait = [
        (q.delivered_at - q.finished_at).total_seconds()
        for q in questions
        if q.delivered_at and q.finished_at
    ]
    end_to_end = [
        (q.delivered_at - q.created_at).total_seconds() for q in questions if q.delivered_at
    ]
    first = min(q.created_at for q in questions)
    last = max(q.delivered_at for q in questions if q.delivered_at)

    def row(name: str, values: list[float]) -> str:
        return (
            f"| {name} | {percentile(values, 0.5):.3f} | {percentile(values, 0.95):.3f} | "
            f"{max(values):.3f} | {statistics.fmean(values):.3f} |"
        )

    lines = [
        f"stored {len(questions)}, rejected at submission {dict(submission.rejected)}, "
        f"statuses {dict(statuses)}",
        f"lost {len(lost)}, chats with duplicate messages {len(duplicates)}, "
        f"users over budget {len(overspent)}",
        f"submitting took {submission.seconds:.2f} s; all delivered "
        f"{(last - first).total_seconds():.2f} s after the first question was stored",
        "",
        "| seconds per question | p50 | p95 | max | mean |",
        "|---|---|---|---|---|",
        row("queue latency (stored → started)", queue),
        row("Ponder overhead (task wall − model)", overhead),
        row("model calls (fake Ollama)", model),
        row("delivery wait (finished → delivery)", delivery_wait),
        row("end to end (stored → delivery)", end_to_end),
    ]
    if lost or duplicates or overspent:
        lines.append(f"FAILED: lost {lost}, duplicates {duplicates}, overspent {overspent}")
    return "\n".join(lines)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200, help="Questions in the burst.")
    parser.add_argument("--users", type=int, default=20, help="Users asking them.")
    parser.add_argument("--workers", type=int, default=2, help="`ponder worker` processes.")
    parser.add_argument("--concurrency", type=int, default=2, help="Processes per worker.")
    parser.add_argument(
        "--model-latency", type=float, default=0.2, help="Seconds per fake model call."
    )
    parser.add_argument(
        "--rate-limit", type=int, default=0, help="PONDER_RATE_LIMIT_PER_MINUTE; 0 is off."
    )
    parser.add_argument("--budget", type=int, default=50_000, help="Tokens per user and day.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait at most.")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    per_user = arguments.questions // arguments.users
    database, database_url = create_database()
    ollama = start_delayed_ollama(arguments.model_latency)
    # Without durations in the reply, the client measures a call's model time as its wall time.
    ollama.reply = FakeReply(
        prompt_eval_duration_ns=None, eval_duration_ns=None, total_duration_ns=None
    )
    telegram = BackgroundBotApi().start()
    key_prefix = f"ponder-burst-{uuid.uuid4().hex[:8]}:"
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / key_prefix.rstrip(":")
    logs.mkdir(parents=True, exist_ok=True)
    variables = {
        "PONDER_DATABASE_URL": database_url,
        "PONDER_DATA_DIR": str(logs),
        "PONDER_BROKER_URL": REDIS_URL,
        "PONDER_BROKER_KEY_PREFIX": key_prefix,
        "PONDER_TASK_QUEUE": "burst",
        "PONDER_MODEL_BACKEND": "ollama",
        "PONDER_OLLAMA_HOST": ollama.url,
        "PONDER_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "PONDER_TELEGRAM_BASE_URL": telegram.base_url,
        "PONDER_RATE_LIMIT_PER_MINUTE": str(arguments.rate_limit),
        "PONDER_DEFAULT_BUDGET_TOKENS": str(arguments.budget),
        "PONDER_LOG_LEVEL": "WARNING",
    }
    os.environ.update(variables)
    workers = []
    try:
        upgrade(database_url)
        engine = create_db_engine(database_url)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        with session_scope(engine) as session:
            for index in range(arguments.users):
                get_or_create_user(session, "telegram", str(index + 1))
        workers = start_workers(dict(os.environ), arguments.workers, arguments.concurrency, logs)
        submission = submit_burst(engine, settings, arguments.users, per_user)
        wait_for_chats(telegram, set(submission.stored.values()), arguments.timeout)
        time.sleep(2)  # let a duplicate, if any, arrive
        print(
            f"{arguments.questions} questions from {arguments.users} users; "
            f"{arguments.workers} workers x {arguments.concurrency} processes; fake Ollama "
            f"{arguments.model_latency:g} s per call; rate limit {arguments.rate_limit}/min"
        )
        print(report(engine, submission, telegram, arguments.budget))
        engine.dispose()
    finally:
        for process, _ in workers:
            os.killpg(process.pid, 15)
            process.wait(30)
        telegram.stop()
        ollama.stop()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{key_prefix}*"))
        if keys:
            client.delete(*keys)
        drop_database(database)


if __name__ == "__main__":
    main()
