"""The console adapter: ask a question from a terminal and wait for the stored answer."""

from __future__ import annotations

import getpass
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType

from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy import Engine
from sqlmodel import col, select

from bots.cli.common import InterruptedCommandError, redact_url
from core.answering import record_failure, reply_from_question
from core.config import Settings
from core.db import session_scope
from core.errors import PonderError
from core.models import TERMINAL_STATUSES, Question, User, utcnow
from core.questions import MAX_PLATFORM_USER_ID_CHARS, parse_user_ref, submit_question
from core.recovery import lease_seconds
from core.schemas import AskRequest, Effort, Reply
from tasks.answer import enqueue_answer
from tasks.runtime import get_runtime

logger = logging.getLogger(__name__)

PLATFORM = "cli"
POLL_INTERVAL_SECONDS = 0.2


class AnswerTimeoutError(PonderError):
    """No worker finished the question in time."""


class BrokerUnavailableError(PonderError):
    """The question is stored, but the broker rejected or could not take its task."""


class TerminateRequested(BaseException):
    """Raised in the main thread on SIGTERM; a BaseException so that no `except Exception` in
    the task swallows it, like KeyboardInterrupt for SIGINT."""


def default_user_ref() -> str:
    """Return `cli:` and the login name, the default asker on the console."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "console"
    # Console ids allow letters, digits, '.', '_' and '-'; a login such as "ann smith" or
    # "ann@corp" becomes "ann-smith" or "ann-corp" instead of being rejected.
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:MAX_PLATFORM_USER_ID_CHARS] or "console"
    return f"{PLATFORM}:{safe}"


def ask(
    text: str,
    *,
    user: str | None = None,
    effort: Effort = "auto",
    strategy: str | None = None,
    strategy_options: dict[str, object] | None = None,
) -> tuple[Question, Reply]:
    """Store a question, have it answered by a worker or in this process, and return the answer.

    Raises InterruptedCommandError when SIGINT or SIGTERM stops an in-process answer; the question
    is then failed, which returns its reserved tokens to the asker's budget.
    """
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
    in_process = not runtime.settings.broker_url
    if in_process:
        release_abandoned_questions(runtime.engine, runtime.settings, platform, user_id)
    question = submit_question(runtime.engine, runtime.settings, request)
    assert question.id is not None
    if in_process:
        with _sigterm_raises():
            try:
                enqueue_answer(question.id)
            except KeyboardInterrupt:
                cancel_question(question.id, signal_number=signal.SIGINT)
            except TerminateRequested:
                cancel_question(question.id, signal_number=signal.SIGTERM)
    else:
        send_to_broker(question.id, runtime.settings)
    finished = wait_for_answer(question.id, timeout_seconds=runtime.settings.answer_wait_seconds)
    return finished, reply_from_question(finished)


def send_to_broker(question_id: int, settings: Settings) -> None:
    """Enqueue the stored question; a broker that cannot be reached raises a one-line error."""
    try:
        enqueue_answer(question_id)
    except BrokerOperationalError as exc:
        raise BrokerUnavailableError(
            f"cannot reach the broker at {redact_url(settings.broker_url or '')} ({exc}); "
            f"question {question_id} is stored and will be answered when a worker and the "
            "broker are running"
        ) from exc


def cancel_question(question_id: int, *, signal_number: int) -> None:
    """Fail an interrupted question, which releases its reservation, and raise
    InterruptedCommandError."""
    engine = get_runtime().engine
    name = signal.Signals(signal_number).name
    with session_scope(engine) as session:
        question = session.get(Question, question_id)
    # The interrupted answer ran in this thread, so nothing else changes the status meanwhile.
    if question is not None and question.status in TERMINAL_STATUSES:
        raise InterruptedCommandError(
            f"interrupted; question {question_id} had already finished as {question.status!r}",
            signal_number=signal_number,
        )
    record_failure(
        engine,
        question_id,
        PonderError(
            f"question {question_id} was cancelled by {name} while it was answered in-process",
            user_message="The question was cancelled.",
        ),
    )
    raise InterruptedCommandError(
        f"interrupted; question {question_id} was cancelled and its tokens returned to your budget",
        signal_number=signal_number,
    )


def release_abandoned_questions(
    engine: Engine, settings: Settings, platform: str, platform_user_id: str
) -> list[int]:
    """Fail the asker's running questions whose lease expired, and return their ids.

    Without a broker nothing else frees them: an in-process asker that was killed (SIGKILL, a
    power loss) leaves its question running with its tokens reserved. After the lease (the hard
    time limit plus a grace) no worker can still be answering it.
    """
    started_before = utcnow() - timedelta(
        seconds=lease_seconds(settings.task_hard_time_limit_seconds)
    )
    with session_scope(engine) as session:
        abandoned = session.exec(
            select(Question.id)
            .join(User, col(User.id) == col(Question.user_id))
            .where(
                col(User.platform) == platform,
                col(User.platform_user_id) == platform_user_id,
                col(Question.status) == "running",
                col(Question.started_at) < started_before,
            )
        ).all()
    released = [question_id for question_id in abandoned if question_id is not None]
    for question_id in released:
        logger.warning("releasing question %d: its in-process asker stopped", question_id)
        record_failure(
            engine,
            question_id,
            PonderError(
                f"question {question_id} was abandoned: the process answering it stopped "
                "without a result"
            ),
        )
    return released


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Make SIGTERM raise TerminateRequested in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminate(signal_number: int, frame: FrameType | None) -> None:
        raise TerminateRequested

    previous = signal.signal(signal.SIGTERM, raise_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
