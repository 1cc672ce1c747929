"""Tests for a whole benchmark run with a scripted model: rows, the three reports and the plot."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.bench import policies as policies_module
from core.bench.entries import build_entries
from core.bench.harness import BenchOutput, default_output_dir, run_bench
from core.bench.loading import BenchmarkError, BenchQuestion
from core.bench.policies import PolicyDecision
from core.bench.reporting import RESULT_COLUMNS
from core.bench.scoring import BenchRow
from core.errors import ModelTimeoutError
from core.llm.base import ChatMessage, SamplingOptions
from core.llm.scripted import ScriptedClient, ScriptedReply
from core.strategies.base import BudgetedClient, StrategyInput

QUESTIONS = [
    BenchQuestion(line=1, question="What is 2 + 3?", gold="5"),
    BenchQuestion(line=2, question="What is the capital of France?", gold="Paris"),
]
REPLIES = {
    "What is 2 + 3?": "The answer is 5.",
    "What is the capital of France?": "The answer is Rome.",
}
STARTED_AT = datetime(2025, 3, 1, 14, 25, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


POLICY_SEED = 7


def _reply(messages: list[ChatMessage], options: SamplingOptions) -> ScriptedReply:
    if options.seed == POLICY_SEED:
        return ScriptedReply("I think the answer is 6.")
    return ScriptedReply(REPLIES[messages[-1].content])


def _seeded_policy(options: dict[str, Any]) -> Any:
    async def policy(request: StrategyInput, client: BudgetedClient) -> PolicyDecision:
        return PolicyDecision(
            strategy="direct",
            options={"seed": POLICY_SEED},
            reason="seed chosen on purpose",
            difficulty="easy",
            budget_tokens=options.get("budget_tokens"),
        )

    return policy


async def _run(tmp_path: Path, names: list[str], client: ScriptedClient) -> BenchOutput:
    return await run_bench(
        QUESTIONS,
        build_entries(names, {}),
        client,
        budget_tokens=1000,
        directory=tmp_path / "out",
        questions_file="two.jsonl",
        command_line="ponder bench --questions two.jsonl",
        started_at=STARTED_AT,
    )


@pytest.fixture
def output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BenchOutput:
    monkeypatch.setitem(policies_module.POLICIES, "seeded", _seeded_policy)
    return asyncio.run(_run(tmp_path, ["direct", "seeded"], ScriptedClient(_reply)))


def _csv_rows(output: BenchOutput) -> list[dict[str, str]]:
    with output.results_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_results_csv_columns(output: BenchOutput) -> None:
    with output.results_path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))

    assert header == list(RESULT_COLUMNS)
    assert header[:9] == [
        "question",
        "gold",
        "strategy",
        "answer",
        "correct",
        "prompt_tokens",
        "completion_tokens",
        "calls",
        "seconds",
    ]


def test_results_csv_direct_rows(output: BenchOutput) -> None:
    rows = [row for row in _csv_rows(output) if row["strategy"] == "direct"]

    # Prompt tokens: the question's words plus 4 for the message; completion: the reply's words.
    assert [row["question"] for row in rows] == ["What is 2 + 3?", "What is the capital of France?"]
    assert [row["gold"] for row in rows] == ["5", "Paris"]
    assert [row["answer"] for row in rows] == ["5", "Rome"]
    assert [row["correct"] for row in rows] == ["1", "0"]
    assert [row["prompt_tokens"] for row in rows] == ["9", "10"]
    assert [row["completion_tokens"] for row in rows] == ["4", "4"]
    assert [row["calls"] for row in rows] == ["1", "1"]
    assert [row["stop_reason"] for row in rows] == ["completed", "completed"]
    assert [row["samples"] for row in rows] == ["1", "1"]
    assert [row["agreement"] for row in rows] == ["", ""]
    assert [row["chosen_strategy"] for row in rows] == ["direct", "direct"]
    assert [row["line"] for row in rows] == ["1", "2"]


def test_results_csv_policy_rows(output: BenchOutput) -> None:
    rows = [row for row in _csv_rows(output) if row["strategy"] == "seeded"]

    # The policy's seed makes the scripted model reply "I think the answer is 6." to both.
    assert [row["chosen_strategy"] for row in rows] == ["direct", "direct"]
    assert [row["answer"] for row in rows] == ["6", "6"]
    assert [row["correct"] for row in rows] == ["0", "0"]
    assert [row["completion_tokens"] for row in rows] == ["6", "6"]
    assert [row["stop_reason"] for row in rows] == ["completed", "completed"]
    assert [row["reason"] for row in rows] == ["seed chosen on purpose"] * 2
    assert [row["difficulty"] for row in rows] == ["easy", "easy"]


def test_rows_interleave_entries_per_question(output: BenchOutput) -> None:
    assert [(row.line, row.strategy) for row in output.rows] == [
        (1, "direct"),
        (1, "seeded"),
        (2, "direct"),
        (2, "seeded"),
    ]


def test_summary_markdown_table(output: BenchOutput) -> None:
    lines = output.summary_markdown_path.read_text(encoding="utf-8").splitlines()

    # direct: 1 of 2 right, tokens (9 + 4 + 10 + 4) / 2 = 13.5, completion (4 + 4) / 2 = 4.0.
    # seeded: 0 of 2 right, tokens (9 + 6 + 10 + 6) / 2 = 15.5, completion 6.0.
    assert "| direct | 2 | 1 | 50.0% | 13.5 | 4.0 | 1.00 | 0.00 | 0 |" in lines
    assert "| seeded | 2 | 0 | 0.0% | 15.5 | 6.0 | 1.00 | 0.00 | 0 |" in lines


def test_summary_markdown_facts(output: BenchOutput) -> None:
    lines = output.summary_markdown_path.read_text(encoding="utf-8").splitlines()

    assert "- Questions: two.jsonl (2 questions)" in lines
    assert "- Model: scripted" in lines
    assert "- Command: `ponder bench --questions two.jsonl`" in lines
    assert "- Date: 2025-03-01T14:25:00+00:00" in lines
    assert "- Budget: 1000 tokens per question" in lines
    assert "- Options: direct: max_tokens=512, temperature=0.0, seed=0; seeded: defaults" in lines
    assert any(line.startswith("- Machine: ") and " CPUs (" in line for line in lines)


def test_summary_json(output: BenchOutput) -> None:
    payload = json.loads(output.summary_json_path.read_text(encoding="utf-8"))

    assert payload["model"] == "scripted"
    assert payload["question_count"] == 2
    assert payload["strategies"][0]["strategy"] == "direct"
    assert payload["strategies"][0]["accuracy"] == 0.5
    assert payload["strategies"][0]["mean_tokens"] == 13.5
    assert payload["strategies"][1]["strategy"] == "seeded"
    assert payload["strategies"][1]["mean_calls"] == 1.0


def test_plot_is_valid_png(output: BenchOutput) -> None:
    data = output.plot_path.read_bytes()

    assert data[:8] == PNG_SIGNATURE
    with Image.open(output.plot_path) as image:
        image.verify()
    with Image.open(output.plot_path) as image:
        assert image.size == (840, 540)


def test_model_error_recorded_in_row(tmp_path: Path) -> None:
    def fail(messages: list[ChatMessage], options: SamplingOptions) -> ScriptedReply:
        if "France" in messages[-1].content:
            raise ModelTimeoutError("model call timed out after 120 s")
        return ScriptedReply("5")

    output = asyncio.run(_run(tmp_path, ["direct"], ScriptedClient(fail)))

    assert [row.error for row in output.rows] == ["", "model call timed out after 120 s"]
    assert [row.stop_reason for row in output.rows] == ["completed", "error"]
    assert output.summaries[0].errors == 1
    assert output.summaries[0].correct == 1


def test_existing_results_not_overwritten(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "results.csv").write_text("old\n")

    with pytest.raises(BenchmarkError) as raised:
        asyncio.run(_run(tmp_path, ["direct"], ScriptedClient(_reply)))

    assert str(raised.value) == (
        f"output folder {str(directory)!r} already contains results.csv; "
        "pass another folder to --out or remove the old results"
    )
    assert (directory / "results.csv").read_text() == "old\n"


def test_default_output_dir_uses_timestamp() -> None:
    assert default_output_dir(STARTED_AT) == Path("bench-out/20250301-142500")


def test_results_csv_grows_during_run(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    lines_seen: list[int] = []

    def count_lines(row: BenchRow) -> None:
        with (directory / "results.csv").open(newline="", encoding="utf-8") as handle:
            lines_seen.append(len(list(csv.reader(handle))))

    asyncio.run(
        run_bench(
            QUESTIONS,
            build_entries(["direct"], {}),
            ScriptedClient(_reply),
            budget_tokens=1000,
            directory=directory,
            questions_file="two.jsonl",
            command_line="ponder bench",
            on_row=count_lines,
        )
    )

    # The header plus every finished row is on disk when each run reports.
    assert lines_seen == [2, 3]


def test_policy_budget_caps_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(policies_module.POLICIES, "seeded", _seeded_policy)
    entries = build_entries(["seeded"], {"seeded.budget_tokens": 20})

    output = asyncio.run(
        run_bench(
            QUESTIONS[:1],
            entries,
            ScriptedClient(_reply),
            budget_tokens=1000,
            directory=tmp_path / "out",
            questions_file="one.jsonl",
            command_line="ponder bench",
        )
    )

    # 20 tokens minus the 9-token prompt leaves 11, below the 16 a call needs, so no call runs.
    [row] = output.rows
    assert row.calls == 0
    assert row.stop_reason == "budget_exhausted"
    assert row.correct is False
