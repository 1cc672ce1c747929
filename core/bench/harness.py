"""Run a benchmark and write its output folder: the one function the CLI and the tests call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.bench.entries import Entry
from core.bench.loading import BenchmarkError, BenchQuestion
from core.bench.machine import describe_machine
from core.bench.plotting import PLOT_FILE_NAME, plot_accuracy_vs_tokens
from core.bench.reporting import (
    RESULTS_FILE_NAME,
    SUMMARY_JSON_FILE_NAME,
    SUMMARY_MARKDOWN_FILE_NAME,
    RunInfo,
    results_csv_appender,
    write_results_csv,
    write_summary_json,
    write_summary_markdown,
)
from core.bench.running import RowCallback, run_benchmark
from core.bench.scoring import BenchRow, EntrySummary, summarize
from core.llm.base import ModelClient

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_ROOT = Path("bench-out")


@dataclass(frozen=True, slots=True)
class BenchOutput:
    """A finished benchmark: its rows, the per-entry figures, and the files written."""

    rows: list[BenchRow]
    summaries: list[EntrySummary]
    directory: Path

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS_FILE_NAME

    @property
    def summary_markdown_path(self) -> Path:
        return self.directory / SUMMARY_MARKDOWN_FILE_NAME

    @property
    def summary_json_path(self) -> Path:
        return self.directory / SUMMARY_JSON_FILE_NAME

    @property
    def plot_path(self) -> Path:
        return self.directory / PLOT_FILE_NAME


def default_output_dir(now: datetime) -> Path:
    """Return bench-out/<UTC timestamp>, for example bench-out/20250301-142500."""
    return DEFAULT_OUTPUT_ROOT / now.strftime("%Y%m%d-%H%M%S")


def prepare_output_dir(directory: Path) -> None:
    """Create the output folder, rejecting one that already contains benchmark results."""
    if (directory / RESULTS_FILE_NAME).exists():
        raise BenchmarkError(
            f"output folder {str(directory)!r} already contains {RESULTS_FILE_NAME}; "
            "pass another folder to --out or remove the old results"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchmarkError(f"could not create output folder {str(directory)!r}: {exc}") from exc


def write_reports(directory: Path, info: RunInfo, rows: Sequence[BenchRow]) -> list[EntrySummary]:
    """Write results.csv, summary.md, summary.json and the plot; return the summaries."""
    summaries = summarize(rows)
    write_results_csv(directory / RESULTS_FILE_NAME, rows)
    write_summary_markdown(directory / SUMMARY_MARKDOWN_FILE_NAME, info, summaries)
    write_summary_json(directory / SUMMARY_JSON_FILE_NAME, info, summaries)
    plot_accuracy_vs_tokens(
        directory / PLOT_FILE_NAME,
        summaries,
        title=f"{Path(info.questions_file).name} ({info.question_count} questions), {info.model}",
    )
    return summaries


async def run_bench(
    questions: Sequence[BenchQuestion],
    entries: Sequence[Entry],
    client: ModelClient,
    *,
    budget_tokens: int,
    directory: Path,
    questions_file: str,
    command_line: str,
    system_prompt: str | None = None,
    started_at: datetime | None = None,
    on_row: RowCallback | None = None,
) -> BenchOutput:
    """Answer every question with every entry, then write the reports into `directory`.

    results.csv grows row by row during the run and is rewritten whole at the end.
    """
    prepare_output_dir(directory)
    info = RunInfo(
        questions_file=questions_file,
        question_count=len(questions),
        model=client.model_name,
        machine=describe_machine().describe(),
        command_line=command_line,
        started_at=started_at or datetime.now(UTC),
        budget_tokens=budget_tokens,
        options={entry.name: entry.option_values for entry in entries},
    )
    logger.info(
        "benchmark of %d questions with %s, %d tokens per question",
        len(questions),
        ", ".join(entry.name for entry in entries),
        budget_tokens,
    )
    with results_csv_appender(directory / RESULTS_FILE_NAME) as append_row:

        def record(row: BenchRow) -> None:
            append_row(row)
            if on_row is not None:
                on_row(row)

        rows = await run_benchmark(
            questions,
            entries,
            client,
            budget_tokens=budget_tokens,
            system_prompt=system_prompt,
            on_row=record,
        )
    summaries = write_reports(directory, info, rows)
    logger.info("benchmark results written to %s", directory)
    return BenchOutput(rows=rows, summaries=summaries, directory=directory)
