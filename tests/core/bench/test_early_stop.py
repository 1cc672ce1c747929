"""Tests for the early-stopping comparison: replaying the stopping rule on a full run."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from core.bench.early_stop import (
    EarlyStopOutput,
    replay,
    run_early_stop_comparison,
    samples_from_result,
)
from core.bench.entries import StrategyEntry, build_entries
from core.bench.loading import BenchQuestion
from core.errors import StrategyOptionError
from core.llm.base import ChatMessage, SamplingOptions
from core.llm.scripted import ScriptedClient, ScriptedReply
from core.strategies.base import BudgetedClient, StrategyInput, StrategyResult
from core.strategies.self_consistency import SelfConsistencyOptions

# Answers by seed: "steady" always says 5; "late" says 7 once, then 5; "flip" says 7 four times,
# then 5, so an early stop after four paths returns 7 although the 16-path vote is 5.
ANSWERS_BY_QUESTION = {
    "steady": ["5"] * 16,
    "late": ["7"] + ["5"] * 15,
    "flip": ["7"] * 4 + ["5"] * 12,
}
QUESTIONS = [
    BenchQuestion(line=index + 1, question=name, gold="5")
    for index, name in enumerate(ANSWERS_BY_QUESTION)
]


def _reply(messages: list[ChatMessage], options: SamplingOptions) -> ScriptedReply:
    name = messages[-1].content.split("\n")[0]
    assert options.seed is not None
    return ScriptedReply(f"Some steps. Answer: {ANSWERS_BY_QUESTION[name][options.seed]}")


def _entry(**options: object) -> StrategyEntry:
    [entry] = build_entries(["self_consistency"], {"samples": 16, **options})
    assert isinstance(entry, StrategyEntry)
    return entry


def _compare(tmp_path: Path, entry: StrategyEntry) -> EarlyStopOutput:
    return asyncio.run(
        run_early_stop_comparison(
            QUESTIONS,
            entry,
            ScriptedClient(_reply),
            budget_tokens=100_000,
            directory=tmp_path / "out",
            questions_file="scripted.jsonl",
            command_line="ponder bench --compare-early-stop",
        )
    )


def test_replay_stop_points_per_rule(tmp_path: Path) -> None:
    output = _compare(tmp_path, _entry())

    # beta with confidence 0.95 and window 1: all 5 stops at 4 paths (31/32 >= 0.95). With one 7
    # first, 6 to 1 votes after 7 paths give P(Binomial(8, 1/2) <= 6) = 247/256 >= 0.95.
    # esc with window 4 stops at the first unanimous window: paths 1-4, 5-8 and 1-4.
    used = {(row.question, row.rule): row.samples_used for row in output.replays}
    assert used == {
        ("steady", "beta"): 4,
        ("steady", "esc"): 4,
        ("late", "beta"): 7,
        ("late", "esc"): 8,
        ("flip", "beta"): 4,
        ("flip", "esc"): 4,
    }


def test_replay_answers_against_full_vote(tmp_path: Path) -> None:
    output = _compare(tmp_path, _entry())

    rows = [row for row in output.replays if row.rule == "beta"]
    assert [row.full_answer for row in rows] == ["5", "5", "5"]
    assert [row.adaptive_answer for row in rows] == ["5", "5", "7"]
    assert [row.same_answer for row in rows] == [True, True, False]
    assert [row.adaptive_correct for row in rows] == [True, True, False]
    assert [row.total_samples for row in rows] == [16, 16, 16]


def test_replay_summary_fractions(tmp_path: Path) -> None:
    output = _compare(tmp_path, _entry())

    beta, esc = output.replay_summaries
    assert beta.rule == "beta"
    assert beta.same_answer == 2
    assert beta.stopped_early == 3
    assert beta.same_when_stopped_early == 2
    assert beta.mean_samples_used == 5.0
    assert beta.sample_fraction == 15 / 48
    assert beta.full_correct == 3
    assert beta.adaptive_correct == 2
    assert esc.rule == "esc"
    assert esc.sample_fraction == 16 / 48


def test_full_run_has_no_early_stop(tmp_path: Path) -> None:
    output = _compare(tmp_path, _entry(early_stop=True))

    assert [row.calls for row in output.rows] == [16, 16, 16]
    assert [row.stop_reason for row in output.rows] == ["completed"] * 3
    assert [row.agreement for row in output.rows] == ["16/16", "15/16", "12/16"]


def test_comparison_writes_reports(tmp_path: Path) -> None:
    output = _compare(tmp_path, _entry())

    with (output.directory / "early_stop.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert rows[0]["same_answer"] == "1"
    lines = (output.directory / "early_stop.md").read_text(encoding="utf-8").splitlines()
    assert "| beta | 3 | 2 (66.7%) | 3 | 2 of 3 | 5.00 | 31.2% | 31.2% | 3 | 2 |" in lines
    assert (output.directory / "results.csv").exists()
    assert (output.directory / "accuracy_vs_tokens.png").exists()


def _run_strategy(name: str, options: SelfConsistencyOptions) -> StrategyResult:
    client = BudgetedClient(ScriptedClient(_reply), budget_tokens=100_000)
    run = _entry().strategy.run(StrategyInput(question=name), client=client, options=options)
    return asyncio.run(run)


@pytest.mark.parametrize("stop_rule", ["beta", "esc"])
@pytest.mark.parametrize("name", list(ANSWERS_BY_QUESTION))
def test_replay_matches_adaptive_run(name: str, stop_rule: str) -> None:
    options = SelfConsistencyOptions.model_validate({"samples": 16, "stop_rule": stop_rule})

    adaptive = _run_strategy(name, options)
    full = _run_strategy(name, options.model_copy(update={"early_stop": False}))

    replayed = replay(samples_from_result(full), options, max_parallel=1)
    assert replayed.samples_used == adaptive.calls
    assert replayed.answer == adaptive.short_answer
    assert replayed.tokens == adaptive.total_tokens


def test_comparison_rejects_other_strategy(tmp_path: Path) -> None:
    [entry] = build_entries(["direct"], {})
    assert isinstance(entry, StrategyEntry)

    with pytest.raises(StrategyOptionError) as raised:
        _compare(tmp_path, entry)

    assert str(raised.value) == (
        "the early-stopping comparison runs self_consistency, not 'direct'; "
        "pass --strategies self_consistency"
    )
