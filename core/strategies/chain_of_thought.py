"""The `chain_of_thought` strategy: step-by-step reasoning, optionally forced to think longer.

The model reasons step by step and ends with a line "Answer: …". For Ollama thinking models the
option `think` is passed through as SamplingOptions.think. Their thinking tokens are already part
of each call's completion tokens, and the strategy reports them separately in the trace.

Budget forcing in the style of s1 (Muennighoff et al. 2025): when the model stops after fewer
than `min_thinking_tokens` completion tokens, the strategy appends "Wait" to the model's output
and lets it continue that same assistant message (a raw continuation), at most `max_waits` times.
Every continuation stays within the hard token budget.

NOTE: with `think` on, the thinking of the first call comes back apart from the reply, and a
"Wait" continuation extends the visible reply. A raw continuation cannot reopen a model's thinking
block without knowing that model's thinking tags.

When the reasoning is cut by `max_tokens` or the budget before an answer line, one short call
continues the text after "Answer:" so that the reply ends with a final answer (`force_answer`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from core.answers import extract_answer, has_answer_marker
from core.llm.base import ChatMessage, ChatResult, SamplingOptions, ThinkLevel
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
from core.strategies.sampling import (
    exhausted_stop_reason,
    no_answer_result,
    reasoning_messages,
    report,
    shorten,
)

logger = logging.getLogger(__name__)

WAIT_TEXT = "Wait"
ANSWER_PROMPT_TEXT = "Answer:"
FORCED_ANSWER_MAX_TOKENS = 32
ThinkSetting = Literal["off", "true", "low", "medium", "high"]
THINK_LEVELS: dict[ThinkSetting, ThinkLevel] = {
    "off": False,
    "true": True,
    "low": "low",
    "medium": "medium",
    "high": "high",
}


class ChainOfThoughtOptions(StrategyOptions):
    """Options of `chain_of_thought`."""

    max_tokens: int = Field(default=1024, ge=16, description="Maximum new tokens per call.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = 0
    think: ThinkSetting | None = Field(
        default=None,
        description="Thinking mode of Ollama thinking models: off, true, low, medium or high; "
        "unset leaves the model's default.",
    )
    min_thinking_tokens: int = Field(
        default=0, ge=0, description="Append 'Wait' while the reasoning is shorter than this."
    )
    max_waits: int = Field(default=2, ge=0, le=16, description="Maximum 'Wait' continuations.")
    force_answer: bool = Field(
        default=True, description="Ask for an answer line when the reasoning was cut off."
    )

    @field_validator("think", mode="before")
    @classmethod
    def _accept_booleans(cls, value: object) -> object:
        """Accept true/false as parsed from `--set think=true` as well as the words."""
        if isinstance(value, bool):
            return "true" if value else "off"
        if isinstance(value, str):
            lowered = value.strip().lower()
            return {"false": "off", "none": "off"}.get(lowered, lowered)
        return value


@dataclass(slots=True)
class Reasoning:
    """The reply built so far across the first call and its continuations."""

    text: str = ""
    thinking: str = ""
    completion_tokens: int = 0
    thinking_tokens: int = 0
    last_finish: str = "stop"
    waits: int = 0
    trace: list[str] = field(default_factory=list)

    def add(self, result: ChatResult, *, prefix: str = "") -> None:
        self.text = prefix + result.text
        if result.thinking:
            self.thinking = f"{self.thinking}\n{result.thinking}".strip()
        self.completion_tokens += result.completion_tokens
        self.thinking_tokens += result.thinking_tokens
        self.last_finish = result.finish_reason


class ChainOfThoughtStrategy:
    """Reason step by step, forcing longer thinking with "Wait" when asked to."""

    name: ClassVar[str] = "chain_of_thought"
    description: ClassVar[str] = (
        "Step-by-step reasoning with a final answer line; can force longer thinking with 'Wait'."
    )
    options_type: ClassVar[type[StrategyOptions]] = ChainOfThoughtOptions

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        assert isinstance(options, ChainOfThoughtOptions)
        messages = reasoning_messages(request)
        sampling = SamplingOptions(
            temperature=options.temperature,
            seed=options.seed,
            max_tokens=options.max_tokens,
            think=THINK_LEVELS[options.think] if options.think is not None else None,
        )
        total_calls = 1 + (options.max_waits if options.min_thinking_tokens else 0)
        reasoning = Reasoning()

        try:
            first = await client.chat(messages, sampling, purpose="reason")
        except BudgetExhaustedError as exc:
            stop_reason = exhausted_stop_reason(client)
            return no_answer_result(
                self.name, client, stop_reason=stop_reason, trace=(f"no call made: {exc}",)
            )
        reasoning.add(first)
        reasoning.trace.append(
            f"reasoning: {first.completion_tokens} tokens, finish reason {first.finish_reason}"
        )
        await report(progress, self.name, "calls", done=1, total=total_calls)

        exhausted = False
        try:
            await self._force_thinking(client, messages, sampling, options, reasoning, progress)
            if options.force_answer:
                await self._force_answer(client, messages, sampling, reasoning)
        except BudgetExhaustedError as exc:
            exhausted = True
            reasoning.trace.append(f"stopped: {exc}")
        return self._result(request, client, reasoning, exhausted=exhausted)

    async def _force_thinking(
        self,
        client: BudgetedClient,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        options: ChainOfThoughtOptions,
        reasoning: Reasoning,
        progress: ProgressCallback | None,
    ) -> None:
        """Append "Wait" and continue while the model stopped before `min_thinking_tokens`."""
        total_calls = 1 + options.max_waits
        while (
            reasoning.last_finish == "stop"
            and reasoning.completion_tokens < options.min_thinking_tokens
            and reasoning.waits < options.max_waits
        ):
            partial = f"{reasoning.text.rstrip()}\n\n{WAIT_TEXT}"
            reasoning.waits += 1
            result = await client.continue_chat(
                messages, partial, _next_seed(sampling, reasoning.waits), purpose="wait"
            )
            reasoning.add(result, prefix=partial)
            reasoning.trace.append(
                f"wait {reasoning.waits}: reasoning shorter than {options.min_thinking_tokens} "
                f"tokens, continued for {result.completion_tokens} more"
            )
            await report(progress, self.name, "calls", done=1 + reasoning.waits, total=total_calls)

    async def _force_answer(
        self,
        client: BudgetedClient,
        messages: list[ChatMessage],
        sampling: SamplingOptions,
        reasoning: Reasoning,
    ) -> None:
        """Continue a reply that was cut off before its answer line with "Answer:"."""
        if reasoning.last_finish != "length" or has_answer_marker(reasoning.text):
            return
        partial = f"{reasoning.text.rstrip()}\n{ANSWER_PROMPT_TEXT}"
        answer_options = SamplingOptions(
            temperature=0.0,
            seed=sampling.seed,
            max_tokens=FORCED_ANSWER_MAX_TOKENS,
            stop=("\n",),
        )
        result = await client.continue_chat(messages, partial, answer_options, purpose="answer")
        reasoning.add(result, prefix=partial)
        reasoning.trace.append("reasoning was cut off; asked for the answer line")

    def _result(
        self,
        request: StrategyInput,
        client: BudgetedClient,
        reasoning: Reasoning,
        *,
        exhausted: bool,
    ) -> StrategyResult:
        text = reasoning.text.strip()
        answer = extract_answer(text, question=request.question)
        stop_reason: StopReason = "completed"
        if exhausted:
            stop_reason = exhausted_stop_reason(client)
        elif reasoning.last_finish == "length" and not has_answer_marker(text):
            stop_reason = "budget_exhausted"
        if reasoning.thinking_tokens:
            reasoning.trace.append(f"thinking tokens: {reasoning.thinking_tokens}")
        reasoning.trace.append(f"answer: {shorten(answer)}")
        candidate = Candidate(
            text=text,
            answer=answer,
            prompt_tokens=client.prompt_tokens,
            completion_tokens=client.completion_tokens,
            seed=client.records[0].seed if client.records else None,
            votes=1,
        )
        details: dict[str, Any] = {
            "reasoning_tokens": reasoning.completion_tokens,
            "thinking_tokens": reasoning.thinking_tokens,
            "waits": reasoning.waits,
        }
        return result_from_client(
            self.name,
            client,
            answer_text=text,
            short_answer=answer,
            candidates=(candidate,),
            stop_reason=stop_reason,
            trace=tuple(reasoning.trace),
            details=details,
        )


def _next_seed(sampling: SamplingOptions, wait: int) -> SamplingOptions:
    """Give each continuation its own seed, derived from the first call's, for reproducibility."""
    return sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + wait)
