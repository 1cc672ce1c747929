"""The strategy interface, its result types, and the budget-enforcing client every strategy uses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import StrategyOptionError
from core.llm.base import ChatMessage, ChatResult, ModelClient, SamplingOptions

logger = logging.getLogger(__name__)

MIN_COMPLETION_TOKENS = 16

StopReason = Literal[
    "completed",
    "budget_exhausted",
    "early_stop",
    "no_error_found",
    "max_rounds",
    "deadline",
]


class BudgetExhaustedError(Exception):
    """Raised inside a strategy when the next call cannot fit in the remaining budget."""


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report from a running strategy, for "thinking: …" messages."""

    strategy: str
    step: str
    done: int
    total: int

    def describe(self) -> str:
        return (
            f"thinking: {self.strategy.replace('_', '-')}, {self.done} of {self.total} {self.step}"
        )


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One model call made by a strategy, for the trace and the ledger."""

    purpose: str
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    seed: int | None
    finish_reason: str


class BudgetedClient:
    """Wraps a model client so that no call can take the total past a hard token budget.

    Before each call it reserves the prompt tokens plus the completion limit; after the call it
    settles to what the model really used. Concurrent calls therefore never overspend together.
    The token counts of the wrapped client must be exact or over-estimates for this to hold.
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        budget_tokens: int,
        deadline: float | None = None,
    ) -> None:
        self._client = client
        self.budget_tokens = budget_tokens
        self.deadline = deadline
        self._spent = 0
        self._reserved = 0
        self._lock = asyncio.Lock()
        self.records: list[CallRecord] = []
        self.semaphore = asyncio.Semaphore(client.max_parallel)

    @property
    def model_name(self) -> str:
        return self._client.model_name

    @property
    def max_parallel(self) -> int:
        return self._client.max_parallel

    @property
    def spent_tokens(self) -> int:
        return self._spent

    @property
    def remaining_tokens(self) -> int:
        return self.budget_tokens - self._spent - self._reserved

    @property
    def calls(self) -> int:
        return len(self.records)

    @property
    def prompt_tokens(self) -> int:
        return sum(record.prompt_tokens for record in self.records)

    @property
    def completion_tokens(self) -> int:
        return sum(record.completion_tokens for record in self.records)

    @property
    def model_seconds(self) -> float:
        return sum(record.model_seconds for record in self.records)

    def is_past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self._client.count_tokens(messages)

    def can_afford(self, messages: list[ChatMessage], *, min_completion_tokens: int) -> bool:
        """Tell whether a call with these messages and that many new tokens still fits."""
        needed = self._client.count_tokens(messages) + min_completion_tokens
        return needed <= self.remaining_tokens

    async def chat(
        self,
        messages: list[ChatMessage],
        options: SamplingOptions,
        *,
        purpose: str,
        min_completion_tokens: int = MIN_COMPLETION_TOKENS,
    ) -> ChatResult:
        """Call the model, clamping `max_tokens` to what the budget has left.

        Raises BudgetExhaustedError, without calling the model, when fewer than
        `min_completion_tokens` would remain after the prompt, or when the deadline has passed.
        """
        prompt_tokens = self._client.count_tokens(messages)
        # Reserving inside the semaphore keeps calls that wait for a free slot from holding budget
        # that a running call may leave unused.
        async with self.semaphore:
            granted = await self._reserve(prompt_tokens, options.max_tokens, min_completion_tokens)
            try:
                result = await self._client.chat(messages, _with_max_tokens(options, granted))
            except BaseException:
                await self._release(prompt_tokens + granted)
                raise
            await self._record(result, purpose, reserved_tokens=prompt_tokens + granted)
        return result

    async def continue_chat(
        self,
        messages: list[ChatMessage],
        partial: str,
        options: SamplingOptions,
        *,
        purpose: str,
        min_completion_tokens: int = MIN_COMPLETION_TOKENS,
    ) -> ChatResult:
        """Continue an assistant message under the same budget rules as `chat`."""
        prompt_tokens = self._client.count_tokens(
            [*messages, ChatMessage(role="assistant", content=partial)]
        )
        async with self.semaphore:
            granted = await self._reserve(prompt_tokens, options.max_tokens, min_completion_tokens)
            clamped = _with_max_tokens(options, granted)
            try:
                result = await self._client.continue_chat(messages, partial, clamped)
            except BaseException:
                await self._release(prompt_tokens + granted)
                raise
            await self._record(result, purpose, reserved_tokens=prompt_tokens + granted)
        return result

    async def _reserve(self, prompt_tokens: int, max_tokens: int, min_tokens: int) -> int:
        if self.is_past_deadline():
            raise BudgetExhaustedError("the strategy's deadline has passed")
        async with self._lock:
            available = self.remaining_tokens - prompt_tokens
            if available < min_tokens:
                raise BudgetExhaustedError(
                    f"{self.remaining_tokens} tokens left; the prompt alone needs {prompt_tokens}"
                )
            granted = min(max_tokens, available)
            self._reserved += prompt_tokens + granted
            return granted

    async def _release(self, tokens: int) -> None:
        async with self._lock:
            self._reserved -= tokens

    async def _record(self, result: ChatResult, purpose: str, *, reserved_tokens: int) -> None:
        # Releasing the reservation and adding the spend under one lock leaves no moment in
        # which a concurrent call could reserve tokens that are neither reserved nor spent.
        async with self._lock:
            self._reserved -= reserved_tokens
            self._spent += result.total_tokens
        self.records.append(
            CallRecord(
                purpose=purpose,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                model_seconds=result.model_seconds,
                seed=result.seed,
                finish_reason=result.finish_reason,
            )
        )
        if self._spent > self.budget_tokens:
            # Only a backend whose token count under-estimates the prompt can get here.
            logger.warning(
                "model call overspent the budget: %d of %d tokens", self._spent, self.budget_tokens
            )


