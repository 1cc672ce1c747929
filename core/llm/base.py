"""The model client interface shared by every backend, and its request and result types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]
ThinkLevel = bool | Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat request."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingOptions:
    """Sampling settings for one model call. Temperature 0 means greedy decoding."""

    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    top_logprobs: int = 0
    think: ThinkLevel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResult:
    """What one model call returned and what it cost.

    `completion_tokens` includes thinking tokens, and `thinking_tokens` counts how many of them were
    thinking. `token_logprobs` contains, for each generated token, the log-probabilities of the
    top candidates when the request asked for them and the backend provides them.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    finish_reason: FinishReason
    model: str
    seed: int | None = None
    thinking: str = ""
    thinking_tokens: int = 0
    token_logprobs: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ModelClient(Protocol):
    """An async chat model. Implementations are safe to call concurrently."""

    @property
    def model_name(self) -> str:
        """Name of the model that answers, as shown in footnotes."""
        ...

    @property
    def max_parallel(self) -> int:
        """How many calls are worth running at once against this backend."""
        ...

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        """Generate the assistant's next message."""
        ...

    async def continue_chat(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        """Continue an unfinished assistant message `partial` as raw text.

        The result's `text` is only the continuation; its token counts cover the whole call,
        including `partial` as prompt tokens.
        """
        ...

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Return the prompt tokens these messages take, exact or a safe over-estimate."""
        ...

    async def close(self) -> None:
        """Release the backend's resources."""
        ...
