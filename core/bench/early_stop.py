"""Measure self_consistency's early stopping by replaying its stopping rule on full runs.

Comparing adaptive and full voting directly would run self_consistency twice per question. Path
i always uses seed `base_seed + i`, so the paths of an adaptive run are a prefix of the paths of
a full run with the same seeds. The comparison therefore runs all paths once, without early
stopping, and replays the stopping rule on growing prefixes of those paths. The first prefix
after which the rule fires is where an adaptive run stops, and the majority answer of that
prefix is the answer it returns.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.answers import normalize_answer
from core.bench.entries import StrategyEntry
from core.bench.harness import prepare_output_dir, write_reports
from core.bench.loading import BenchQuestion
from core.bench.machine import describe_machine
from core.bench.reporting import RESULTS_FILE_NAME, RunInfo, results_csv_appender
from core.bench.running import RowCallback, answer_question
from core.bench.scoring import BenchRow, EntrySummary, is_correct
from core.errors import StrategyOptionError
from core.llm.base import ChatResult, FinishReason, ModelClient
from core.strategies.base import StrategyResult
from core.strategies.sampling import Sample
from core.strategies.self_consistency import (
    SelfConsistencyOptions,
    StopRule,
    beta_rule,
    esc_rule,
    resolve_window,
    vote,
)

logger = logging.getLogger(__name__)

FULL_SAMPLES = 16
REPLAYED_RULES: tuple[StopRule, ...] = ("beta", "esc")
EARLY_STOP_CSV_FILE_NAME = "early_stop.csv"
EARLY_STOP_MARKDOWN_FILE_NAME = "early_stop.md"
EARLY_STOP_JSON_FILE_NAME = "early_stop.json"


@dataclass(frozen=True, slots=True)
class Replay:
    """Where a stopping rule stops on a sequence of paths, and the answer it returns there."""

    rule: StopRule
    samples_used: int
    answer: str
    tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyStopRow:
    """One question: the full vote against the vote of one stopping rule replayed on it."""

    line: int
    question: str
    gold: str
    rule: str
    total_samples: int
    samples_used: int
    full_answer: str
    adaptive_answer: str
    same_answer: bool
    full_correct: bool
    adaptive_correct: bool
    full_tokens: int
    adaptive_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyStopSummary:
    """The aggregate of one stopping rule over every question."""

    rule: str
    questions: int
    same_answer: int
    stopped_early: int
    same_when_stopped_early: int
    mean_samples_used: float
    sample_fraction: float
    token_fraction: float
    full_correct: int
    adaptive_correct: int


@dataclass(frozen=True, slots=True)
class EarlyStopOutput:
    """A finished comparison: the full runs' rows and reports, and the replay per rule."""

    rows: list[BenchRow]
    summaries: list[EntrySummary]
    replays: list[EarlyStopRow]
    replay_summaries: list[EarlyStopSummary]
    directory: Path


def samples_from_result(result: StrategyResult) -> list[Sample]:
    """Rebuild the sampled paths of a self_consistency result, in sampling order.

    Candidates keep each path's text, answer, tokens and seed. A path's finish reason, which
    decides whether it votes, comes from the call record with the same seed.
    """
    finish_by_seed: dict[int | None, FinishReason] = {
        record.seed: "length" if record.finish_reason == "length" else "stop"
        for record in result.call_log
    }
    samples: list[Sample] = []
    for index, candidate in enumerate(result.candidates):
        chat = ChatResult(
            text=candidate.text,
            prompt_tokens=candidate.prompt_tokens,
            completion_tokens=candidate.completion_tokens,
            model_seconds=0.0,
            finish_reason=finish_by_seed.get(candidate.seed, "stop"),
            model="",
            seed=candidate.seed,
        )
        seed = candidate.seed if candidate.seed is not None else index
        samples.append(Sample(index=index, seed=seed, result=chat, answer=candidate.answer))
    return samples


def stop_point(
    samples: Sequence[Sample], options: SelfConsistencyOptions, *, max_parallel: int
) -> int:
    """Return how many of the paths an adaptive run with these options samples before stopping.

    The rule is checked after each window of paths, as self_consistency does, and not once the
    maximum number of samples is reached.
    """
    window = resolve_window(options, max_parallel)
    for end in range(window, len(samples) + 1, window):
        if end >= options.samples:
            break
        if options.stop_rule == "esc":
            decision = esc_rule(list(samples[end - window : end]))
        else:
            tally, _, _ = vote(list(samples[:end]))
            decision = beta_rule(tally, confidence=options.confidence)
        if decision.stop:
            return end
    return len(samples)


