"""Tests for resolving `--strategies` names and validating `--set` options into entries."""

from __future__ import annotations

from typing import Any

import pytest

from core.bench import policies as policies_module
from core.bench.entries import PolicyEntry, StrategyEntry, build_entries, entry_names
from core.bench.policies import PolicyDecision
from core.errors import StrategyOptionError, UnknownStrategyError
from core.strategies.base import BudgetedClient, StrategyInput
from core.strategies.direct import DirectOptions


def _always_direct(options: dict[str, Any]) -> Any:
    def policy(request: StrategyInput, client: BudgetedClient) -> PolicyDecision:
        return PolicyDecision(strategy="direct", options=options)

    return policy


def test_strategy_gets_shared_options() -> None:
    [entry] = build_entries(["direct"], {"max_tokens": 64, "seed": 3})

    assert isinstance(entry, StrategyEntry)
    assert entry.name == "direct"
    assert entry.options == DirectOptions(max_tokens=64, seed=3)


def test_scoped_option_overrides_shared() -> None:
    [entry] = build_entries(["direct"], {"max_tokens": 64, "direct.max_tokens": 32})

    assert isinstance(entry, StrategyEntry)
    assert entry.options == DirectOptions(max_tokens=32)


def test_unknown_option_lists_known_ones() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        build_entries(["direct"], {"samples": 16})

    assert str(raised.value) == (
        "unknown option(s) 'samples' for strategy 'direct'; "
        "known options: max_tokens, seed, temperature"
    )


def test_invalid_option_value_rejected() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        build_entries(["direct"], {"direct.max_tokens": "many"})

    assert str(raised.value) == (
        "invalid option value for strategy 'direct': max_tokens: Input should be a valid "
        "integer, unable to parse string as an integer"
    )


def test_option_scoped_to_absent_entry() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        build_entries(["direct"], {"self_consistency.samples": 16})

    assert str(raised.value) == (
        "option 'self_consistency.samples' is scoped to 'self_consistency', which is not in "
        "this run; entries in this run: direct"
    )


def test_scoped_option_without_name() -> None:
    with pytest.raises(StrategyOptionError) as raised:
        build_entries(["direct"], {"direct.": 1})

    assert str(raised.value) == "option 'direct.' has no name after '.'; write direct.KEY=VALUE"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownStrategyError) as raised:
        build_entries(["direct", "nope"], {})

    assert str(raised.value) == (
        f"unknown strategy or policy 'nope'; valid names: {', '.join(entry_names())}"
    )
    assert "direct" in entry_names()


def test_duplicate_name_rejected() -> None:
    with pytest.raises(UnknownStrategyError) as raised:
        build_entries(["direct", "direct"], {})

    assert str(raised.value) == "strategy 'direct' is listed more than once; list each name once"


def test_empty_name_list_rejected() -> None:
    with pytest.raises(UnknownStrategyError) as raised:
        build_entries([], {})

    assert str(raised.value).startswith("no strategies given; valid strategies and policies: ")


def test_policy_gets_only_scoped_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(policies_module.POLICIES, "fixed", _always_direct)

    entries = build_entries(["direct", "fixed"], {"seed": 5, "fixed.max_tokens": 8})

    assert isinstance(entries[1], PolicyEntry)
    assert entries[1].options == {"max_tokens": 8}
    assert entries[0].option_values == {"max_tokens": 512, "temperature": 0.0, "seed": 5}
    assert "fixed" in entry_names()
