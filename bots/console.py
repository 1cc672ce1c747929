"""The console adapter: ask a question from a terminal and wait for the stored answer."""

from __future__ import annotations

import getpass
import logging
import time

from core.answering import reply_from_question
from core.db import session_scope
from core.errors import PonderError
from core.models import TERMINAL_STATUSES, Question
from core.questions import parse_user_ref, submit_question
from core.schemas import AskRequest, Effort, Reply
from tasks.answer import enqueue_answer
from tasks.runtime import get_runtime

logger = logging.getLogger(__name__)

PLATFORM = "cli"
POLL_INTERVAL_SECONDS = 0.2


class AnswerTimeoutError(PonderError):
    """No worker finished the question in time."""


def default_user_ref() -> str:
    """Return `cli:` and the login name, the default asker on the console."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "console"
    return f"{PLATFORM}:{name}"


def ask(
    text: str,
    *,
    user: str | None = None,
    effort: Effort = "auto",
    strategy: str | None = None,
    strategy_options: dict[str, object] | None = None,
) -> tuple[Question, Reply]:
    """Store a question, have it answered by a worker or in this process, and return the answer."""
    runtime = get_runtime()
    platform, user_id = parse_user_ref(user or default_user_ref())
    request = AskRequest(
        platform=platform,
        user_id=user_id,
        text=text,
        effort=effort,
        strategy=strategy,
        strategy_options=dict(strategy_options or {}),
    )
    question = submit_question(runtime.engine, runtime.settings, request)
    assert question.id is not None
    enqueue_answer(question.id)
    finished = wait_for_answer(question.id, timeout_seconds=runtime.settings.answer_wait_seconds)
    return finished, reply_from_question(finished)


def wait_for_answer(question_id: int, *, timeout_seconds: float) -> Question:
    """Poll the database until the question reaches a final status."""
    engine = get_runtime().engine
    deadline = time.monotonic() + timeout_seconds
    while True:
        with session_scope(engine) as session:
            question = session.get(Question, question_id)
        if question is not None and question.status in TERMINAL_STATUSES:
            return question
        if time.monotonic() >= deadline:
            raise AnswerTimeoutError(
                f"question {question_id} was not answered within {timeout_seconds:.0f} s; check "
                "that `ponder worker` is running against the same broker and database",
                user_message="No answer arrived in time. Is a worker running?",
            )
        time.sleep(POLL_INTERVAL_SECONDS)
