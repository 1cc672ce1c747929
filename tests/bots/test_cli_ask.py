"""Tests for `ponder ask` in the embedded default: no broker, SQLite, the embedded model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bots.cli.main import app
from core.config import get_settings
from core.difficulty import default_model, extract_features

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
