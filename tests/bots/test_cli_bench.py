"""Tests for `ponder bench`: input errors before any model call, and a real run on the model."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bots.cli.main import app
from tests.conftest import REPO_ROOT, ponder_executable

EASY_SET = REPO_ROOT / "benchmarks" / "easy.jsonl"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_option(ponder_env: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--questions",
            str(EASY_SET),
            "--strategies",
            "direct",
            "--set",
            "samples=16",
            "--out",
            str(tmp_path / "out"),
        ],
    )

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: unknown option(s) 'samples' for strategy 'direct'; "
        "known options: max_tokens, seed, temperature"
    )
    assert not (tmp_path / "out").exists()


def test_bench_reports_bad_line(ponder_env: dict[str, str], tmp_path: Path) -> None:
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"question": "a?", "answer": "1"}\n{"question": "b?"}\n')

    result = CliRunner().invoke(
        app, ["bench", "--questions", str(questions), "--strategies", "direct"]
    )

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {questions}, line 2: missing or empty 'answer'; each line needs non-empty "
        "question and answer strings"
    )


def test_bench_rejects_malformed_set(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["bench", "--questions", str(EASY_SET), "--strategies", "direct", "--set", "x"]
    )

    assert result.exit_code == 2
    assert "invalid --set value 'x'; write KEY=VALUE" in result.stderr


@pytest.mark.model
def test_bench_direct_on_three_easy_questions(ponder_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        ponder_executable(),
        "bench",
        "--questions",
        str(EASY_SET),
        "--strategies",
        "direct",
        "--limit",
        "3",
        "--out",
        str(out),
    ]

    finished = subprocess.run(
        command,
        env={**os.environ, **ponder_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["question"] for row in rows] == [
        "What is 2 + 3?",
        "What is 7 + 5?",
        "What is 10 - 4?",
    ]
    assert [row["strategy"] for row in rows] == ["direct", "direct", "direct"]
    assert [row["calls"] for row in rows] == ["1", "1", "1"]
    assert all(int(row["completion_tokens"]) > 0 for row in rows)
    assert all(row["correct"] in ("0", "1") for row in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert summary["strategies"][0]["questions"] == 3
    assert summary["command_line"] == (
        f"ponder bench --questions {EASY_SET} --strategies direct --limit 3 --out {out}"
    )
    assert "| direct | 3 | " in (out / "summary.md").read_text(encoding="utf-8")
    assert (out / "accuracy_vs_tokens.png").read_bytes()[:8] == PNG_SIGNATURE
    assert f"results written to {out}" in finished.stdout


def test_compare_early_stop_needs_self_consistency(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "--questions", str(EASY_SET), "--strategies", "direct", "--compare-early-stop"],
    )

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: --compare-early-stop needs --strategies self_consistency alone, got 'direct'"
    )
