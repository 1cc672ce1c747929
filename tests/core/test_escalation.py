"""Tests for confidence-gated escalation with a scripted model: when it escalates, and its cost."""

from __future__ import annotations

import asyncio

from core.escalation import LadderStrategy, escalation_from_result, gate, run_ladder
from core.footnote import FootnoteFacts, format_footnote
from core.llm.scripted import ScriptedClient, ScriptedReply
from core.planner import Plan, Rung
from core.strategies.base import BudgetedClient, StrategyInput, StrategyResult, parse_options

QUESTION = "What is 6 times 7?"
# ScriptedClient prompt tokens: words plus 4 per message. The self-consistency prompt (question
# plus the step-by-step instruction) is 25; the bare question, used for the next rung's
# minimum, is 9, so a 4-sample rung needs at least 4 * (9 + 64) = 292 tokens.
SAMPLE_PROMPT_TOKENS = 25
NEXT_RUNG_MINIMUM = 292


def _plan(budget_tokens: int, *, first_share: float = 0.9) -> Plan:
    return Plan(
        strategy="self_consistency",
        budget_tokens=budget_tokens,
        options={"samples": 3},
        rungs=(
            Rung(strategy="self_consistency", options={"samples": 3}, share=first_share),
            Rung(strategy="self_consistency", options={"samples": 4}),
        ),
        escalate_below=0.6,
    )


def _run(client: ScriptedClient, budget_tokens: int, plan: Plan) -> tuple[StrategyResult, int]:
    budgeted = BudgetedClient(client, budget_tokens=budget_tokens)
    result = asyncio.run(run_ladder(budgeted, StrategyInput(question=QUESTION), plan))
    return result, budgeted.spent_tokens


def test_disagreeing_samples_escalate() -> None:
    replies = ["Answer: 41", "Answer: 42", "Answer: 43", *["Answer: 42"] * 4]
    client = ScriptedClient(replies)

    result, spent = _run(client, 3_000, _plan(3_000))

    escalation = escalation_from_result(result)
    assert escalation is not None
    assert escalation.rungs_run == 2
    assert escalation.note == "escalated: 2 of 3 samples disagreed"
    assert escalation.first_agreement == (1, 3)
    assert escalation.first_answer == "41"
    assert escalation.changed_answer is True
    assert result.short_answer == "42"
    assert result.agreement == (5, 7)
    assert len(client.calls) == 7
    assert result.calls == 7
    assert spent == result.total_tokens


def test_escalated_rung_uses_new_seeds() -> None:
    replies = ["Answer: 41", "Answer: 42", "Answer: 43", *["Answer: 42"] * 4]
    client = ScriptedClient(replies)

    _run(client, 3_000, _plan(3_000))

    assert [call.options.seed for call in client.calls] == [0, 1, 2, 3, 4, 5, 6]


def test_agreeing_samples_do_not_escalate() -> None:
    client = ScriptedClient(["Answer: 42"] * 3)

    result, _ = _run(client, 3_000, _plan(3_000))

    escalation = escalation_from_result(result)
    assert escalation is not None
    assert escalation.rungs_run == 1
    assert escalation.note is None
    assert escalation.changed_answer is False
    assert len(client.calls) == 3
    assert result.agreement == (3, 3)


def test_two_of_three_is_confident_enough() -> None:
    client = ScriptedClient(["Answer: 42", "Answer: 41", "Answer: 42"])

    result, _ = _run(client, 3_000, _plan(3_000))

    assert len(client.calls) == 3
    assert result.short_answer == "42"


def test_no_escalation_when_next_rung_does_not_fit() -> None:
    # Three samples cost 3 * (25 + 2) = 81 tokens, leaving one token less than the next rung needs.
    budget = 3 * (SAMPLE_PROMPT_TOKENS + 2) + NEXT_RUNG_MINIMUM - 1
    client = ScriptedClient(["Answer: 41", "Answer: 42", "Answer: 43"])

    result, spent = _run(client, budget, _plan(budget))

    escalation = escalation_from_result(result)
    assert escalation is not None
    assert escalation.rungs_run == 1
    assert escalation.note == (
        "not escalated: 2 of 3 samples disagreed, but 291 tokens left and the next step needs 292"
    )
    assert len(client.calls) == 3
    assert spent == 81


def test_escalation_when_next_rung_just_fits() -> None:
    budget = 3 * (SAMPLE_PROMPT_TOKENS + 2) + NEXT_RUNG_MINIMUM
    client = ScriptedClient(["Answer: 41", "Answer: 42", "Answer: 43", *["Answer: 42"] * 4])

    result, spent = _run(client, budget, _plan(budget))

    assert len(client.calls) == 7
    assert spent <= budget
    assert result.short_answer == "42"


def test_first_rung_stays_within_its_share() -> None:
    # The first rung may spend 30 % of 1,000 tokens. Two samples of 25 + 100 tokens fit; the
    # third is granted only the 25 tokens left of the 300 and is cut there.
    replies = [ScriptedReply("Answer: 41 " + "step " * 98, completion_tokens=100)] * 3
    client = ScriptedClient([*replies, *["Answer: 42"] * 4])
    budgeted = BudgetedClient(client, budget_tokens=1_000)

    result = asyncio.run(
        run_ladder(budgeted, StrategyInput(question=QUESTION), _plan(1_000, first_share=0.3))
    )

    first_rung_tokens = sum(
        record.prompt_tokens + record.completion_tokens for record in result.call_log[:3]
    )
    assert first_rung_tokens <= 300
    assert budgeted.spent_tokens <= 1_000


def test_single_rung_plan_runs_once() -> None:
    client = ScriptedClient(["The answer is 42."])
    plan = Plan(strategy="direct", budget_tokens=500)

    result, _ = _run(client, 500, plan)

    escalation = escalation_from_result(result)
    assert escalation is not None
    assert escalation.rungs_planned == 1
    assert result.short_answer == "42"
    assert len(client.calls) == 1


def test_gate_without_votes_does_not_escalate() -> None:
    decision = gate(None, escalate_below=0.6, remaining_tokens=10_000, next_minimum_tokens=10)

    assert decision.escalate is False
    assert decision.note is None


def test_footnote_shows_escalation() -> None:
    replies = ["Answer: 41", "Answer: 42", "Answer: 43", *["Answer: 42"] * 4]
    result, _ = _run(ScriptedClient(replies), 3_000, _plan(3_000))
    escalation = escalation_from_result(result)
    assert escalation is not None

    footnote = format_footnote(
        FootnoteFacts(
            strategy=result.strategy,
            calls=result.calls,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            wall_seconds=1.0,
            model_seconds=0.5,
            model="scripted",
            difficulty="medium (0.45)",
            reason="self-consistency with 3 samples, up to 7 if they disagree, 3,000 tokens",
            agreement=result.agreement,
            escalation=escalation.note,
        )
    )

    assert footnote.splitlines()[1] == (
        "  difficulty medium (0.45) · self-consistency with 3 samples, up to 7 if they disagree, "
        "3,000 tokens · 5 of 7 samples agree · escalated: 2 of 3 samples disagreed"
    )


def test_ladder_strategy_runs_rungs() -> None:
    replies = ["Answer: 41", "Answer: 42", "Answer: 43", *["Answer: 42"] * 4]
    client = ScriptedClient(replies)
    budgeted = BudgetedClient(client, budget_tokens=3_000)
    ladder = LadderStrategy()
    options = parse_options(
        ladder.name,
        ladder.options_type,
        {"rungs": [rung.model_dump() for rung in _plan(3_000).ladder], "escalate_below": 0.6},
    )

    result = asyncio.run(
        ladder.run(StrategyInput(question=QUESTION), client=budgeted, options=options)
    )

    assert result.agreement == (5, 7)
    assert len(client.calls) == 7
