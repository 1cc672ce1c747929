"""Tests for the `auto` benchmark policy with a scripted model: plan, probe, escalation, options."""

from __future__ import annotations

import asyncio

import pytest

from core.bench.entries import PolicyEntry, build_entries
from core.bench.loading import BenchQuestion
from core.bench.running import run_entry
from core.errors import StrategyOptionError
from core.llm.scripted import ScriptedClient

HARD = BenchQuestion(
    line=1,
    question=(
        "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four. She sells the remainder at the farmers' "
        "market daily for $2 per fresh duck egg. How much in dollars does she make every day at "
        "the farmers' market?"
    ),
    gold="18",
)
MEDIUM = BenchQuestion(
    line=2,
    question=(
        "A baker makes 12 muffins and sells them for 3 dollars each. How much money does he make?"
    ),
    gold="36",
)


def _auto(options: dict[str, object] | None = None) -> PolicyEntry:
    scoped = {f"auto.{key}": value for key, value in (options or {}).items()}
    (entry,) = build_entries(["auto"], scoped)
    assert isinstance(entry, PolicyEntry)
    return entry


def test_auto_escalates_on_disagreement() -> None:
    samples = ["Answer: 18", "Answer: 18", "Answer: 20", "Answer: 21", *["Answer: 18"] * 4]
    client = ScriptedClient(samples)

    row = asyncio.run(run_entry(HARD, _auto(), client, budget_tokens=8_000))

    assert row.strategy == "auto"
    assert row.chosen_strategy == "self_consistency"
    assert row.correct is True
    assert row.calls == 8
    assert row.agreement == "6/8"
    assert row.difficulty.startswith("hard (")
    assert row.reason.endswith(
        "self-consistency with 4 samples, up to 10 if they disagree, 6,400 tokens"
    )


def test_auto_probe_counts_in_cost() -> None:
    # The probe's greedy and sampled answers agree, so the plan becomes one direct answer.
    client = ScriptedClient(["Answer: 36", "Answer: 36", "He makes 36 dollars. Answer: 36"])

    row = asyncio.run(run_entry(MEDIUM, _auto(), client, budget_tokens=8_000))

    assert row.chosen_strategy == "direct"
    assert row.calls == 3
    assert row.correct is True
    assert row.prompt_tokens == sum(
        client.count_tokens(list(call.messages)) for call in client.calls
    )
    assert "probe answers agree: direct answer, 1,200 tokens" in row.reason


def test_auto_low_effort_option() -> None:
    client = ScriptedClient(["Answer: 18"] * 3)

    row = asyncio.run(run_entry(HARD, _auto({"effort": "low"}), client, budget_tokens=8_000))

    assert row.calls == 3
    assert "low effort → medium: self-consistency with 3 samples" in row.reason


def test_auto_rejects_unknown_option() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        _auto({"samples": 4})

    assert str(raised.value) == (
        "unknown option(s) 'samples' for policy 'auto'; known options: effort, queue_depth"
    )


def test_auto_rejects_invalid_effort() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        _auto({"effort": "max"})

    assert str(raised.value) == (
        "invalid effort 'max' for policy 'auto'; valid values: auto, low, medium, high"
    )
