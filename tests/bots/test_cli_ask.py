"""Tests for `ponder ask` in the embedded default: no broker, SQLite, the embedded model."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bots.cli.main import app
from core.config import get_settings
from core.db import session_scope
from core.difficulty import default_model, extract_features
from core.models import Question
from tasks.runtime import get_runtime

REQUIRED_KEYS = {
    "question_id",
    "answer",
    "strategy",
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "wall_seconds",
    "model_seconds",
    "model",
}


@pytest.mark.model
def test_ask_json_has_required_keys(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "--json", "What is 2 + 3?"])

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= REQUIRED_KEYS
    assert payload["strategy"] == "direct"
    assert payload["calls"] == 1
    assert payload["prompt_tokens"] > 0
    assert payload["completion_tokens"] > 0
    assert payload["answer"]


@pytest.mark.model
def test_ask_prints_answer_and_footnote(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "What is the capital of France?"])

    assert result.exit_code == 0, result.output
    assert "Paris" in result.stdout
    assert "— direct · 1 call · " in result.stdout


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "error: the question is empty"),
        ("x" * 100_000, "error: the question is 100,000 characters long; the maximum is 4,000"),
        ("a\x00b", "error: the question contains NUL bytes"),
    ],
)
def test_ask_rejects_bad_question(ponder_env: dict[str, str], question: str, message: str) -> None:
    result = CliRunner().invoke(app, ["ask", question])

    assert result.exit_code == 1
    assert message in result.stderr


def test_ask_rejects_invalid_user(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "--user", "alice", "hi"])

    assert result.exit_code == 1
    assert "invalid user 'alice'; write it as platform:id" in result.stderr


def test_invalid_setting_one_line(
    ponder_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PONDER_MODEL_BACKEND", "gpt")
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["ask", "hi"])

    assert result.exit_code == 2
    assert "error: invalid settings: PONDER_MODEL_BACKEND" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.model
def test_ask_json_explains_plan(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "--json", "What is 2 + 3?"])

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["difficulty"] == "easy"
    assert payload["difficulty_score"] == round(
        default_model().score(extract_features("What is 2 + 3?")), 4
    )
    assert payload["samples"] == 1
    assert payload["agreement"] is None
    assert payload["reason"] == "easy question (0.17): direct answer, 1,200 tokens"


def _stored_questions() -> int:
    with session_scope(get_runtime().engine) as session:
        return len(session.exec(select(Question)).all())


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("bogus=1", "unknown option(s) 'bogus' for strategy 'direct'; known options: max_tokens"),
        ("max_tokens=abc", "max_tokens: Input should be a valid integer"),
        ("max_tokens=0", "max_tokens: Input should be greater than or equal to 16"),
    ],
)
def test_ask_rejects_bad_set_before_storing(
    ponder_env: dict[str, str], assignment: str, message: str
) -> None:
    result = CliRunner().invoke(app, ["ask", "--strategy", "direct", "--set", assignment, "hi"])

    assert result.exit_code == 2
    assert message in result.stderr
    assert _stored_questions() == 0


def test_ask_rejects_set_without_strategy(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "--set", "max_tokens=32", "hi"])

    assert result.exit_code == 2
    assert "--set needs --strategy" in result.stderr


def test_ask_json_prints_rejection(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ask", "--json", "   "])

    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["question_id"] is None
    assert payload["status"] == "rejected"
    assert payload["error"] == "the question is empty; write a question after the command"
    assert payload["budget_remaining"] is None
    assert set(payload) >= REQUIRED_KEYS
    assert "error: the question is empty" in result.stderr


def test_ask_json_rejects_empty_budget(ponder_env: dict[str, str]) -> None:
    CliRunner().invoke(app, ["admin", "budget", "set", "cli:alice", "0"])

    result = CliRunner().invoke(app, ["ask", "--json", "--user", "cli:alice", "hi"])

    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["status"] == "rejected"
    assert payload["error"].startswith("Your daily token budget is 0, so Ponder cannot answer.")
    assert _stored_questions() == 0


def test_ask_json_refused_has_budget_remaining(ponder_env: dict[str, str]) -> None:
    # 80 tokens pass the check at submit time (at least 64 left) but not the worker's
    # reservation, which needs the prompt of this long question plus an answer.
    CliRunner().invoke(app, ["admin", "budget", "set", "cli:alice", "80"])
    question = "Explain " + "why the sky is blue and the grass is green, " * 8

    result = CliRunner().invoke(app, ["ask", "--json", "--user", "cli:alice", question])

    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "refused"
    assert payload["budget_remaining"] == 80


@pytest.mark.parametrize("user", ["alice", "CLI:alice", "cli:alice:bob", "telegram:0042"])
def test_ask_and_admin_reject_user_alike(ponder_env: dict[str, str], user: str) -> None:
    asked = CliRunner().invoke(app, ["ask", "--user", user, "hi"])
    administered = CliRunner().invoke(app, ["admin", "budget", "set", user, "5000"])

    assert asked.exit_code == 1
    assert administered.exit_code == 1
    assert asked.stderr == administered.stderr
