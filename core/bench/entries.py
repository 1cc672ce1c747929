"""Turn `--strategies` names and `--set` options into validated benchmark entries.

An entry is one column of the results: a strategy with fixed options, or a named policy from
`core.bench.policies`. Options are validated here, for every entry, before any question runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core.bench.policies import POLICIES, Policy
from core.errors import StrategyOptionError, UnknownStrategyError
from core.strategies.base import Strategy, StrategyOptions, parse_options
from core.strategies.registry import STRATEGIES

logger = logging.getLogger(__name__)

SCOPE_SEPARATOR = "."


@dataclass(frozen=True, slots=True)
class StrategyEntry:
    """A strategy run with the same validated options on every question."""

    name: str
    strategy: Strategy
    options: StrategyOptions

    @property
    def option_values(self) -> dict[str, Any]:
        return self.options.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A named policy that picks a strategy and its options per question."""

    name: str
    policy: Policy
    options: dict[str, Any]

    @property
    def option_values(self) -> dict[str, Any]:
        return dict(self.options)


Entry = StrategyEntry | PolicyEntry


def entry_names() -> list[str]:
    """Return every name `--strategies` accepts: the strategies, then the policies."""
    return [*STRATEGIES, *(name for name in POLICIES if name not in STRATEGIES)]


def split_options(
    assignments: dict[str, Any], names: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split options into those for every strategy and those scoped as `NAME.KEY` to one entry."""
    shared: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in assignments.items():
        scope, separator, option = key.partition(SCOPE_SEPARATOR)
        if not separator:
            shared[key] = value
            continue
        if scope not in scoped:
            raise StrategyOptionError(
                f"option {key!r} is scoped to {scope!r}, which is not in this run; "
                f"entries in this run: {', '.join(names)}"
            )
        if not option:
            raise StrategyOptionError(
                f"option {key!r} has no name after {SCOPE_SEPARATOR!r}; "
                f"write {scope}{SCOPE_SEPARATOR}KEY=VALUE"
            )
        scoped[scope][option] = value
    return shared, scoped


def build_entries(names: list[str], assignments: dict[str, Any]) -> list[Entry]:
    """Resolve entry names and validate every entry's options.

    Options without a scope go to every strategy entry, and scoped ones override them for one
    entry. An option a strategy does not define raises StrategyOptionError, which lists the
    options it defines. An unknown name raises UnknownStrategyError, which lists the valid names.
    """
    if not names:
        raise UnknownStrategyError(
            f"no strategies given; valid strategies and policies: {', '.join(entry_names())}"
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UnknownStrategyError(
            f"strategy {duplicates[0]!r} is listed more than once; list each name once"
        )
    for name in names:
        if name not in STRATEGIES and name not in POLICIES:
            raise UnknownStrategyError(
                f"unknown strategy or policy {name!r}; valid names: {', '.join(entry_names())}"
            )

    shared, scoped = split_options(assignments, names)
    entries: list[Entry] = []
    for name in names:
        if name in STRATEGIES:
            strategy = STRATEGIES[name]
            raw = {**shared, **scoped[name]}
            options = parse_options(name, strategy.options_type, raw)
            entries.append(StrategyEntry(name, strategy, options))
        else:
            entries.append(PolicyEntry(name, POLICIES[name](scoped[name]), scoped[name]))
    return entries
