"""Tests for answering in-process (no broker) when the model, a token or the policy fails."""

from __future__ import annotations

import socket

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bots.cli.main import app
from core.config import get_settings
from core.db import session_scope
from core.errors import ConfigurationError, ModelUnavailableError
from core.models import Question
from tasks.runtime import get_runtime, reset_runtime

DEFAULT_MODEL_MAX_RETRIES = 3


def closed_port_url() -> str:
    """Return an http URL on 127.0.0.1 whose port has no listener."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def only_question() -> Question:
    with session_scope(get_runtime().engine) as session:
        questions = session.exec(select(Question)).all()
    assert len(questions) == 1
    return questions[0]


def use_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_runtime()


def test_model_down_retries_inline_then_fails(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(
        monkeypatch,
        PONDER_MODEL_BACKEND="ollama",
        PONDER_OLLAMA_HOST=closed_port_url(),
        PONDER_MODEL_RETRY_BACKOFF_SECONDS="0.05",
    )

    result = CliRunner().invoke(app, ["ask", "What is 2+2?"])

    question = only_question()
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert result.stdout.strip() == ModelUnavailableError.user_message
    assert question.status == "failed"
    assert question.reserved_tokens == 0
    assert question.attempts == DEFAULT_MODEL_MAX_RETRIES + 1
    assert question.error is not None
    assert "cannot reach Ollama" in question.error


def test_missing_discord_token_fails_question(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(
        app, ["ask", "--user", "discord:123456789012345678", "Is ice cold?"]
    )

    question = only_question()
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert result.stdout.strip() == ConfigurationError.user_message
    assert question.status == "failed"
    assert question.reserved_tokens == 0
    assert question.error is not None
    assert question.error.startswith("PONDER_DISCORD_TOKEN is not set")
    # The delivery found the same missing token, gave up without a retry and left the claim
    # free for the sweep.
    assert question.delivered_at is None
    assert question.delivery_claimed_at is None


def test_invalid_policy_fails_question(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, PONDER_POLICY='{"easy": {"strategy": "nope"}}')

    result = CliRunner().invoke(app, ["ask", "Is ice cold?"])

    question = only_question()
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert question.status == "failed"
    assert question.reserved_tokens == 0
    assert question.error is not None
    assert question.error.startswith("PONDER_POLICY is invalid")
