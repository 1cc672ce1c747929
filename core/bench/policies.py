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

from core.difficulty import default_model, estimate_difficulty
from core.errors import StrategyOptionError
from core.escalation import LadderStrategy
from core.planner import DEFAULT_POLICY, PlanInput, plan_question, probe_and_replan
from core.schemas import EFFORTS
from core.strategies.base import BudgetedClient, Strategy, StrategyInput


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecision:
    """A policy's choice for one question: the strategy, its options and a budget.

    `budget_tokens` caps what the strategy may spend, on top of what the policy already spent;
    None leaves the run's per-question budget. `reason` and `difficulty` go to the results.
    `runner` is a strategy object to run in place of the registry's `strategy`, for a policy
    whose choice is not a single registered strategy, such as the planner's escalation ladder.
    """

    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    budget_tokens: int | None = None
    reason: str = ""
    difficulty: str | None = None
    runner: Strategy | None = None


Policy = Callable[[StrategyInput, BudgetedClient], PolicyDecision | Awaitable[PolicyDecision]]
PolicyFactory = Callable[[dict[str, Any]], Policy]

AUTO_POLICY_OPTIONS = ("effort", "queue_depth")


def make_auto_policy(options: dict[str, Any]) -> Policy:
    """Return Ponder's difficulty-aware policy: the planner, its probe and escalation ladder.

    It uses DEFAULT_POLICY and the shipped difficulty weights, so that runs compare across
    machines. PONDER_POLICY and calibrated weights do not apply. The run's per-question budget
    plays the per-question cap, with no per-user limit. Options: `effort` (auto, low, medium or
    high) and `queue_depth` (questions waiting, which shrinks budgets as in production).
    """
    unknown = sorted(set(options) - set(AUTO_POLICY_OPTIONS))
    if unknown:
        raise StrategyOptionError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for policy 'auto'; "
            f"known options: {', '.join(AUTO_POLICY_OPTIONS)}"
        )
    effort = options.get("effort", "auto")
    if effort not in EFFORTS:
        raise StrategyOptionError(
            f"invalid effort {effort!r} for policy 'auto'; valid values: {', '.join(EFFORTS)}"
        )
    queue_depth = options.get("queue_depth", 0)
    if not isinstance(queue_depth, int) or queue_depth < 0:
        raise StrategyOptionError(
            f"invalid queue_depth {queue_depth!r} for policy 'auto'; give a whole number >= 0"
        )
    model = default_model()
    ladder = LadderStrategy()

    async def decide(request: StrategyInput, client: BudgetedClient) -> PolicyDecision:
        estimate = estimate_difficulty(request.question, model)
        inputs = PlanInput(
            estimate=estimate,
            question_cap_tokens=client.remaining_tokens,
            remaining_tokens=None,
            effort=effort,
            queue_depth=queue_depth,
            prompt_tokens=client.count_tokens(request.messages()),
            probe_worthwhile=model.is_worth_probing(estimate.score),
        )
        plan = plan_question(inputs, DEFAULT_POLICY)
        plan = await probe_and_replan(client, request, plan, policy=DEFAULT_POLICY, model=model)
        return PolicyDecision(
            strategy=ladder.name,
            options={
                "rungs": [rung.model_dump() for rung in plan.ladder],
                "escalate_below": plan.escalate_below,
            },
            budget_tokens=plan.budget_tokens,
            reason=plan.reason,
            difficulty=plan.difficulty,
            runner=ladder,
        )

    return decide


POLICIES: dict[str, PolicyFactory] = {"auto": make_auto_policy}
