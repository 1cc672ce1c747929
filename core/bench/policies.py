"""Named policies: benchmark entries that pick a strategy, its options and a budget per question.

A policy is the benchmark's view of a planner. Where a strategy entry runs one strategy with the
same options on every question, a policy entry first calls its policy with the question and the
question's budgeted client, then runs the strategy the policy chose on that same client. Tokens
the policy spends itself (for example on a model call that rates difficulty) therefore count in
the question's cost.

To benchmark a planner, add a factory to `POLICIES`:

    POLICIES["planner"] = make_planner_policy

The factory receives the options given as `--set planner.KEY=VALUE`, with each value already
parsed as JSON where it parses, and returns the policy. It raises StrategyOptionError on an
option it does not define. Options given without a prefix go to strategy entries only, never to
policies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.strategies.base import BudgetedClient, StrategyInput


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecision:
    """A policy's choice for one question: the strategy, its options and a budget.

    `budget_tokens` caps what the strategy may spend, on top of what the policy already spent;
    None leaves the run's per-question budget. `reason` and `difficulty` go to the results.
    """

    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    budget_tokens: int | None = None
    reason: str = ""
    difficulty: str | None = None


Policy = Callable[[StrategyInput, BudgetedClient], PolicyDecision | Awaitable[PolicyDecision]]
PolicyFactory = Callable[[dict[str, Any]], Policy]

POLICIES: dict[str, PolicyFactory] = {}
