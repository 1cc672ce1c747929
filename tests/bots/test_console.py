"""Tests for the console adapter: interrupting an in-process answer, and abandoned questions."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import select

from bots.console import default_user_ref, release_abandoned_questions
from core.db import session_scope
from core.models import Question, User, utcnow
from core.questions import parse_user_ref
from core.recovery import lease_seconds
from tasks.runtime import get_runtime
from tests.conftest import ponder_executable
from tests.fakes.background import start_delayed_ollama
from tests.fakes.ollama_server import FakeOllamaServer

MODEL_DELAY_SECONDS = 30.0
STARTED_TIMEOUT_SECONDS = 60.0
EXIT_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def slow_ollama() -> Iterator[FakeOllamaServer]:
    server = start_delayed_ollama(MODEL_DELAY_SECONDS)
    yield server
    server.stop()


def wait_for_running_question(log: subprocess.Popen[bytes]) -> Question:
    """Wait until the asker's question is running with tokens reserved, and return it."""
    deadline = time.monotonic() + STARTED_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert log.poll() is None, "ponder ask exited before the model replied"
        with session_scope(get_runtime().engine) as session:
            question = session.exec(select(Question)).first()
        if question is not None and question.status == "running" and question.reserved_tokens:
            return question
        time.sleep(0.2)
    raise AssertionError(f"no question was running after {STARTED_TIMEOUT_SECONDS} s")


@pytest.mark.parametrize(
    ("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_interrupted_ask_fails_question(
    ponder_env: dict[str, str],
    slow_ollama: FakeOllamaServer,
    signal_number: int,
    exit_code: int,
) -> None:
    env = {
        **os.environ,
        "PONDER_MODEL_BACKEND": "ollama",
        "PONDER_OLLAMA_HOST": slow_ollama.url,
    }
    asker = subprocess.Popen(
        [ponder_executable(), "ask", "--user", "cli:alice", "What is 2 + 3?"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        running = wait_for_running_question(asker)
        asker.send_signal(signal_number)
        _, stderr = asker.communicate(timeout=EXIT_TIMEOUT_SECONDS)
    finally:
        if asker.poll() is None:
            asker.kill()
            asker.wait()

    with session_scope(get_runtime().engine) as session:
        question = session.get(Question, running.id)
    assert question is not None
    assert asker.returncode == exit_code, stderr.decode()[-3000:]
    assert question.status == "failed"
    assert question.reserved_tokens == 0
    assert stderr.decode().splitlines()[-1] == (
        f"error: interrupted; question {running.id} was cancelled and its tokens returned to "
        "your budget"
    )
    assert b"Traceback" not in stderr


def store_running_question(*, platform_user_id: str, started_ago_seconds: float) -> int:
    """Store a running question with 500 tokens reserved, started that long ago."""
    with session_scope(get_runtime().engine) as session:
        user = session.exec(
            select(User).where(User.platform == "cli", User.platform_user_id == platform_user_id)
        ).first()
        if user is None:
            user = User(platform="cli", platform_user_id=platform_user_id)
            session.add(user)
            session.flush()
        assert user.id is not None
        question = Question(
            user_id=user.id,
            platform="cli",
            chat_id=platform_user_id,
            text="What is 2 + 3?",
            status="running",
            started_at=utcnow() - timedelta(seconds=started_ago_seconds),
            reserved_tokens=500,
        )
        session.add(question)
        session.flush()
        assert question.id is not None
        return question.id


def test_release_abandoned_questions_of_asker(ponder_env: dict[str, str]) -> None:
    runtime = get_runtime()
    lease = lease_seconds(runtime.settings.task_hard_time_limit_seconds)
    abandoned = store_running_question(platform_user_id="alice", started_ago_seconds=lease + 60)
    live = store_running_question(platform_user_id="alice", started_ago_seconds=1)
    other_user = store_running_question(platform_user_id="bob", started_ago_seconds=lease + 60)

    released = release_abandoned_questions(runtime.engine, runtime.settings, "cli", "alice")

    with session_scope(runtime.engine) as session:
        statuses = {
            question_id: (question.status, question.reserved_tokens)
            for question_id in (abandoned, live, other_user)
            if (question := session.get(Question, question_id)) is not None
        }
    assert released == [abandoned]
    assert statuses[abandoned] == ("failed", 0)
    assert statuses[live] == ("running", 500)
    assert statuses[other_user] == ("running", 500)


@pytest.mark.parametrize(
    ("login", "expected"),
    [("alice", "cli:alice"), ("ann smith", "cli:ann-smith"), ("ann@corp", "cli:ann-corp")],
)
def test_default_user_ref_sanitizes_login(
    monkeypatch: pytest.MonkeyPatch, login: str, expected: str
) -> None:
    monkeypatch.setattr("bots.console.getpass.getuser", lambda: login)

    ref = default_user_ref()

    assert ref == expected
    assert parse_user_ref(ref) == tuple(expected.split(":"))
