"""`ponder bench`: run strategies and policies on a question set and write scored results."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bots.cli.common import fail, parse_assignments, reported_errors
from core.bench.early_stop import (
    FULL_SAMPLES,
    EarlyStopOutput,
    format_replay_table,
    run_early_stop_comparison,
)
from core.bench.entries import Entry, StrategyEntry, build_entries
from core.bench.harness import BenchOutput, default_output_dir, run_bench
from core.bench.loading import BenchQuestion, load_questions
from core.bench.reporting import format_summary_table
from core.bench.running import RowCallback
from core.bench.scoring import BenchRow
from core.config import Settings, get_settings
from core.errors import StrategyOptionError
from core.llm.factory import create_model_client
from core.strategies.registry import STRATEGIES

EARLY_STOP_STRATEGY = "self_consistency"


def bench(
    questions: Annotated[
        Path,
        typer.Option(
            "--questions",
            help="JSONL file with `question` and `answer` per line; GSM8K's `#### N` answers work.",
        ),
    ],
    strategies: Annotated[
        str | None,
        typer.Option(help="Comma-separated strategies or policies. Default: every strategy."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Option KEY=VALUE for every strategy, or NAME.KEY=VALUE for one; repeatable.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first K questions.")
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(min=1, help="Token budget per question. Default: PONDER_QUESTION_TOKEN_CAP."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder. Default: bench-out/<UTC timestamp>.")
    ] = None,
    compare_early_stop: Annotated[
        bool,
        typer.Option(
            help=(
                "With --strategies self_consistency: run 16 samples (or --set samples=N) without "
                "early stopping and replay each stopping rule on them."
            )
        ),
    ] = False,
) -> None:
    """Answer every question with every strategy and write results.csv, summary.md and a plot."""
    settings = get_settings()
    names = _split_names(strategies)
    assignments = parse_assignments(option)
    if compare_early_stop:
        if names != [EARLY_STOP_STRATEGY]:
            fail(
                f"--compare-early-stop needs --strategies {EARLY_STOP_STRATEGY} alone, "
                f"got {','.join(names)!r}",
                code=2,
            )
        assignments = {"samples": FULL_SAMPLES, **assignments}
    with reported_errors():
        loaded = load_questions(questions, limit=limit)
        entries = build_entries(names, assignments)
    run = BenchRun(
        settings=settings,
        questions=loaded,
        entries=entries,
        budget_tokens=budget or settings.question_token_cap,
        questions_file=str(questions),
        started_at=datetime.now(UTC),
        directory=out,
    )

    with reported_errors():
        if compare_early_stop:
            comparison = asyncio.run(_compare(run))
            typer.echo(format_replay_table(comparison.replay_summaries))
            typer.echo(f"\nresults written to {comparison.directory}")
            return
        output = asyncio.run(_run(run))
    typer.echo(format_summary_table(output.summaries))
    typer.echo(f"\nresults written to {output.directory}")


def _split_names(value: str | None) -> list[str]:
    if value is None:
        return list(STRATEGIES)
    return [name.strip() for name in value.split(",") if name.strip()]


def command_line() -> str:
    """Return this process's command line as `ponder ...`, quoted for a shell."""
    return shlex.join(["ponder", *sys.argv[1:]])


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchRun:
    """A validated `ponder bench` invocation, ready to run."""

    settings: Settings
    questions: Sequence[BenchQuestion]
    entries: Sequence[Entry]
    budget_tokens: int
    questions_file: str
    started_at: datetime
    directory: Path | None

    @property
    def output_dir(self) -> Path:
        return self.directory or default_output_dir(self.started_at)


@contextmanager
def progress_bar(total: int) -> Iterator[RowCallback]:
    """Show a tqdm bar on stderr with the correct answers so far; yield its row callback."""
    correct: dict[str, int] = {}
    with (
        logging_redirect_tqdm(),
        tqdm(total=total, unit="run", desc="bench", file=sys.stderr) as bar,
    ):

        def advance(row: BenchRow) -> None:
            correct[row.strategy] = correct.get(row.strategy, 0) + int(row.correct)
            bar.update(1)
            bar.set_postfix({f"{name} correct": count for name, count in correct.items()})

        yield advance


async def _run(run: BenchRun) -> BenchOutput:
    client = create_model_client(run.settings)
    try:
        with progress_bar(len(run.questions) * len(run.entries)) as advance:
            return await run_bench(
                run.questions,
                run.entries,
                client,
                budget_tokens=run.budget_tokens,
                directory=run.output_dir,
                questions_file=run.questions_file,
                command_line=command_line(),
                system_prompt=run.settings.system_prompt,
                started_at=run.started_at,
                on_row=advance,
            )
    finally:
        await client.close()


async def _compare(run: BenchRun) -> EarlyStopOutput:
    [entry] = run.entries
    if not isinstance(entry, StrategyEntry):
        raise StrategyOptionError(f"{entry.name!r} is a policy; the comparison needs a strategy")
    client = create_model_client(run.settings)
    try:
        with progress_bar(len(run.questions)) as advance:
            return await run_early_stop_comparison(
                run.questions,
                entry,
                client,
                budget_tokens=run.budget_tokens,
                directory=run.output_dir,
                questions_file=run.questions_file,
                command_line=command_line(),
                system_prompt=run.settings.system_prompt,
                started_at=run.started_at,
                on_row=advance,
            )
    finally:
        await client.close()
