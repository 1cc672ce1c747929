"""Tests for choosing strategies and their options from `ponder ask` and `ponder strategies`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bots.cli.main import app
from core.strategies.registry import STRATEGIES


def test_strategies_lists_every_strategy(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["strategies"])

    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed == [
        "direct",
        "chain_of_thought",
        "self_consistency",
        "best_of_n",
        "self_refine",
        "tree_search",
    ]
    assert listed == list(STRATEGIES)


def test_unknown_option_lists_known_options(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["ask", "--strategy", "self_consistency", "--set", "sample=4", "What is 2 + 3?"]
    )

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: invalid --set: unknown option(s) 'sample' for strategy 'self_consistency'; "
        "known options: base_seed, confidence, early_stop, max_tokens, samples, stop_rule, "
        "temperature, window"
    )


def test_invalid_option_value_reported(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app, ["ask", "--strategy", "self_consistency", "--set", "stop_rule=vote", "What is 2?"]
    )

    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: invalid --set: invalid option value for strategy 'self_consistency': stop_rule: "
    )


@pytest.mark.model
def test_ask_self_consistency_end_to_end(ponder_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "--json",
            "--strategy",
            "self_consistency",
            "--set",
            "samples=4",
            "--set",
            "max_tokens=96",
            "What is 2 + 3?",
        ],
    )

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["strategy"] == "self_consistency"
    assert 1 <= payload["calls"] <= 4
    assert payload["answer"]
    assert payload["stop_reason"] in {"completed", "early_stop", "budget_exhausted"}
