"""The registry of strategies by name."""

from __future__ import annotations

from core.errors import UnknownStrategyError
from core.strategies.base import Strategy
from core.strategies.best_of_n import BestOfNStrategy
from core.strategies.chain_of_thought import ChainOfThoughtStrategy
from core.strategies.direct import DirectStrategy
from core.strategies.self_consistency import SelfConsistencyStrategy
from core.strategies.self_refine import SelfRefineStrategy
from core.strategies.tree_search import TreeSearchStrategy

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        DirectStrategy(),
        ChainOfThoughtStrategy(),
        SelfConsistencyStrategy(),
        BestOfNStrategy(),
        SelfRefineStrategy(),
        TreeSearchStrategy(),
    )
}


def get_strategy(name: str) -> Strategy:
    """Return the strategy called `name`, or raise an error that lists the valid names."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}"
        ) from None


def strategy_names() -> list[str]:
    return list(STRATEGIES)
