"""Tests for `ponder calibrate` on the SQLite database of the settings."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bots.cli.main import app
from core.config import get_settings
from core.db import create_db_engine, session_scope, upgrade
from core.difficulty import extract_features, fitted_weights_path
from core.models import Question, User


def _store_history(count: int) -> None:
    """Store answered questions: yes/no ones whose samples disagreed, factual ones that agreed."""
    url = get_settings().resolved_database_url
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        user = User(platform="cli", platform_user_id="history")
        session.add(user)
        session.flush()
        assert user.id is not None
        for index in range(count):
            disagreed = index % 2 == 0
            text = "Is the ocean salty?" if disagreed else "What is the capital of Peru?"
            session.add(
                Question(
                    user_id=user.id,
                    platform="cli",
                    text=text,
                    status="answered",
                    features=extract_features(text).as_record(),
                    outcome={"disagreed": disagreed},
                )
            )
    engine.dispose()


def test_calibrate_without_history(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["calibrate"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "history: 0 answered questions with agreement signals, 0 with disagreeing samples",
        "too little history: 0 answered questions with agreement signals, at least 20 needed; "
        "nothing changed",
    ]
    assert not fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"])).exists()


def test_calibrate_saves_weights(ponder_env: dict[str, str]) -> None:
    _store_history(24)

    result = CliRunner().invoke(app, ["calibrate"])

    path = fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"]))
    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == (
        "history: 24 answered questions with agreement signals, 12 with disagreeing samples"
    )
    assert lines[1] == "AUROC before the refit: 0.000"
    assert lines[2] == "AUROC after the refit:  1.000 (in-sample)"
    assert lines[3] == "AUROC after the refit:  1.000 (5-fold cross-validated)"
    assert lines[4] == f"saved the weights to {path}"
    assert json.loads(path.read_text())["questions"] == 24


def test_calibrate_json_dry_run(ponder_env: dict[str, str]) -> None:
    _store_history(24)

    result = CliRunner().invoke(app, ["calibrate", "--dry-run", "--json"])

    payload = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert payload["questions"] == 24
    assert payload["auroc_after"] == 1.0
    assert payload["saved_to"] is None
    assert payload["message"] == "dry run; nothing changed"
    assert not fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"])).exists()


def test_calibrate_lower_minimum(ponder_env: dict[str, str]) -> None:
    _store_history(10)

    result = CliRunner().invoke(app, ["calibrate", "--min-questions", "10", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "dry run; nothing changed"
