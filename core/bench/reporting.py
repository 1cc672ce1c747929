"""Write a benchmark's results: results.csv, summary.md and summary.json."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.bench.scoring import BenchRow, EntrySummary

RESULTS_FILE_NAME = "results.csv"
SUMMARY_MARKDOWN_FILE_NAME = "summary.md"
SUMMARY_JSON_FILE_NAME = "summary.json"

RESULT_COLUMNS = (
    "question",
    "gold",
    "strategy",
    "answer",
    "correct",
    "prompt_tokens",
    "completion_tokens",
    "calls",
    "seconds",
    "stop_reason",
    "agreement",
    "samples",
    "chosen_strategy",
    "model_seconds",
    "reason",
    "difficulty",
    "error",
    "line",
    "answer_text",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """The facts about a run that a report states besides the numbers."""

    questions_file: str
    question_count: int
    model: str
    machine: str
    command_line: str
    started_at: datetime
    budget_tokens: int
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


def _csv_value(row: BenchRow, column: str) -> str | int:
    value = getattr(row, column)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value) if not isinstance(value, int) else value


@contextmanager
def results_csv_appender(path: Path) -> Iterator[Callable[[BenchRow], None]]:
    """Open a results CSV and yield a function that appends one row and flushes it.

    Rows reach the file as runs finish, so an interrupted benchmark keeps its finished rows.
    """
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RESULT_COLUMNS)
        handle.flush()

        def append(row: BenchRow) -> None:
            writer.writerow([_csv_value(row, column) for column in RESULT_COLUMNS])
            handle.flush()

        yield append


def write_results_csv(path: Path, rows: Sequence[BenchRow]) -> None:
    """Write one CSV row per question and entry; `correct` is 1 or 0, seconds have 3 decimals."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RESULT_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row, column) for column in RESULT_COLUMNS])


def format_summary_table(summaries: Sequence[EntrySummary]) -> str:
    """Return the per-entry figures as a Markdown table."""
    lines = [
        "| Strategy | Questions | Correct | Accuracy | Mean tokens | Mean completion tokens "
        "| Mean calls | Mean seconds | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        lines.append(
            f"| {summary.strategy} | {summary.questions} | {summary.correct} "
            f"| {100 * summary.accuracy:.1f}% | {summary.mean_tokens:.1f} "
            f"| {summary.mean_completion_tokens:.1f} | {summary.mean_calls:.2f} "
            f"| {summary.mean_seconds:.2f} | {summary.errors} |"
        )
    return "\n".join(lines)


def format_summary_markdown(info: RunInfo, summaries: Sequence[EntrySummary]) -> str:
    """Return summary.md: the run's facts, then the table."""
    options = "; ".join(
        f"{name}: {', '.join(f'{key}={value}' for key, value in values.items()) or 'defaults'}"
        for name, values in info.options.items()
    )
    return "\n".join(
        [
            "# Benchmark summary",
            "",
            f"- Questions: {info.questions_file} ({info.question_count} questions)",
            f"- Model: {info.model}",
            f"- Machine: {info.machine}",
            f"- Command: `{info.command_line}`",
            f"- Date: {info.started_at.isoformat(timespec='seconds')}",
            f"- Budget: {info.budget_tokens} tokens per question",
            f"- Options: {options}",
            "",
            "Tokens are prompt plus completion tokens per question, summed over all model calls;",
            "seconds are wall-clock seconds per question.",
            "",
            format_summary_table(summaries),
            "",
        ]
    )


def summary_payload(info: RunInfo, summaries: Sequence[EntrySummary]) -> dict[str, Any]:
    """Return summary.json's object: the run's facts and one object per entry."""
    return {
        "questions_file": info.questions_file,
        "question_count": info.question_count,
        "model": info.model,
        "machine": info.machine,
        "command_line": info.command_line,
        "started_at": info.started_at.isoformat(timespec="seconds"),
        "budget_tokens": info.budget_tokens,
        "options": info.options,
        "strategies": [{**asdict(summary), "accuracy": summary.accuracy} for summary in summaries],
    }


def write_summary_markdown(path: Path, info: RunInfo, summaries: Sequence[EntrySummary]) -> None:
    path.write_text(format_summary_markdown(info, summaries), encoding="utf-8")


def write_summary_json(path: Path, info: RunInfo, summaries: Sequence[EntrySummary]) -> None:
    path.write_text(
        json.dumps(summary_payload(info, summaries), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