def _with_max_tokens(options: SamplingOptions, max_tokens: int) -> SamplingOptions:
    return replace(options, max_tokens=max_tokens)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One candidate answer a strategy produced, with what it cost and how it was judged."""

    text: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    seed: int | None = None
    score: float | None = None
    votes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyResult:
    """What a strategy returns: the chosen answer, every candidate, and the cost."""

    strategy: str
    answer_text: str
    short_answer: str
    candidates: tuple[Candidate, ...]
    calls: int
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    stop_reason: StopReason
    trace: tuple[str, ...] = ()
    agreement: tuple[int, int] | None = None
    nodes_expanded: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    call_log: tuple[CallRecord, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def budget_exhausted(self) -> bool:
        return self.stop_reason in ("budget_exhausted", "deadline")


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyInput:
    """The conversation a strategy answers: earlier turns, then the question itself."""

    question: str
    history: tuple[ChatMessage, ...] = ()
    system_prompt: str | None = None

    def messages(self, question_text: str | None = None) -> list[ChatMessage]:
        """Return the chat messages for this question, optionally with a reworded question."""
        messages: list[ChatMessage] = []
        if self.system_prompt:
            messages.append(ChatMessage(role="system", content=self.system_prompt))
        messages.extend(self.history)
        messages.append(ChatMessage(role="user", content=question_text or self.question))
        return messages


class StrategyOptions(BaseModel):
    """Base class of each strategy's options; unknown option names are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(Protocol):
    """A test-time compute strategy. Every strategy module provides one."""

    name: ClassVar[str]
    description: ClassVar[str]
    options_type: ClassVar[type[StrategyOptions]]

    async def run(
        self,
        request: StrategyInput,
        *,
        client: BudgetedClient,
        options: StrategyOptions,
        progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        """Answer the request within the client's budget."""
        ...


def parse_options(
    strategy_name: str, options_type: type[StrategyOptions], raw: dict[str, Any]
) -> StrategyOptions:
    """Validate raw option values for a strategy, listing the known options on an unknown name."""
    known = sorted(options_type.model_fields)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        message = (
            f"unknown option(s) {', '.join(map(repr, unknown))} for strategy {strategy_name!r}; "
            f"known options: {', '.join(known) or 'none'}"
        )
        # The asker typed these names, so the detail is safe and useful to show in the chat.
        raise StrategyOptionError(message, user_message=message)
    try:
        return options_type.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        message = f"invalid option value for strategy {strategy_name!r}: {problems}"
        raise StrategyOptionError(message, user_message=message) from exc


def result_from_client(
    strategy: str,
    client: BudgetedClient,
    *,
    answer_text: str,
    short_answer: str,
    candidates: tuple[Candidate, ...],
    stop_reason: StopReason,
    trace: tuple[str, ...] = (),
    agreement: tuple[int, int] | None = None,
    nodes_expanded: int | None = None,
    details: dict[str, Any] | None = None,
) -> StrategyResult:
    """Build a StrategyResult whose cost figures come from the client's call records."""
    return StrategyResult(
        strategy=strategy,
        answer_text=answer_text,
        short_answer=short_answer,
        candidates=candidates,
        calls=client.calls,
        prompt_tokens=client.prompt_tokens,
        completion_tokens=client.completion_tokens,
        model_seconds=client.model_seconds,
        stop_reason=stop_reason,
        trace=trace,
        agreement=agreement,
        nodes_expanded=nodes_expanded,
        details=details or {},
        call_log=tuple(client.records),
    )
