"""Helpers the strategies share: the reasoning prompt, concurrent sampling and stop reasons."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from core.answers import extract_answer, has_answer_marker
from core.llm.base import ChatMessage, ChatResult, SamplingOptions
from core.strategies.base import (
    BudgetedClient,
    BudgetExhaustedError,
    Candidate,
    Progress,
    ProgressCallback,
    StopReason,
    StrategyInput,
    StrategyResult,
    result_from_client,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TRACE_ANSWER_CHARS = 40
BUDGET_EXHAUSTED_ANSWER = "I ran out of budget before I could answer this question."
REASONING_INSTRUCTION = (
    'Think step by step. Then write the final answer on the last line as "Answer: <answer>".'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One sampled reasoning path and the final answer extracted from it."""

    index: int
    seed: int
    result: ChatResult
    answer: str

    @property
    def text(self) -> str:
        return self.result.text.strip()

    @property
    def is_finished(self) -> bool:
        """Tell whether the path stopped by itself or stated an answer before it was cut."""
        return self.result.finish_reason == "stop" or has_answer_marker(self.result.text)

    def to_candidate(self, *, score: float | None = None, votes: int = 0) -> Candidate:
        return Candidate(
            text=self.text,
            answer=self.answer,
            prompt_tokens=self.result.prompt_tokens,
            completion_tokens=self.result.completion_tokens,
            seed=self.seed,
            score=score,
            votes=votes,
        )


def reasoning_messages(request: StrategyInput) -> list[ChatMessage]:
    """Return the request's messages with the question asking for steps and an answer line."""
    return request.messages(f"{request.question}\n\n{REASONING_INSTRUCTION}")


def shorten(text: str, *, limit: int = MAX_TRACE_ANSWER_CHARS) -> str:
    """Return text on one line, cut to `limit` characters with an ellipsis, for trace lines."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def exhausted_stop_reason(client: BudgetedClient) -> StopReason:
    """Name why a BudgetExhaustedError happened: the deadline or the token budget."""
    return "deadline" if client.is_past_deadline() else "budget_exhausted"


async def report(
    progress: ProgressCallback | None, strategy: str, step: str, *, done: int, total: int
) -> None:
    if progress is not None:
        await progress(Progress(strategy=strategy, step=step, done=done, total=total))


async def chat_or_none(
    client: BudgetedClient,
    messages: list[ChatMessage],
    options: SamplingOptions,
    *,
    purpose: str,
) -> ChatResult | None:
    """Call the model, returning None instead of raising when the budget cannot fit the call."""
    try:
        return await client.chat(messages, options, purpose=purpose)
    except BudgetExhaustedError as exc:
        logger.debug("%s call skipped: %s", purpose, exc)
        return None


async def sample_paths(
    client: BudgetedClient,
    messages: list[ChatMessage],
    options: SamplingOptions,
    *,
    indices: Sequence[int],
    base_seed: int,
    question: str,
    purpose: str = "sample",
    on_sample: Callable[[Sample], Awaitable[None]] | None = None,
) -> list[Sample | None]:
    """Sample one path per index with seed `base_seed + index`, concurrently.

    All calls start at once and the client's semaphore lets `client.max_parallel` of them run
    together. The list keeps the order of `indices`, and an entry is None when the budget could
    not fit that call. `on_sample` runs as each sample arrives, for progress reports.

    NOTE: each running call reserves its prompt plus `max_tokens`. With several calls running
    near the end of the budget, a call can be refused although the running ones use less.
    """

    async def sample(index: int) -> Sample | None:
        seed = base_seed + index
        result = await chat_or_none(client, messages, replace(options, seed=seed), purpose=purpose)
        if result is None:
            return None
        answer = extract_answer(result.text, question=question)
        drawn = Sample(index=index, seed=seed, result=result, answer=answer)
        if on_sample is not None:
            await on_sample(drawn)
        return drawn

    return await gather_or_cancel([sample(index) for index in indices])


async def gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all concurrently; when one raises, cancel the rest before re-raising.

    Plain `asyncio.gather` would leave the other calls running after the strategy has given up,
    spending budget on replies that are never used.
    """
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def no_answer_result(
    strategy: str, client: BudgetedClient, *, stop_reason: StopReason, trace: tuple[str, ...]
) -> StrategyResult:
    """Build the result for a run that could not afford a single answer."""
    return result_from_client(
        strategy,
        client,
        answer_text=BUDGET_EXHAUSTED_ANSWER,
        short_answer="",
        candidates=(),
        stop_reason=stop_reason,
        trace=trace,
    )
