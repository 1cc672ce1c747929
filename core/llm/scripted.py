"""A scripted model client: fixed replies and token counts, for exact tests of strategies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.llm.base import ChatMessage, ChatResult, SamplingOptions

TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One reply of the script; `completion_tokens` defaults to the reply's word count."""

    text: str
    completion_tokens: int | None = None


ReplyFunction = Callable[[list[ChatMessage], SamplingOptions], ScriptedReply | str]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    messages: tuple[ChatMessage, ...]
    options: SamplingOptions
    partial: str | None


class ScriptedClient:
    """Replies from a list in order, or from a function of the request.

    Prompt tokens are the words of every message plus four per message, so tests can compute
    them by hand. A reply longer than `max_tokens` is cut to that many words with finish reason
    "length".
    """

    def __init__(
        self,
        replies: Sequence[ScriptedReply | str] | ReplyFunction,
        *,
        model_name: str = "scripted",
        max_parallel: int = 1,
        seconds_per_call: float = 0.0,
    ) -> None:
        self._replies = replies
        self._index = 0
        self._model_name = model_name
        self._max_parallel = max_parallel
        self._seconds_per_call = seconds_per_call
        self.calls: list[RecordedCall] = []

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(message.content.split()) + TOKENS_PER_MESSAGE for message in messages)

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        return await self._reply(messages, options, partial=None)

    async def continue_chat(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        return await self._reply(messages, options, partial=partial)

    async def close(self) -> None:
        return None

    def _next_reply(self, messages: list[ChatMessage], options: SamplingOptions) -> ScriptedReply:
        if callable(self._replies):
            reply = self._replies(messages, options)
        else:
            if self._index >= len(self._replies):
                raise AssertionError(
                    f"scripted client ran out of replies after {len(self._replies)} calls"
                )
            reply = self._replies[self._index]
            self._index += 1
        return ScriptedReply(reply) if isinstance(reply, str) else reply

    async def _reply(
        self, messages: list[ChatMessage], options: SamplingOptions, *, partial: str | None
    ) -> ChatResult:
        self.calls.append(RecordedCall(tuple(messages), options, partial))
        reply = self._next_reply(messages, options)
        if self._seconds_per_call:
            await asyncio.sleep(self._seconds_per_call)
        prompt_messages = list(messages)
        if partial is not None:
            prompt_messages.append(ChatMessage(role="assistant", content=partial))
        words = reply.text.split()
        tokens = reply.completion_tokens if reply.completion_tokens is not None else len(words)
        text = reply.text
        finish_reason: str = "stop"
        if tokens > options.max_tokens:
            tokens = options.max_tokens
            text = " ".join(words[: options.max_tokens])
            finish_reason = "length"
        return ChatResult(
            text=text,
            prompt_tokens=self.count_tokens(prompt_messages),
            completion_tokens=tokens,
            model_seconds=self._seconds_per_call,
            finish_reason="length" if finish_reason == "length" else "stop",
            model=self._model_name,
            seed=options.seed,
        )
