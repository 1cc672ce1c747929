"""Tests for the direct strategy: one call, its accounting, and the budget."""

from __future__ import annotations

import pytest

from core.errors import StrategyOptionError
from core.llm.embedded import EmbeddedClient
from core.strategies.base import BudgetedClient, Progress, StrategyInput, parse_options
from core.strategies.direct import BUDGET_EXHAUSTED_ANSWER, DirectOptions, DirectStrategy
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")
# "What is 2 + 3?" is 5 words, plus 4 tokens for the message.
PROMPT_TOKENS = 9


def options(**values: object) -> DirectOptions:
    parsed = parse_options("direct", DirectOptions, dict(values))
    assert isinstance(parsed, DirectOptions)
    return parsed


async def test_one_call_with_question_as_asked() -> None:
    scripted = RecordingClient(["First 2 + 3 = 5, so it is 5 apples"])
    client = BudgetedClient(scripted, budget_tokens=1_000)

    result = await DirectStrategy().run(QUESTION, client=client, options=options(seed=4))

    assert result.calls == 1
    assert scripted.calls[0].messages[-1].content == "What is 2 + 3?"
    assert scripted.calls[0].options.seed == 4
    assert scripted.calls[0].options.temperature == 0.0
    assert result.short_answer == "5"
    assert result.stop_reason == "completed"
    assert result.prompt_tokens == PROMPT_TOKENS
    assert_costs_match(result, client, scripted)


async def test_reply_cut_at_max_tokens_completes() -> None:
    scripted = RecordingClient([" ".join(["word"] * 40)])
    client = BudgetedClient(scripted, budget_tokens=1_000)

    result = await DirectStrategy().run(QUESTION, client=client, options=options(max_tokens=16))

    assert result.completion_tokens == 16
    assert result.stop_reason == "completed"
    assert result.trace == ("one call, finish reason length", "reply cut at max_tokens=16")


async def test_reply_cut_by_budget_exhausted() -> None:
    scripted = RecordingClient([" ".join(["word"] * 40)])
    client = BudgetedClient(scripted, budget_tokens=PROMPT_TOKENS + 20)

    result = await DirectStrategy().run(QUESTION, client=client, options=options(max_tokens=32))

    assert scripted.calls[0].options.max_tokens == 20
    assert result.completion_tokens == 20
    assert result.stop_reason == "budget_exhausted"
    assert result.trace == (
        "one call, finish reason length",
        "reply cut at 20 tokens: the question's token budget ran out",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_tokens": -5}, "max_tokens: Input should be greater than or equal to 16"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 16"),
        ({"temperature": -3}, "temperature: Input should be greater than or equal to 0"),
        ({"temperature": 2.5}, "temperature: Input should be less than or equal to 2"),
        ({"temperature": float("nan")}, "temperature: Input should be a finite number"),
        ({"temperature": "inf"}, "temperature: Input should be a finite number"),
    ],
)
def test_options_out_of_range_rejected(values: dict[str, object], message: str) -> None:
    with pytest.raises(StrategyOptionError, match=message):
        options(**values)


def test_options_have_descriptions() -> None:
    assert [name for name, info in DirectOptions.model_fields.items() if not info.description] == []


async def test_no_budget_makes_no_call() -> None:
    scripted = RecordingClient(["5"])
    client = BudgetedClient(scripted, budget_tokens=PROMPT_TOKENS + 15)

    result = await DirectStrategy().run(QUESTION, client=client, options=options())

    assert scripted.calls == []
    assert result.answer_text == BUDGET_EXHAUSTED_ANSWER
    assert result.stop_reason == "budget_exhausted"


async def test_progress_reports_one_call() -> None:
    client = BudgetedClient(RecordingClient(["5"]), budget_tokens=1_000)
    reports: list[Progress] = []

    async def record(progress: Progress) -> None:
        reports.append(progress)

    await DirectStrategy().run(QUESTION, client=client, options=options(), progress=record)

    assert [report.describe() for report in reports] == ["thinking: direct, 1 of 1 calls"]


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await DirectStrategy().run(
        StrategyInput(question="What is 17 + 25?"), client=client, options=options(max_tokens=96)
    )

    assert result.answer_text
    assert result.calls == 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS
