"""The `direct` strategy: one greedy answer."""

from __future__ import annotations

import logging
from typing import ClassVar

from core.answers import extract_answer
from core.llm.base import SamplingOptions
from core.strategies.base import (
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

logger = logging.getLogger(__name__)

BUDGET_EXHAUSTED_ANSWER = "I ran out of budget before I could answer this question."


class DirectOptions(StrategyOptions):
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int = 0


class DirectStrategy:
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
        try:
            result = await client.chat(request.messages(), sampling, purpose="answer")
        except BudgetExhaustedError as exc:
            return result_from_client(
                self.name,
                client,
                answer_text=BUDGET_EXHAUSTED_ANSWER,
                short_answer="",
                candidates=(),
                stop_reason="budget_exhausted",
                trace=(f"no call made: {exc}",),
            )

        text = result.text.strip()
        candidate = Candidate(
            text=text,
            answer=extract_answer(text),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            seed=result.seed,
            votes=1,
        )
        stop_reason: StopReason = (
            "budget_exhausted" if result.finish_reason == "length" else "completed"
        )
        return result_from_client(
            self.name,
            client,
            answer_text=text,
            short_answer=candidate.answer,
            candidates=(candidate,),
            stop_reason=stop_reason,
            trace=(f"one greedy call, finish reason {result.finish_reason}",),
        )
