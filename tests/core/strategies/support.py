"""Helpers for the strategy tests: a scripted client that records results and overlap."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.llm.scripted import ReplyFunction, ScriptedClient, ScriptedReply
from core.strategies.base import BudgetedClient, StrategyResult

VALID_STOP_REASONS = {
    "completed",
    "budget_exhausted",
    "early_stop",
    "no_error_found",
    "max_rounds",
    "deadline",
}


class RecordingClient(ScriptedClient):
    """A scripted client that keeps every result and the most calls it had in flight at once."""

    def __init__(
        self,
        replies: Sequence[ScriptedReply | str] | ReplyFunction,
        *,
        max_parallel: int = 1,
        seconds_per_call: float = 0.0,
    ) -> None:
        super().__init__(replies, max_parallel=max_parallel, seconds_per_call=seconds_per_call)
        self.results: list[ChatResult] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        return await self._tracked(super().chat(messages, options))

    async def continue_chat(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        return await self._tracked(super().continue_chat(messages, partial, options))

    async def _tracked(self, call: Awaitable[ChatResult]) -> ChatResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = await call
        finally:
            self.in_flight -= 1
        self.results.append(result)
        return result

    @property
    def total_tokens(self) -> int:
        return sum(result.total_tokens for result in self.results)


def assert_costs_match(
    result: StrategyResult, client: BudgetedClient, scripted: RecordingClient
) -> None:
    """Check that result, call records and the scripted client's own counts agree exactly."""
    assert result.calls == len(client.records)
    assert result.calls == len(scripted.results)
    assert result.prompt_tokens == sum(record.prompt_tokens for record in client.records)
    assert result.completion_tokens == sum(record.completion_tokens for record in client.records)
    assert result.total_tokens == scripted.total_tokens
    assert result.total_tokens == client.spent_tokens
    assert result.total_tokens <= client.budget_tokens
