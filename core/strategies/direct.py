"""The `direct` strategy: one greedy answer."""

from __future__ import annotations

import logging
from typing import ClassVar

from pydantic import Field

from core.answers import extract_answer
from core.llm.base import SamplingOptions
from core.strategies.base import (
    MIN_COMPLETION_TOKENS,
    BudgetedClient,
    BudgetExhaustedError,
    Candidate,
    ProgressCallback,
    StopReason,
    StrategyInput,
    StrategyOptions,
    StrategyResult,
    result_from_client,
)
from core.strategies.sampling import (
    BUDGET_EXHAUSTED_ANSWER,
    exhausted_stop_reason,
    no_answer_result,
    report,
)

logger = logging.getLogger(__name__)

__all__ = ["BUDGET_EXHAUSTED_ANSWER", "DirectOptions", "DirectStrategy"]


class DirectOptions(StrategyOptions):
    """Options of `direct`: one call with these sampling settings."""

    max_tokens: int = Field(default=512, ge=16, description="Maximum new tokens of the reply.")
    temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, allow_inf_nan=False, description="Sampling temperature."
    )
    seed: int = Field(default=0, description="Sampling seed.")


class DirectStrategy:
    """Ask the question once, as it is, and return the reply."""

    name: ClassVar[str] = "direct"
    description: ClassVar[str] = "One greedy answer; the cheapest strategy."
    options_type: ClassVar[type[StrategyOptions]] = DirectOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, DirectOptions)
        sampling = SamplingOptions(
            temperature=options.temperature, seed=options.seed, max_tokens=options.max_tokens
        )
        messages = request.messages()
        # BudgetedClient.chat caps max_tokens at what the budget leaves after the prompt. This
        # strategy makes one call with nothing running beside it, so the cap is known in advance.
        granted_tokens = min(
            options.max_tokens, client.remaining_tokens - client.count_tokens(messages)
        )
        try:
            result = await client.chat(messages, sampling, purpose="answer")
        except BudgetExhaustedError as exc:
            return no_answer_result(
                self.name,
                client,
                stop_reason=exhausted_stop_reason(client),
                trace=(f"no call made: {exc}",),
            )
        await report(progress, self.name, "calls", done=1, total=1)

        text = result.text.strip()
        candidate = Candidate(
            text=text,
            answer=extract_answer(text, question=request.question),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seed=result.seed,
            votes=1,
        )
        stop_reason: StopReason = "completed"
        trace = [f"one call, finish reason {result.finish_reason}"]
        if result.finish_reason == "length":
            cut_by_budget = (
                granted_tokens < options.max_tokens
                or client.remaining_tokens < MIN_COMPLETION_TOKENS
            )
            if cut_by_budget:
                stop_reason = "budget_exhausted"
                cut_at = result.completion_tokens
                trace.append(f"reply cut at {cut_at} tokens: the question's token budget ran out")
            else:
                trace.append(f"reply cut at max_tokens={options.max_tokens}")
        return result_from_client(
            self.name,
            client,
            answer_text=text,
            short_answer=candidate.answer,
            candidates=(candidate,),
            stop_reason=stop_reason,
            trace=tuple(trace),
        )
