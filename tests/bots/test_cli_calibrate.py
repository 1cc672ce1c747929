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

SMALL_HISTORY = [
    ("Is fire hot?", False),
    ("What is 17 * 23?", True),
    ("What is the capital of Peru?", False),
    ("A train travels 60 miles per hour for 3 hours. How far does it go?", True),
    ("Is the ocean salty?", True),
    ("Who wrote Hamlet?", False),
    (
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four. She sells the remainder at the farmers' "
        "market daily for $2 per fresh duck egg. How much in dollars does she make every day at "
        "the farmers' market?",
        True,
    ),
]


def _store_history(count: int) -> None:
    """Store answered questions: yes/no ones whose samples disagreed, factual ones that agreed."""
    rows = []
    for index in range(count):
        disagreed = index % 2 == 0
        rows.append(
            ("Is the ocean salty?" if disagreed else "What is the capital of Peru?", disagreed)
        )
    _store_rows(rows)


def _store_rows(rows: list[tuple[str, bool]]) -> None:
    """Store answered questions with the features of each text and the given disagreement."""
    url = get_settings().resolved_database_url
    upgrade(url)
    engine = create_db_engine(url)
    with session_scope(engine) as session:
        user = User(platform="cli", platform_user_id="history")
        session.add(user)
        session.flush()
        assert user.id is not None
        for text, disagreed in rows:
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
    assert lines[4] == f"saved the weights to {path}; undo with `ponder calibrate --reset`"
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

    result = CliRunner().invoke(app, ["calibrate", "--min-questions", "10", "--force", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "dry run; nothing changed"


def test_calibrate_minimum_below_floor_needs_force(ponder_env: dict[str, str]) -> None:
    _store_history(10)

    result = CliRunner().invoke(app, ["calibrate", "--min-questions", "5"])

    assert result.exit_code == 1
    assert result.stderr == (
        "error: minimum of 5 questions is below the floor of 20, where the cross-validated "
        "AUROC is too unreliable to decide on saving; raise --min-questions, or pass --force "
        "to refit anyway\n"
    )
    assert not fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"])).exists()


def test_calibrate_keeps_weights_not_better(ponder_env: dict[str, str]) -> None:
    # Seven questions: the refit ranks them perfectly in-sample, but worse than the defaults
    # when each question is scored by a fit that did not see it.
    _store_rows(SMALL_HISTORY)

    result = CliRunner().invoke(app, ["calibrate", "--min-questions", "5", "--force"])

    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[1:] == [
        "AUROC before the refit: 0.833",
        "AUROC after the refit:  1.000 (in-sample)",
        "AUROC after the refit:  0.667 (5-fold cross-validated)",
        "kept the current weights: cross-validated AUROC 0.667 is not better than 0.833",
    ]
    assert not fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"])).exists()


def test_calibrate_reset_deletes_weights(ponder_env: dict[str, str]) -> None:
    _store_history(24)
    assert CliRunner().invoke(app, ["calibrate"]).exit_code == 0
    path = fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"]))

    result = CliRunner().invoke(app, ["calibrate", "--reset"])

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"deleted {path}; the shipped default weights apply from the next question\n"
    )
    assert not path.exists()


def test_calibrate_reset_json_without_weights(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["calibrate", "--reset", "--json"])

    payload = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert payload["deleted"] is False
    assert payload["path"] == str(fitted_weights_path(Path(ponder_env["PONDER_DATA_DIR"])))


def test_calibrate_help_keeps_sentences_whole(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "250"})

    assert result.exit_code == 0, result.output
    assert "whose samples disagreed scores higher than one whose samples agreed" in result.stdout
    assert "Undo a saved refit with --reset." in result.stdout
