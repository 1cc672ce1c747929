"""The compute planner: from difficulty, effort, budget and queue depth to a strategy and a budget.

The policy follows the compute-optimal idea of Snell et al. 2024, "Scaling LLM Test-Time Compute
Optimally can be More Effective than Scaling Model Parameters": which strategy pays best depends
on the question's difficulty and on the budget. Easy questions get a direct answer, medium ones a
few voted samples, hard ones more samples. Each level maps to a row of the policy table: an
escalation ladder of rungs (strategy and options) and the share of the question's allowance
that the whole ladder may spend. The first rung runs; a later rung runs only when the samples so
far disagree (see `core.escalation`).

Budget arithmetic, in order:

    allowance = min(per-question cap, remaining budget)
    budget    = allowance * budget_share(level)
    budget    = budget / (1 + queue_depth / queue_half_depth)     # 8 waiting: half the budget
    budget    = clamp(budget, minimum, allowance)

where `minimum` is what a direct answer needs (the prompt plus MIN_ANSWER_TOKENS). When even the
minimum exceeds the allowance, the plan has `fits=False` and the caller rejects the question.
The policy table is the setting PONDER_POLICY (JSON); rows it leaves out keep DEFAULT_POLICY.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.difficulty import (
    LEVELS,
    DifficultyEstimate,
    DifficultyModel,
    Level,
    ProbeResult,
    apply_probe,
    run_probe,
)
from core.errors import ConfigurationError, PonderError
from core.schemas import Effort
from core.strategies.base import BudgetedClient, StrategyInput, parse_options
from core.strategies.registry import get_strategy

logger = logging.getLogger(__name__)

MIN_ANSWER_TOKENS = 64
DEFAULT_QUEUE_HALF_DEPTH = 8.0
DEFAULT_ESCALATE_BELOW = 0.6
# The probe requests at most 64 completion tokens per call, and makes a second call when the
# backend returns no logprobs.
PROBE_COMPLETION_TOKENS = 2 * 64
EFFORT_LEVEL_SHIFT: dict[str, int] = {"auto": 0, "low": -1, "medium": 0, "high": 1}
SAMPLE_COUNT_OPTIONS = ("samples", "n")
STRATEGY_LABELS: dict[str, str] = {
    "direct": "direct answer",
    "chain_of_thought": "chain of thought",
    "self_consistency": "self-consistency",
    "best_of_n": "best-of-n",
    "self_refine": "self-refine",
    "tree_search": "tree search",
}


class Rung(BaseModel):
    """One step of an escalation ladder.

    `share` is the fraction of the plan's budget that this rung and the ones before it may
    spend together. The last rung may always spend the whole budget.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    options: dict[str, Any] = Field(default_factory=dict)
    share: float = Field(default=1.0, gt=0, le=1)

    @property
    def sample_count(self) -> int:
        """Return the model calls this rung makes at least: its samples, or 1."""
        for name in SAMPLE_COUNT_OPTIONS:
            value = self.options.get(name)
            if isinstance(value, int) and value > 0:
                return value
        return 1

    def describe(self) -> str:
        """Return the rung as the plan's reason shows it, for example "self-consistency with 3
        samples"."""
        label = STRATEGY_LABELS.get(self.strategy, self.strategy.replace("_", "-"))
        count = self.sample_count
        if self.strategy == "best_of_n":
            return f"best-of-{count}"
        return f"{label} with {count} samples" if count > 1 else label


class PolicyRow(BaseModel):
    """The policy for one difficulty level: an escalation ladder and a share of the allowance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rungs: tuple[Rung, ...] = Field(min_length=1)
    budget_share: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _check_shares(self) -> PolicyRow:
        shares = [rung.share for rung in self.rungs]
        if shares != sorted(shares):
            raise ValueError(f"rung shares must not decrease along the ladder, got {shares}")
        return self


class Policy(BaseModel):
    """The policy table: one row per difficulty level, plus escalation and queue settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trivial: PolicyRow
    easy: PolicyRow
    medium: PolicyRow
    hard: PolicyRow
    escalate_below: float = Field(
        default=DEFAULT_ESCALATE_BELOW,
        gt=0,
        le=1,
        description="Escalate when the winning answer's share of the votes is below this.",
    )
    queue_half_depth: float = Field(
        default=DEFAULT_QUEUE_HALF_DEPTH,
        gt=0,
        description="Queue length at which every budget is halved.",
    )

    def row(self, level: Level) -> PolicyRow:
        row: PolicyRow = getattr(self, level)
        return row


