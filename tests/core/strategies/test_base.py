"""Tests for the budget-enforcing client that every strategy uses."""

from __future__ import annotations

import asyncio

import pytest

from core.llm.base import ChatMessage, SamplingOptions
from core.strategies.base import BudgetedClient, BudgetExhaustedError
from tests.core.strategies.support import RecordingClient

MESSAGES = [ChatMessage(role="user", content="What is 2 + 3?")]
# 5 words plus 4 tokens for the message.
PROMPT_TOKENS = 9


async def test_waiting_call_holds_no_reservation() -> None:
    # Each call may reserve 9 + 91 = 100 tokens but uses 9 + 2. The second call waits for the
    # single slot and reserves only then, after the first has settled to 11 tokens.
    scripted = RecordingClient(["Answer: 5", "Answer: 5"], max_parallel=1, seconds_per_call=0.01)
    client = BudgetedClient(scripted, budget_tokens=100)
    options = SamplingOptions(max_tokens=200)

    results = await asyncio.gather(
        client.chat(MESSAGES, options, purpose="a"), client.chat(MESSAGES, options, purpose="b")
    )

    assert [result.completion_tokens for result in results] == [2, 2]
    assert client.spent_tokens == 2 * (PROMPT_TOKENS + 2)
    assert client.remaining_tokens == 100 - 22


async def test_max_tokens_clamped_to_budget() -> None:
    scripted = RecordingClient([" ".join(["word"] * 50)])
    client = BudgetedClient(scripted, budget_tokens=PROMPT_TOKENS + 20)

    result = await client.chat(MESSAGES, SamplingOptions(max_tokens=200), purpose="answer")

    assert scripted.calls[0].options.max_tokens == 20
    assert result.finish_reason == "length"
    assert client.spent_tokens == PROMPT_TOKENS + 20


async def test_call_that_cannot_fit_is_not_made() -> None:
    scripted = RecordingClient(["Answer: 5"])
    client = BudgetedClient(scripted, budget_tokens=PROMPT_TOKENS + 15)

    with pytest.raises(BudgetExhaustedError):
        await client.chat(MESSAGES, SamplingOptions(), purpose="answer")

    assert scripted.calls == []
    assert client.remaining_tokens == PROMPT_TOKENS + 15


async def test_failed_call_releases_reservation() -> None:
    def fail(messages: list[ChatMessage], options: SamplingOptions) -> str:
        raise RuntimeError("backend down")

    client = BudgetedClient(RecordingClient(fail), budget_tokens=100)

    with pytest.raises(RuntimeError):
        await client.chat(MESSAGES, SamplingOptions(max_tokens=50), purpose="answer")

    assert client.remaining_tokens == 100
    assert client.calls == 0
