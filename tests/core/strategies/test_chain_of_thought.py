"""Tests for chain of thought: the answer line, budget forcing with "Wait", thinking, budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import StrategyOptionError
from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.llm.embedded import EmbeddedClient
from core.strategies.base import BudgetedClient, StrategyInput, StrategyResult, parse_options
from core.strategies.chain_of_thought import ChainOfThoughtOptions, ChainOfThoughtStrategy
from core.strategies.sampling import BUDGET_EXHAUSTED_ANSWER, REASONING_INSTRUCTION
from tests.core.strategies.support import VALID_STOP_REASONS, RecordingClient, assert_costs_match

QUESTION = StrategyInput(question="What is 2 + 3?")
# "What is 2 + 3?" (5 words) plus the 16-word reasoning instruction, plus 4 for the message.
PROMPT_TOKENS = 25


def options(**values: object) -> ChainOfThoughtOptions:
    parsed = parse_options("chain_of_thought", ChainOfThoughtOptions, dict(values))
    assert isinstance(parsed, ChainOfThoughtOptions)
    return parsed


async def run(
    scripted: RecordingClient, *, budget_tokens: int = 10_000, **values: object
) -> tuple[StrategyResult, BudgetedClient]:
    client = BudgetedClient(scripted, budget_tokens=budget_tokens)
    result = await ChainOfThoughtStrategy().run(QUESTION, client=client, options=options(**values))
    return result, client


async def test_answer_line_extracted() -> None:
    scripted = RecordingClient(["2 + 3 = 5.\nAnswer: 5"])

    result, client = await run(scripted)

    assert result.short_answer == "5"
    assert result.answer_text == "2 + 3 = 5.\nAnswer: 5"
    assert result.calls == 1
    assert result.stop_reason == "completed"
    assert scripted.calls[0].messages[-1].content == f"What is 2 + 3?\n\n{REASONING_INSTRUCTION}"
    assert [record.purpose for record in client.records] == ["reason"]
    assert result.prompt_tokens == PROMPT_TOKENS
    assert_costs_match(result, client, scripted)


async def test_wait_continues_short_reasoning() -> None:
    # The first reply has 2 tokens, below min_thinking_tokens=5, so "Wait" is appended once.
    # The continuation adds 10 tokens (12 in all), which ends the forcing.
    scripted = RecordingClient(["Answer: 4", ", 2 + 3 is 5 not 4. Answer: 5"])

    result, client = await run(scripted, min_thinking_tokens=5, max_waits=3)

    assert result.calls == 2
    assert scripted.calls[1].partial == "Answer: 4\n\nWait"
    assert scripted.calls[1].messages == scripted.calls[0].messages
    assert result.answer_text == "Answer: 4\n\nWait, 2 + 3 is 5 not 4. Answer: 5"
    assert result.short_answer == "5"
    assert result.details["waits"] == 1
    assert result.details["reasoning_tokens"] == 12
    assert [record.purpose for record in client.records] == ["reason", "wait"]
    assert [record.seed for record in client.records] == [0, 1]
    assert_costs_match(result, client, scripted)


async def test_waits_capped_by_max_waits() -> None:
    scripted = RecordingClient(["Answer: 5", ", yes.", ", sure.", ", done."])

    result, _ = await run(scripted, min_thinking_tokens=100, max_waits=2)

    assert result.calls == 3
    assert result.details["waits"] == 2
    assert result.stop_reason == "completed"
    assert result.short_answer == "5"


async def test_no_wait_without_minimum() -> None:
    scripted = RecordingClient(["Answer: 5"])

    result, _ = await run(scripted, max_waits=3)

    assert result.calls == 1
    assert result.details["waits"] == 0


async def test_budget_stops_waits_exactly() -> None:
    # Call 1: 25 prompt + 2 completion = 27. Call 2 continues "Answer: 41\n\nWait" (3 words):
    # prompt 25 + 3 + 4 = 32, completion 3, so 62 in all. Call 3 would continue 6 words:
    # prompt 25 + 6 + 4 = 35 and at least 16 new tokens, 51 > the 50 left of 112.
    scripted = RecordingClient(["Answer: 41", ", Answer: 42", ", Answer: 43"])

    result, client = await run(scripted, budget_tokens=112, min_thinking_tokens=100, max_waits=5)

    assert result.calls == 2
    assert len(scripted.calls) == 2
    assert result.stop_reason == "budget_exhausted"
    assert result.total_tokens == 62
    assert result.short_answer == "42"
    assert result.trace[-2] == "stopped: 50 tokens left; the prompt alone needs 35"
    assert_costs_match(result, client, scripted)


async def test_cut_reasoning_gets_answer_line() -> None:
    scripted = RecordingClient([" ".join(["think"] * 30), " 5"])

    result, client = await run(scripted, max_tokens=16)

    assert result.calls == 2
    assert scripted.calls[1].partial == " ".join(["think"] * 16) + "\nAnswer:"
    assert scripted.calls[1].options.stop == ("\n",)
    assert result.short_answer == "5"
    assert result.stop_reason == "completed"
    assert [record.purpose for record in client.records] == ["reason", "answer"]


async def test_cut_reasoning_without_force_answer() -> None:
    scripted = RecordingClient([" ".join(["think"] * 30)])

    result, _ = await run(scripted, max_tokens=16, force_answer=False)

    assert result.calls == 1
    assert result.stop_reason == "budget_exhausted"


async def test_no_budget_returns_fallback() -> None:
    scripted = RecordingClient(["Answer: 5"])

    result, _ = await run(scripted, budget_tokens=PROMPT_TOKENS + 15)

    assert result.calls == 0
    assert result.answer_text == BUDGET_EXHAUSTED_ANSWER
    assert result.stop_reason == "budget_exhausted"


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("off", False),
        ("LOW", "low"),
        ("high", "high"),
    ],
)
async def test_think_option_passed(raw: object, sent: object) -> None:
    scripted = RecordingClient(["Answer: 5"])

    await run(scripted, think=raw)

    assert scripted.calls[0].options.think == sent


async def test_think_unset_sends_none() -> None:
    scripted = RecordingClient(["Answer: 5"])

    await run(scripted)

    assert scripted.calls[0].options.think is None


def test_think_invalid_value_rejected() -> None:
    with pytest.raises(StrategyOptionError) as caught:
        options(think="maybe")

    assert "invalid option value for strategy 'chain_of_thought': think:" in str(caught.value)


class ThinkingClient(RecordingClient):
    """Adds 6 thinking tokens to every reply, as an Ollama thinking model reports them."""

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        result = await super().chat(messages, options)
        thought = replace(
            result,
            thinking="one two three four five six",
            thinking_tokens=6,
            completion_tokens=result.completion_tokens + 6,
        )
        self.results[-1] = thought
        return thought


async def test_thinking_tokens_counted() -> None:
    scripted = ThinkingClient(["Answer: 5"])

    result, client = await run(scripted, think="medium", min_thinking_tokens=8, max_waits=0)

    assert result.completion_tokens == 8
    assert result.details["thinking_tokens"] == 6
    assert "thinking tokens: 6" in result.trace
    assert_costs_match(result, client, scripted)


@pytest.mark.model
async def test_embedded_run_well_formed(embedded_client: EmbeddedClient) -> None:
    client = BudgetedClient(embedded_client, budget_tokens=600)

    result = await ChainOfThoughtStrategy().run(
        StrategyInput(question="What is 17 + 25?"),
        client=client,
        options=options(max_tokens=128, min_thinking_tokens=200, max_waits=1),
    )

    assert result.answer_text
    assert result.calls >= 1
    assert result.total_tokens <= 600
    assert result.stop_reason in VALID_STOP_REASONS