def majority_answer(samples: Sequence[Sample]) -> str:
    """Return the answer self_consistency returns for these paths, "" when there are none."""
    tally, voters, _ = vote(list(samples))
    winner = tally.winner
    return voters[winner.indices[0]].answer if winner is not None else ""


def replay(
    samples: Sequence[Sample], options: SelfConsistencyOptions, *, max_parallel: int
) -> Replay:
    """Replay the options' stopping rule on the paths of a full run."""
    used = stop_point(samples, options, max_parallel=max_parallel)
    return Replay(
        rule=options.stop_rule,
        samples_used=used,
        answer=majority_answer(samples[:used]),
        tokens=sum(sample.result.total_tokens for sample in samples[:used]),
    )


def compare_question(
    question: BenchQuestion,
    result: StrategyResult,
    options: SelfConsistencyOptions,
    *,
    max_parallel: int,
    rules: Sequence[StopRule] = REPLAYED_RULES,
) -> list[EarlyStopRow]:
    """Compare the full vote of one question with each rule's replayed vote."""
    samples = samples_from_result(result)
    full_answer = majority_answer(samples)
    full_tokens = sum(sample.result.total_tokens for sample in samples)
    rows: list[EarlyStopRow] = []
    for rule in rules:
        rule_options = options.model_copy(update={"stop_rule": rule, "early_stop": True})
        replayed = replay(samples, rule_options, max_parallel=max_parallel)
        rows.append(
            EarlyStopRow(
                line=question.line,
                question=question.question,
                gold=question.gold,
                rule=rule,
                total_samples=len(samples),
                samples_used=replayed.samples_used,
                full_answer=full_answer,
                adaptive_answer=replayed.answer,
                same_answer=normalize_answer(full_answer) == normalize_answer(replayed.answer),
                full_correct=is_correct(full_answer, question.gold),
                adaptive_correct=is_correct(replayed.answer, question.gold),
                full_tokens=full_tokens,
                adaptive_tokens=replayed.tokens,
            )
        )
    return rows


def summarize_replays(rows: Sequence[EarlyStopRow]) -> list[EarlyStopSummary]:
    """Aggregate the replay rows per rule, in the order the rules first appear."""
    grouped: dict[str, list[EarlyStopRow]] = {}
    for row in rows:
        grouped.setdefault(row.rule, []).append(row)
    summaries: list[EarlyStopSummary] = []
    for rule, rule_rows in grouped.items():
        total_samples = sum(row.total_samples for row in rule_rows)
        total_tokens = sum(row.full_tokens for row in rule_rows)
        stopped = [row for row in rule_rows if row.samples_used < row.total_samples]
        summaries.append(
            EarlyStopSummary(
                rule=rule,
                questions=len(rule_rows),
                same_answer=sum(row.same_answer for row in rule_rows),
                stopped_early=len(stopped),
                same_when_stopped_early=sum(row.same_answer for row in stopped),
                mean_samples_used=sum(row.samples_used for row in rule_rows) / len(rule_rows),
                sample_fraction=(
                    sum(row.samples_used for row in rule_rows) / total_samples
                    if total_samples
                    else 0.0
                ),
                token_fraction=(
                    sum(row.adaptive_tokens for row in rule_rows) / total_tokens
                    if total_tokens
                    else 0.0
                ),
                full_correct=sum(row.full_correct for row in rule_rows),
                adaptive_correct=sum(row.adaptive_correct for row in rule_rows),
            )
        )
    return summaries


def full_run_options(entry: StrategyEntry) -> SelfConsistencyOptions:
    """Return the entry's options with early stopping off, or raise for another strategy."""
    if not isinstance(entry.options, SelfConsistencyOptions):
        raise StrategyOptionError(
            f"the early-stopping comparison runs self_consistency, not {entry.name!r}; "
            "pass --strategies self_consistency"
        )
    return entry.options.model_copy(update={"early_stop": False})


def format_replay_table(summaries: Sequence[EarlyStopSummary]) -> str:
    """Return the per-rule figures as a Markdown table."""
    lines = [
        "| Rule | Questions | Same answer as full vote | Stopped early | Same answer when "
        "stopped early | Mean samples used | Samples used | Tokens used | Full vote correct "
        "| Adaptive correct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        same_percent = 100 * summary.same_answer / summary.questions if summary.questions else 0
        lines.append(
            f"| {summary.rule} | {summary.questions} "
            f"| {summary.same_answer} ({same_percent:.1f}%) | {summary.stopped_early} "
            f"| {summary.same_when_stopped_early} of {summary.stopped_early} "
            f"| {summary.mean_samples_used:.2f} | {100 * summary.sample_fraction:.1f}% "
            f"| {100 * summary.token_fraction:.1f}% | {summary.full_correct} "
            f"| {summary.adaptive_correct} |"
        )
    return "\n".join(lines)


def write_replay_reports(
    directory: Path,
    info: RunInfo,
    options: SelfConsistencyOptions,
    rows: Sequence[EarlyStopRow],
    summaries: Sequence[EarlyStopSummary],
) -> None:
    """Write early_stop.csv, early_stop.md and early_stop.json."""
    columns = list(EarlyStopRow.__dataclass_fields__)
    with (directory / EARLY_STOP_CSV_FILE_NAME).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            values = asdict(row)
            writer.writerow([int(v) if isinstance(v, bool) else v for v in values.values()])

    markdown = [
        "# Early stopping of self_consistency",
        "",
        f"- Questions: {info.questions_file} ({info.question_count} questions)",
        f"- Model: {info.model}",
        f"- Machine: {info.machine}",
        f"- Command: `{info.command_line}`",
        f"- Date: {info.started_at.isoformat(timespec='seconds')}",
        f"- Full run: {options.samples} samples, temperature {options.temperature}, "
        f"base seed {options.base_seed}, confidence {options.confidence}",
        "",
        "Each rule is replayed on the full run's paths in seed order. A question where the rule",
        "never fires uses every sample and trivially keeps the full vote's answer, so the",
        "answers of the questions that stopped early are counted apart. Samples and tokens used",
        "are the adaptive runs' share of the full runs'.",
        "",
        format_replay_table(summaries),
        "",
    ]
    (directory / EARLY_STOP_MARKDOWN_FILE_NAME).write_text("\n".join(markdown), encoding="utf-8")
    payload: dict[str, Any] = {
        "questions_file": info.questions_file,
        "model": info.model,
        "command_line": info.command_line,
        "started_at": info.started_at.isoformat(timespec="seconds"),
        "options": options.model_dump(mode="json"),
        "rules": [asdict(summary) for summary in summaries],
    }
    (directory / EARLY_STOP_JSON_FILE_NAME).write_text(
        json.dumps(payload, indent=2) + "\n", encoding="utf-8"
    )


async def run_early_stop_comparison(
    questions: Sequence[BenchQuestion],
    entry: StrategyEntry,
    client: ModelClient,
    *,
    budget_tokens: int,
    directory: Path,
    questions_file: str,
    command_line: str,
    system_prompt: str | None = None,
    started_at: datetime | None = None,
    on_row: RowCallback | None = None,
) -> EarlyStopOutput:
    """Run self_consistency without early stopping on every question and replay each rule.

    Besides the early_stop files, the folder gets the usual reports of the full runs.
    """
    options = full_run_options(entry)
    full_entry = StrategyEntry(entry.name, entry.strategy, options)
    prepare_output_dir(directory)
    info = RunInfo(
        questions_file=questions_file,
        question_count=len(questions),
        model=client.model_name,
        machine=describe_machine().describe(),
        command_line=command_line,
        started_at=started_at or datetime.now(UTC),
        budget_tokens=budget_tokens,
        options={entry.name: full_entry.option_values},
    )

    rows: list[BenchRow] = []
    replays: list[EarlyStopRow] = []
    with results_csv_appender(directory / RESULTS_FILE_NAME) as append_row:
        for question in questions:
            outcome = await answer_question(
                question,
                full_entry,
                client,
                budget_tokens=budget_tokens,
                system_prompt=system_prompt,
            )
            rows.append(outcome.row)
            append_row(outcome.row)
            if outcome.result is not None:
                replays.extend(
                    compare_question(
                        question, outcome.result, options, max_parallel=client.max_parallel
                    )
                )
            if on_row is not None:
                on_row(outcome.row)

    summaries = write_reports(directory, info, rows)
    replay_summaries = summarize_replays(replays)
    write_replay_reports(directory, info, options, replays, replay_summaries)
    logger.info("early-stopping comparison written to %s", directory)
    return EarlyStopOutput(rows, summaries, replays, replay_summaries, directory)