DEFAULT_POLICY = Policy(
    trivial=PolicyRow(
        rungs=(Rung(strategy="direct", options={"max_tokens": 128}),), budget_share=0.05
    ),
    easy=PolicyRow(
        rungs=(Rung(strategy="direct", options={"max_tokens": 384}),), budget_share=0.15
    ),
    medium=PolicyRow(
        rungs=(
            Rung(
                strategy="self_consistency", options={"samples": 3, "max_tokens": 256}, share=0.45
            ),
            Rung(strategy="self_consistency", options={"samples": 4, "max_tokens": 256}),
        ),
        budget_share=0.4,
    ),
    hard=PolicyRow(
        rungs=(
            Rung(strategy="self_consistency", options={"samples": 4, "max_tokens": 384}, share=0.4),
            Rung(strategy="self_consistency", options={"samples": 6, "max_tokens": 384}),
        ),
        budget_share=0.8,
    ),
)


def load_policy(overrides: dict[str, Any]) -> Policy:
    """Return DEFAULT_POLICY with the rows and settings from PONDER_POLICY replaced.

    Raises ConfigurationError naming the problem when a row, strategy or option is invalid.
    """
    merged = {**DEFAULT_POLICY.model_dump(), **overrides}
    try:
        policy = Policy.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigurationError(
            f"PONDER_POLICY is invalid at {where or 'top level'}: {error['msg']}; see the "
            "policy table in the README"
        ) from exc
    for level in LEVELS:
        for rung in policy.row(level).rungs:
            try:
                strategy = get_strategy(rung.strategy)
                parse_options(strategy.name, strategy.options_type, rung.options)
            except PonderError as exc:
                raise ConfigurationError(f"PONDER_POLICY row {level!r}: {exc}") from exc
    return policy


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInput:
    """The planner's inputs.

    `ceiling_tokens` caps the final budget without shrinking the share it is computed from. A
    replan after the probe sets it to what the question's client has left.
    """

    estimate: DifficultyEstimate
    question_cap_tokens: int
    remaining_tokens: int | None
    effort: Effort = "auto"
    queue_depth: int = 0
    prompt_tokens: int = 0
    probe_worthwhile: bool = False
    ceiling_tokens: int | None = None

    @property
    def allowance_tokens(self) -> int:
        if self.remaining_tokens is None:
            return self.question_cap_tokens
        return min(self.question_cap_tokens, self.remaining_tokens)

    @property
    def minimum_tokens(self) -> int:
        """Return the tokens of the cheapest useful answer: the prompt plus a short reply."""
        return self.prompt_tokens + MIN_ANSWER_TOKENS


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A question's plan: the strategy to run, the tokens it may spend, and the reason.

    `strategy` and `options` are the first rung's. `reason` is the whole decision in one line.
    `summary` is the same without the difficulty, for the footnote, which shows `difficulty`
    on its own. `fits` is False when not even a direct answer fits the allowance; the caller
    then rejects the question with `reason`.
    """

    strategy: str
    budget_tokens: int
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    summary: str = ""
    difficulty: str | None = None
    level: Level | None = None
    estimate: DifficultyEstimate | None = None
    rungs: tuple[Rung, ...] = ()
    escalate_below: float = DEFAULT_ESCALATE_BELOW
    probe: bool = False
    fits: bool = True
    inputs: PlanInput | None = None

    @property
    def ladder(self) -> tuple[Rung, ...]:
        """Return the rungs to run; a plan without rungs runs its strategy once."""
        if self.rungs:
            return self.rungs
        return (Rung(strategy=self.strategy, options=dict(self.options)),)


def shifted_level(level: Level, effort: Effort) -> tuple[Level, bool]:
    """Move the level by the effort: low one cheaper, high one richer.

    Returns the level and whether high effort asked for more than the richest row, in which case
    the plan spends the whole allowance.
    """
    index = LEVELS.index(level) + EFFORT_LEVEL_SHIFT[effort]
    overflow = index > len(LEVELS) - 1
    return LEVELS[max(0, min(index, len(LEVELS) - 1))], overflow


def queue_factor(queue_depth: int, half_depth: float) -> float:
    """Return the budget multiplier for a queue: 1 when empty, 1/2 at `half_depth` waiting."""
    return 1.0 / (1.0 + max(queue_depth, 0) / half_depth)


def rung_minimum(rung: Rung, prompt_tokens: int) -> int:
    """Return the least tokens a rung needs: each of its calls with a short reply."""
    return rung.sample_count * (prompt_tokens + MIN_ANSWER_TOKENS)


def plan_question(inputs: PlanInput, policy: Policy) -> Plan:
    """Choose the ladder and budget for a question; never above the allowance."""
    estimate = inputs.estimate
    allowance = inputs.allowance_tokens
    minimum = inputs.minimum_tokens
    if allowance < minimum:
        return _no_fit_plan(inputs, policy.escalate_below)

    level, overflow = shifted_level(estimate.level, inputs.effort)
    budget, factor = _level_budget(inputs, policy, level, overflow=overflow)
    rungs = policy.row(level).rungs
    fitted_level = level
    while rung_minimum(rungs[0], inputs.prompt_tokens) > budget and fitted_level != "trivial":
        fitted_level = LEVELS[LEVELS.index(fitted_level) - 1]
        rungs = policy.row(fitted_level).rungs

    probe = (
        inputs.probe_worthwhile
        and inputs.effort == "auto"
        and fitted_level == level
        and _probe_fits(inputs, budget)
    )
    if probe:
        # The probe may move the question one level up, so reserve that level's budget too.
        harder, _ = shifted_level(level, "high")
        budget = max(budget, _level_budget(inputs, policy, harder, overflow=False)[0])
        budget = min(allowance, budget + _probe_tokens(inputs))

    reason, summary = _reason(inputs, level, fitted_level, rungs, budget, factor, probe=probe)
    return Plan(
        strategy=rungs[0].strategy,
        options=dict(rungs[0].options),
        budget_tokens=budget,
        reason=reason,
        summary=summary,
        difficulty=estimate.describe(),
        level=fitted_level,
        estimate=estimate,
        rungs=rungs,
        escalate_below=policy.escalate_below,
        probe=probe,
        inputs=inputs,
    )


def replan_after_probe(
    plan: Plan, estimate: DifficultyEstimate, policy: Policy, *, available_tokens: int
) -> Plan:
    """Plan again with the probed estimate, within what the first plan has left.

    `available_tokens` is what the question's budgeted client still has after the probe.
    """
    assert plan.inputs is not None, "replanning needs the plan's inputs"
    inputs = replace(
        plan.inputs, estimate=estimate, probe_worthwhile=False, ceiling_tokens=available_tokens
    )
    return plan_question(inputs, policy)


async def probe_and_replan(
    client: BudgetedClient,
    request: StrategyInput,
    plan: Plan,
    *,
    policy: Policy,
    model: DifficultyModel,
) -> Plan:
    """Run the difficulty probe when the plan requests it, then plan again with its result.

    The probe spends from `client`, and the client's budget is lowered to what the probe spent
    plus the new plan's budget, so the reservation's unused rest is returned when it settles.
    """
    if not plan.probe or plan.estimate is None:
        return plan
    probe = await run_probe(client, request)
    estimate = plan.estimate if probe is None else apply_probe(plan.estimate, probe, model)
    replanned = replan_after_probe(plan, estimate, policy, available_tokens=client.remaining_tokens)
    client.budget_tokens = min(client.budget_tokens, client.spent_tokens + replanned.budget_tokens)
    logger.info(
        "difficulty probe (%s): %s, score %.2f -> %.2f",
        "skipped" if probe is None else probe.kind,
        plan.estimate.level,
        plan.estimate.score,
        estimate.score,
    )
    return replanned


def forced_plan(inputs: PlanInput, strategy: str, options: dict[str, Any]) -> Plan:
    """Plan the strategy the asker chose: the whole allowance, no probe, no escalation."""
    if inputs.allowance_tokens < inputs.minimum_tokens:
        return _no_fit_plan(inputs, DEFAULT_ESCALATE_BELOW)
    label = STRATEGY_LABELS.get(strategy, strategy.replace("_", "-"))
    budget = inputs.allowance_tokens
    reason = f"strategy chosen by the asker: {label}, {budget:,} tokens"
    return Plan(
        strategy=strategy,
        options=dict(options),
        budget_tokens=budget,
        reason=reason,
        summary=reason,
        difficulty=inputs.estimate.describe(),
        level=inputs.estimate.level,
        estimate=inputs.estimate,
        inputs=inputs,
    )


def _level_budget(
    inputs: PlanInput, policy: Policy, level: Level, *, overflow: bool
) -> tuple[int, float]:
    allowance = inputs.allowance_tokens
    share = 1.0 if overflow else policy.row(level).budget_share
    factor = queue_factor(inputs.queue_depth, policy.queue_half_depth)
    budget = max(inputs.minimum_tokens, math.floor(allowance * share * factor))
    ceiling = allowance if inputs.ceiling_tokens is None else min(allowance, inputs.ceiling_tokens)
    return min(budget, ceiling), factor


def _probe_fits(inputs: PlanInput, budget: int) -> bool:
    estimate = inputs.estimate
    if estimate.probe is not None:
        return False
    return budget + _probe_tokens(inputs) <= inputs.allowance_tokens


def _probe_tokens(inputs: PlanInput) -> int:
    return 2 * inputs.prompt_tokens + PROBE_COMPLETION_TOKENS


def _no_fit_plan(inputs: PlanInput, escalate_below: float) -> Plan:
    allowance = inputs.allowance_tokens
    reason = (
        f"budget too small: a direct answer needs about {inputs.minimum_tokens:,} tokens, "
        f"{allowance:,} left"
    )
    return Plan(
        strategy="direct",
        budget_tokens=0,
        reason=reason,
        summary=reason,
        difficulty=inputs.estimate.describe(),
        level=inputs.estimate.level,
        estimate=inputs.estimate,
        escalate_below=escalate_below,
        fits=False,
        inputs=inputs,
    )


def _reason(
    inputs: PlanInput,
    level: Level,
    fitted_level: Level,
    rungs: tuple[Rung, ...],
    budget: int,
    factor: float,
    *,
    probe: bool,
) -> tuple[str, str]:
    """Write the plan's reason and its footnote summary, which leaves out the difficulty.

    For example "hard question (0.78), high effort: self-consistency with 4 samples, up to 10
    if they disagree, 6,400 tokens", summarized as "high effort: self-consistency with …".
    """
    qualifiers: list[str] = []
    if inputs.effort != "auto":
        shift = f" → {level}" if level != inputs.estimate.level else ""
        qualifiers.append(f"{inputs.effort} effort{shift}")
    if inputs.estimate.probe is not None:
        qualifiers.append(describe_probe(inputs.estimate.probe))

    parts = [rungs[0].describe()]
    if fitted_level != level:
        parts = [f"budget allows only {rungs[0].describe()}"]
    if len(rungs) > 1:
        total = sum(rung.sample_count for rung in rungs)
        if all(rung.strategy == rungs[0].strategy for rung in rungs):
            parts.append(f"up to {total} if they disagree")
        else:
            parts.append(f"then {rungs[1].describe()} if they disagree")
    if probe:
        parts.append("probe first")
    parts.append(f"{budget:,} tokens")
    body = ", ".join(parts)
    if factor < 1.0:
        body += f" (queue of {inputs.queue_depth}: budget ×{factor:.2f})"

    lead = "".join(f", {qualifier}" for qualifier in qualifiers)
    reason = f"{inputs.estimate.level} question ({inputs.estimate.score:.2f}){lead}: {body}"
    summary = f"{', '.join(qualifiers)}: {body}" if qualifiers else body
    return reason, summary


def describe_probe(probe: ProbeResult) -> str:
    """Return what the probe found, for the plan's reason."""
    if probe.kind == "logprobs":
        return f"probe confidence {probe.confidence:.2f}"
    return "probe answers agree" if probe.confidence >= 1.0 else "probe answers differ"
