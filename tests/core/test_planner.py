"""Tests for the compute planner: the policy table, effort, budget limits and the queue."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from core.difficulty import (
    DifficultyEstimate,
    ProbeResult,
    apply_probe,
    default_model,
    extract_features,
)
from core.errors import ConfigurationError
from core.llm.scripted import ScriptedClient
from core.planner import (
    DEFAULT_POLICY,
    PlanInput,
    Rung,
    forced_plan,
    load_policy,
    plan_question,
    probe_and_replan,
    queue_factor,
    replan_after_probe,
)
from core.strategies.base import BudgetedClient, StrategyInput

CAP_TOKENS = 8_000
PROMPT_TOKENS = 40


def _estimate(score: float) -> DifficultyEstimate:
    return DifficultyEstimate(
        score=score,
        level=default_model().level(score),
        features=extract_features("x"),
        feature_score=score,
    )


def _inputs(
    score: float,
    *,
    remaining: int | None = 50_000,
    effort: str = "auto",
    queue_depth: int = 0,
    probe: bool = False,
) -> PlanInput:
    return PlanInput(
        estimate=_estimate(score),
        question_cap_tokens=CAP_TOKENS,
        remaining_tokens=remaining,
        effort=effort,  # type: ignore[arg-type]
        queue_depth=queue_depth,
        prompt_tokens=PROMPT_TOKENS,
        probe_worthwhile=probe,
    )


# (score, remaining, effort, queue depth) -> (strategy, budget tokens, samples)
PLAN_CASES = [
    ((0.03, None, "auto", 0), ("direct", 400, 1)),
    ((0.2, 50_000, "auto", 0), ("direct", 1_200, 1)),
    ((0.45, 50_000, "auto", 0), ("self_consistency", 3_200, 3)),
    ((0.8, 50_000, "auto", 0), ("self_consistency", 6_400, 4)),
    ((0.8, 50_000, "high", 0), ("self_consistency", 8_000, 4)),
    ((0.8, 50_000, "low", 0), ("self_consistency", 3_200, 3)),
    ((0.8, 50_000, "medium", 0), ("self_consistency", 6_400, 4)),
    ((0.2, 50_000, "high", 0), ("self_consistency", 3_200, 3)),
    ((0.2, 50_000, "low", 0), ("direct", 400, 1)),
    ((0.03, 50_000, "low", 0), ("direct", 400, 1)),
    ((0.8, 50_000, "auto", 8), ("self_consistency", 3_200, 4)),
    ((0.8, 50_000, "auto", 24), ("self_consistency", 1_600, 4)),
    ((0.8, 2_000, "auto", 0), ("self_consistency", 1_600, 4)),
    # 80 % of 500 is 400, below the 416 that 4 samples need at least, so one row cheaper.
    ((0.8, 500, "auto", 0), ("self_consistency", 400, 3)),
    # 160 tokens fit neither 4 nor 3 samples, so the plan is one direct call.
    ((0.8, 200, "auto", 0), ("direct", 160, 1)),
    # A long queue shrinks 400 to 29, but never below the direct minimum of 40 + 64.
    ((0.03, 50_000, "auto", 100), ("direct", 104, 1)),
    ((0.03, 104, "auto", 0), ("direct", 104, 1)),
]


@pytest.mark.parametrize(("case", "expected"), PLAN_CASES)
def test_plan_table(
    case: tuple[float, int | None, str, int], expected: tuple[str, int, int]
) -> None:
    score, remaining, effort, depth = case
    plan = plan_question(
        _inputs(score, remaining=remaining, effort=effort, queue_depth=depth), DEFAULT_POLICY
    )

    strategy, budget, samples = expected
    assert plan.fits is True
    assert plan.strategy == strategy
    assert plan.budget_tokens == budget
    assert plan.ladder[0].sample_count == samples


def test_plan_unfit_below_direct_minimum() -> None:
    plan = plan_question(_inputs(0.03, remaining=103), DEFAULT_POLICY)

    assert plan.fits is False
    assert plan.budget_tokens == 0
    assert plan.reason == "budget too small: a direct answer needs about 104 tokens, 103 left"


def test_plan_never_exceeds_allowance() -> None:
    scores = (0.03, 0.2, 0.45, 0.8)
    remainings = (None, 104, 150, 500, 3_000, 50_000)
    efforts = ("auto", "low", "medium", "high")
    depths = (0, 3, 50)
    for score, remaining, effort, depth in itertools.product(scores, remainings, efforts, depths):
        inputs = _inputs(score, remaining=remaining, effort=effort, queue_depth=depth, probe=True)
        plan = plan_question(inputs, DEFAULT_POLICY)
        assert plan.budget_tokens <= inputs.allowance_tokens, (score, remaining, effort, depth)
        assert plan.budget_tokens <= CAP_TOKENS


def test_reason_for_high_effort() -> None:
    plan = plan_question(_inputs(0.8, effort="high"), DEFAULT_POLICY)

    assert plan.reason == (
        "hard question (0.80), high effort: self-consistency with 4 samples, "
        "up to 10 if they disagree, 8,000 tokens"
    )
    assert plan.summary == (
        "high effort: self-consistency with 4 samples, up to 10 if they disagree, 8,000 tokens"
    )
    assert plan.difficulty == "hard (0.80)"


def test_reason_names_effort_shift_and_queue() -> None:
    plan = plan_question(_inputs(0.2, effort="high", queue_depth=8), DEFAULT_POLICY)

    assert plan.reason == (
        "easy question (0.20), high effort → medium: self-consistency with 3 samples, "
        "up to 7 if they disagree, 1,600 tokens (queue of 8: budget ×0.50)"
    )


def test_reason_when_budget_forces_cheaper_row() -> None:
    plan = plan_question(_inputs(0.8, remaining=200), DEFAULT_POLICY)

    assert plan.reason == "hard question (0.80): budget allows only direct answer, 160 tokens"
    assert plan.level == "easy"


def test_queue_factor_halves_at_eight() -> None:
    assert queue_factor(0, 8.0) == 1.0
    assert queue_factor(8, 8.0) == 0.5
    assert queue_factor(24, 8.0) == 0.25


def test_probe_planned_for_medium_auto() -> None:
    plan = plan_question(_inputs(0.45, probe=True), DEFAULT_POLICY)

    assert plan.probe is True
    # The hard row's 6,400 tokens, in case the probe moves the question up, plus the probe:
    # two calls of the 40-token prompt and up to 64 new tokens each.
    assert plan.budget_tokens == 6_400 + 2 * 40 + 128
    assert plan.reason.endswith("probe first, 6,608 tokens")


def test_probe_not_planned_with_explicit_effort() -> None:
    plan = plan_question(_inputs(0.45, effort="medium", probe=True), DEFAULT_POLICY)

    assert plan.probe is False
    assert plan.budget_tokens == 3_200


def _agreement_probe(agree: bool) -> ProbeResult:
    return ProbeResult(
        kind="agreement",
        confidence=1.0 if agree else 0.0,
        answers=("36", "36" if agree else "15"),
        mean_logprob=None,
        calls=2,
        tokens=150,
    )


def test_replan_after_agreeing_probe_is_cheaper() -> None:
    model = default_model()
    plan = plan_question(_inputs(0.45, probe=True), DEFAULT_POLICY)
    assert plan.estimate is not None
    probed = apply_probe(plan.estimate, _agreement_probe(True), model)

    replanned = replan_after_probe(plan, probed, DEFAULT_POLICY, available_tokens=6_458)

    assert replanned.level == "easy"
    assert replanned.strategy == "direct"
    assert replanned.budget_tokens == 1_200
    assert replanned.probe is False
    assert replanned.reason == (
        "easy question (0.29), probe answers agree: direct answer, 1,200 tokens"
    )


def test_replan_after_disagreeing_probe_stays_within_reservation() -> None:
    model = default_model()
    plan = plan_question(_inputs(0.45, probe=True), DEFAULT_POLICY)
    assert plan.estimate is not None
    probed = apply_probe(plan.estimate, _agreement_probe(False), model)

    replanned = replan_after_probe(plan, probed, DEFAULT_POLICY, available_tokens=6_000)

    assert replanned.level == "hard"
    assert replanned.options == {"samples": 4, "max_tokens": 384}
    assert replanned.budget_tokens == 6_000


def test_probe_and_replan_lowers_client_budget() -> None:
    question = (
        "A baker makes 12 muffins and sells them for 3 dollars each. How much money does he make?"
    )
    plan = plan_question(_inputs(0.45, probe=True), DEFAULT_POLICY)
    client = BudgetedClient(ScriptedClient(["Answer: 36", "Answer: 36"]), budget_tokens=6_608)

    replanned = asyncio.run(
        probe_and_replan(
            client,
            StrategyInput(question=question),
            plan,
            policy=DEFAULT_POLICY,
            model=default_model(),
        )
    )

    assert client.calls == 2
    assert replanned.strategy == "direct"
    assert client.budget_tokens == client.spent_tokens + replanned.budget_tokens


def test_forced_plan_uses_whole_allowance() -> None:
    plan = forced_plan(_inputs(0.03, remaining=5_000), "self_consistency", {"samples": 5})

    assert plan.strategy == "self_consistency"
    assert plan.options == {"samples": 5}
    assert plan.budget_tokens == 5_000
    assert plan.reason == "strategy chosen by the asker: self-consistency, 5,000 tokens"
    assert plan.ladder == (Rung(strategy="self_consistency", options={"samples": 5}),)


def test_load_policy_replaces_rows() -> None:
    policy = load_policy(
        {
            "trivial": {
                "rungs": [{"strategy": "direct", "options": {"max_tokens": 64}}],
                "budget_share": 0.02,
            },
            "queue_half_depth": 4,
        }
    )

    assert policy.trivial.budget_share == 0.02
    assert policy.easy == DEFAULT_POLICY.easy
    assert policy.queue_half_depth == 4


def test_load_policy_rejects_unknown_strategy() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_policy({"hard": {"rungs": [{"strategy": "guess"}], "budget_share": 0.5}})

    assert "PONDER_POLICY row 'hard': unknown strategy 'guess'" in str(raised.value)


def test_load_policy_rejects_unknown_option() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_policy(
            {
                "easy": {
                    "rungs": [{"strategy": "direct", "options": {"samples": 3}}],
                    "budget_share": 0.5,
                }
            }
        )

    assert "unknown option(s) 'samples'" in str(raised.value)


def test_load_policy_rejects_decreasing_shares() -> None:
    rungs = [
        {"strategy": "self_consistency", "share": 0.8},
        {"strategy": "self_consistency", "share": 0.5},
    ]
    with pytest.raises(ConfigurationError) as raised:
        load_policy({"hard": {"rungs": rungs, "budget_share": 0.5}})

    assert "PONDER_POLICY is invalid at hard" in str(raised.value)


def test_default_policy_is_valid() -> None:
    assert load_policy({}) == DEFAULT_POLICY
