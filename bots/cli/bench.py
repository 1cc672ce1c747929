"""`ponder bench`: run strategies and policies on a question set and write scored results."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bots.cli.common import parse_assignments, reported_errors
from core.bench.entries import Entry, build_entries
from core.bench.harness import BenchOutput, default_output_dir, run_bench
from core.bench.loading import BenchQuestion, load_questions
from core.bench.reporting import format_summary_table
from core.bench.scoring import BenchRow
from core.config import Settings, get_settings
from core.llm.factory import create_model_client
from core.strategies.registry import STRATEGIES


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
) -> None:
    """Answer every question with every strategy and write results.csv, summary.md and a plot."""
    settings = get_settings()
    names = _split_names(strategies)
    assignments = parse_assignments(option)
    with reported_errors():
        loaded = load_questions(questions, limit=limit)
        entries = build_entries(names, assignments)
    started_at = datetime.now(UTC)
    directory = out or default_output_dir(started_at)
    budget_tokens = budget or settings.question_token_cap

    with reported_errors():
        output = asyncio.run(
            _run(settings, loaded, entries, budget_tokens, directory, str(questions), started_at)
        )
    typer.echo(format_summary_table(output.summaries))
    typer.echo(f"\nresults written to {output.directory}")


def _split_names(value: str | None) -> list[str]:
    if value is None:
        return list(STRATEGIES)
    return [name.strip() for name in value.split(",") if name.strip()]


def command_line() -> str:
    """Return this process's command line as `ponder ...`, quoted for a shell."""
    return shlex.join(["ponder", *sys.argv[1:]])


async def _run(
    settings: Settings,
    questions: Sequence[BenchQuestion],
    entries: Sequence[Entry],
    budget_tokens: int,
    directory: Path,
    questions_file: str,
    started_at: datetime,
) -> BenchOutput:
    client = create_model_client(settings)
    total = len(questions) * len(entries)
    correct: dict[str, int] = {}
    try:
        with (
            logging_redirect_tqdm(),
            tqdm(total=total, unit="run", desc="bench", file=sys.stderr) as bar,
        ):

            def advance(row: BenchRow) -> None:
                correct[row.strategy] = correct.get(row.strategy, 0) + int(row.correct)
                bar.update(1)
                bar.set_postfix(_postfix(correct), refresh=False)

            return await run_bench(
                questions,
                entries,
                client,
                budget_tokens=budget_tokens,
                directory=directory,
                questions_file=questions_file,
                command_line=command_line(),
                system_prompt=settings.system_prompt,
                started_at=started_at,
                on_row=advance,
            )
    finally:
        await client.close()


def _postfix(correct: dict[str, int]) -> dict[str, Any]:
    return {f"{name} correct": count for name, count in correct.items()}
