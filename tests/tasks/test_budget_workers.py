"""Two real Celery workers answer thirty questions of one user without overspending the budget."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from core.commands import Actor, CommandRequest, run_command
from core.config import Settings, get_settings
from core.db import create_db_engine, session_scope, upgrade
from core.models import TERMINAL_STATUSES, Question, UsageEntry
from core.questions import submit_question
from core.schemas import AskRequest
from tasks.answer import answer_question
from tasks.app import app

pytestmark = [pytest.mark.redis, pytest.mark.model, pytest.mark.slow]

QUESTIONS = 30
QUESTION_CAP_TOKENS = 150
# Every reservation is at most the cap, so at least five questions fit. The questions ask for a
# long count, so each one spends about its whole reservation and few more than five fit.
LIMIT_TOKENS = 5 * QUESTION_CAP_TOKENS
FINISH_TIMEOUT_SECONDS = 150
OPERATOR = Actor(platform="cli", user_id="test", is_local_operator=True)
REFUSAL = re.compile(
    r"^Your daily budget of 750 tokens "
    r"(is used up|has \d+ left, too few for this question \(about \d+\)); "
    r"it resets at 00:00 UTC \(in (\d+ h )?\d+ (h|min)\)\.$"
)
WORKER_ENV = {"PONDER_EMBEDDED_THREADS": "1"}


def _ask_thirty(engine: Engine, settings: Settings) -> list[int]:
    reply = run_command(
        engine,
        settings,
        CommandRequest(
            actor=OPERATOR,
            name="budget_set",
            target="cli:budget-test",
            tokens=LIMIT_TOKENS,
            period="day",
            question_cap_tokens=QUESTION_CAP_TOKENS,
        ),
    )
    assert reply.ok, reply.text
    question_ids = []
    for number in range(QUESTIONS):
        question = submit_question(
            engine,
            settings,
            AskRequest(
                platform="cli",
                user_id="budget-test",
                text=f"Count from {number} to 1000, one number per line.",
                strategy="direct",
            ),
        )
        assert question.id is not None
        question_ids.append(question.id)
    return question_ids


def _enqueue(question_ids: list[int], settings: Settings) -> None:
    """Send the tasks to this test's queue on its own connection; the Celery app in this process
    keeps the queue of whichever test configured it first.
    """
    assert settings.broker_url is not None
    with app.connection_for_write(settings.broker_url) as connection:
        for question_id in question_ids:
            # celery-types leaves out `connection`, which Celery passes on to the producer.
            answer_question.apply_async(  # type: ignore[call-arg]
                args=(question_id,), queue=settings.task_queue, connection=connection
            )


def _wait_until_finished(engine: Engine, question_ids: list[int]) -> list[Question]:
    deadline = time.monotonic() + FINISH_TIMEOUT_SECONDS
    while True:
        with session_scope(engine) as session:
            questions = list(
                session.exec(select(Question).where(Question.id.in_(question_ids))).all()  # type: ignore[union-attr]
            )
        if all(question.status in TERMINAL_STATUSES for question in questions):
            return questions
        if time.monotonic() >= deadline:
            statuses = sorted(question.status for question in questions)
            raise AssertionError(f"not finished in {FINISH_TIMEOUT_SECONDS} s: {statuses}")
        time.sleep(0.5)


def _run_thirty_on_two_workers(
    engine: Engine, settings: Settings, start_worker: Callable[..., object], env: dict[str, str]
) -> None:
    question_ids = _ask_thirty(engine, settings)
    _enqueue(question_ids, settings)
    # Both workers start after every question is queued, so the budget is checked by the
    # workers' reservations and not at submit time.
    start_worker(concurrency=2, extra_env=env)
    start_worker(concurrency=2, extra_env=env)

    questions = _wait_until_finished(engine, question_ids)

    answered = [question for question in questions if question.status == "answered"]
    refused = [question for question in questions if question.status == "refused"]
    with session_scope(engine) as session:
        ledger_tokens = session.exec(select(func.coalesce(func.sum(UsageEntry.tokens), 0))).one()
    spent = sum(question.prompt_tokens + question.completion_tokens for question in answered)
    assert len(answered) + len(refused) == QUESTIONS
    assert len(answered) >= 5
    assert len(refused) >= 1
    assert ledger_tokens <= LIMIT_TOKENS
    assert ledger_tokens == spent
    assert [question.id for question in questions if question.reserved_tokens != 0] == []
    assert [
        question.id
        for question in answered
        if question.prompt_tokens + question.completion_tokens > QUESTION_CAP_TOKENS
    ] == []
    messages = [str(question.trace.get("user_message")) for question in refused]
    assert [message for message in messages if not REFUSAL.match(message)] == []
    assert [question.id for question in refused if question.prompt_tokens != 0] == []


def test_budget_holds_on_sqlite(
    worker_env: dict[str, str], start_worker: Callable[..., object]
) -> None:
    settings = get_settings()
    engine = create_db_engine(settings.resolved_database_url)
    upgrade(settings.resolved_database_url)

    _run_thirty_on_two_workers(engine, settings, start_worker, WORKER_ENV)

    engine.dispose()


@pytest.mark.postgres
def test_budget_holds_on_postgres(
    worker_env: dict[str, str],
    start_worker: Callable[..., object],
    postgres_url: str,
) -> None:
    upgrade(postgres_url)
    settings = get_settings().model_copy(update={"database_url": postgres_url})
    engine = create_db_engine(postgres_url)

    _run_thirty_on_two_workers(
        engine, settings, start_worker, {**WORKER_ENV, "PONDER_DATABASE_URL": postgres_url}
    )

    engine.dispose()
