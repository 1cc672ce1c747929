"""The Ollama backend: chat and raw continuation over Ollama's HTTP API with the `ollama` package.

One `OllamaClient` per process wraps one `ollama.AsyncClient`, that is, one httpx connection pool,
and every call runs under a timeout. Errors of the `ollama` package, httpx and the socket layer
are translated into Ponder's model errors in `_translated_errors` and `translate_error`, keeping
the cause.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import re
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import httpx
import ollama
import pydantic
from ollama import ChatResponse, GenerateResponse

from core.errors import (
    ConfigurationError,
    ModelBusyError,
    ModelError,
    ModelNotFoundError,
    ModelResponseError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from core.llm.base import ChatMessage, ChatResult, FinishReason, SamplingOptions, ThinkLevel

logger = logging.getLogger(__name__)

__all__ = [
    "CHATML_TEMPLATE",
    "OllamaClient",
    "RawPromptTemplate",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
    "translate_error",
]

HOST_SETTING = "PONDER_OLLAMA_HOST"
TIMEOUT_SETTING = "PONDER_MODEL_TIMEOUT_SECONDS"
NANOSECONDS_PER_SECOND = 1_000_000_000
NO_STATUS_CODE = -1

# ChatML wraps each message in 5 tokens: <|im_start|>, the role, a newline, <|im_end|>, a newline.
# The other 3 are a margin for templates with longer message headers.
TOKENS_PER_MESSAGE = 8
# Fixed text a chat template adds once per request: the assistant header and, in templates
# such as SmolLM2's, a default system message when the request has none. Those two take 25
# tokens with SmolLM2's tokenizer.
TOKENS_PER_REQUEST = 32

# Pieces that BPE and SentencePiece tokenizers do not merge across. A piece is a word of ASCII
# letters with its leading space, split at case changes as in "getHTTPServer", or one digit
# (SmolLM2's tokenizer gives each digit its own token), or a whitespace run, or any other
# single character.
_TOKEN_PIECE = re.compile(r" ?(?:[A-Z]?[a-z]+|[A-Z]+(?![a-z]))|[0-9]|\s+|.", re.DOTALL)
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_LETTERS_PER_WORD_TOKEN = 3
_SPACES_PER_TOKEN = 2

PartT = TypeVar("PartT", ChatResponse, GenerateResponse)


@dataclass(frozen=True, slots=True)
class RawPromptTemplate:
    """A chat template as plain text, for raw continuation on /api/generate.

    `message` is a `str.format` pattern with the fields `role` and `content`; `stop` contains
    the strings that end an assistant turn.
    """

    message: str
    assistant_start: str
    stop: tuple[str, ...]

    def render(self, messages: Sequence[ChatMessage], partial: str) -> str:
        """Render the messages, then open an assistant turn that starts with `partial`."""
        rendered = "".join(
            self.message.format(role=message.role, content=message.content) for message in messages
        )
        return rendered + self.assistant_start + partial


CHATML_TEMPLATE = RawPromptTemplate(
    message="<|im_start|>{role}\n{content}<|im_end|>\n",
    assistant_start="<|im_start|>assistant\n",
    stop=("<|im_end|>",),
)


def _word_tokens(word: str) -> int:
    # A run without a vowel is usually an abbreviation or random text (hashes, base64), and
    # tokenizers split those into single letters. Known words take a token per 3 to 6 letters.
    if _VOWEL.search(word) is None:
        return len(word)
    return math.ceil(len(word) / _LETTERS_PER_WORD_TOKEN)


def estimate_text_tokens(text: str) -> int:
    """Return an upper estimate of the tokens of `text`, without the model's tokenizer.

    Digits and punctuation count one token each, non-ASCII characters one per UTF-8 byte (the
    byte fallback of a tokenizer that does not know them), whitespace one per two characters,
    and words one per three letters.

    >>> estimate_text_tokens("What is 12 + 30?")
    12
    """
    total = 0
    for match in _TOKEN_PIECE.finditer(text):
        piece = match.group()
        if piece.isspace():
            total += math.ceil(len(piece) / _SPACES_PER_TOKEN)
        elif piece[-1].isascii() and piece[-1].isalpha():
            total += _word_tokens(piece.lstrip(" "))
        else:
            total += len(piece.encode("utf-8"))
    return total


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    """Return an upper estimate of the prompt tokens of a chat request."""
    return TOKENS_PER_REQUEST + sum(
        estimate_text_tokens(message.content) + TOKENS_PER_MESSAGE for message in messages
    )


def ollama_options(options: SamplingOptions, *, extra_stop: Sequence[str] = ()) -> dict[str, Any]:
    """Map Ponder's sampling settings to Ollama's request `options`; unset ones are left out.

    A request's `stop` list takes the place of the stop list in the model's Modelfile, so `stop`
    is sent only when there is something to stop at.
    """
    mapped: dict[str, Any] = {"temperature": options.temperature, "num_predict": options.max_tokens}
    if options.seed is not None:
        mapped["seed"] = options.seed
    stop = [*options.stop, *extra_stop]
    if stop:
        mapped["stop"] = stop
    if options.top_p is not None:
        mapped["top_p"] = options.top_p
    return mapped


class _ChatArguments(TypedDict):
    """Keyword arguments of `ollama.AsyncClient.chat` except `stream`; None values are not sent."""

    model: str
    messages: list[dict[str, str]]
    options: dict[str, Any]
    think: ThinkLevel | None
    logprobs: bool | None
    top_logprobs: int | None


class _GenerateArguments(TypedDict):
    """Keyword arguments of `ollama.AsyncClient.generate` except `stream`."""

    model: str
    prompt: str
    raw: bool
    options: dict[str, Any]
    logprobs: bool | None
    top_logprobs: int | None


@dataclass(frozen=True, slots=True)
class _Reply:
    """A whole reply: the text and thinking of every part, and the final part's statistics."""

    text: str
    thinking: str
    final: ChatResponse | GenerateResponse
    top_logprobs: tuple[tuple[float, ...], ...]


def _chat_piece(part: ChatResponse) -> tuple[str, str]:
    return part.message.content or "", part.message.thinking or ""


def _generate_piece(part: GenerateResponse) -> tuple[str, str]:
    return part.response or "", part.thinking or ""


def _top_logprobs(part: ChatResponse | GenerateResponse) -> tuple[tuple[float, ...], ...]:
    return tuple(
        tuple(candidate.logprob for candidate in entry.top_logprobs or ())
        for entry in part.logprobs or ()
    )


async def _collect(
    parts: AsyncIterator[PartT], piece: Callable[[PartT], tuple[str, str]]
) -> _Reply | None:
    """Join streamed parts into one reply; return None when the stream ends before `done`."""
    texts: list[str] = []
    thoughts: list[str] = []
    top_logprobs: list[tuple[float, ...]] = []
    try:
        async for part in parts:
            text, thinking = piece(part)
            texts.append(text)
            thoughts.append(thinking)
            top_logprobs.extend(_top_logprobs(part))
            if part.done:
                return _Reply("".join(texts), "".join(thoughts), part, tuple(top_logprobs))
        return None
    finally:
        # A timeout can interrupt the loop; closing the generator releases its connection now.
        if isinstance(parts, AsyncGenerator):
            await parts.aclose()


def _single(part: PartT, piece: Callable[[PartT], tuple[str, str]]) -> _Reply:
    text, thinking = piece(part)
    return _Reply(text, thinking, part, _top_logprobs(part))


def _model_seconds(final: ChatResponse | GenerateResponse, *, wall_seconds: float) -> float:
    """Return the server's compute time: prompt and generation, else the total, else wall time."""
    if final.eval_duration is not None:
        return (final.eval_duration + (final.prompt_eval_duration or 0)) / NANOSECONDS_PER_SECOND
    if final.total_duration is not None:
        return final.total_duration / NANOSECONDS_PER_SECOND
    return wall_seconds


def _to_result(
    reply: _Reply,
    *,
    model: str,
    options: SamplingOptions,
    prompt_estimate: int,
    wall_seconds: float,
) -> ChatResult:
    final = reply.final
    # Ollama versions before July 2024 left out prompt_eval_count when they reused a cached
    # prompt. The estimate then keeps the ledger from under-counting.
    prompt_tokens = final.prompt_eval_count
    if prompt_tokens is None:
        prompt_tokens = prompt_estimate
    completion_tokens = final.eval_count
    if completion_tokens is None:
        completion_tokens = estimate_text_tokens(reply.thinking + reply.text)
    # NOTE: Ollama's eval_count includes thinking tokens but does not report how many, so
    # thinking_tokens is estimated from the thinking text, capped at eval_count.
    thinking_tokens = min(estimate_text_tokens(reply.thinking), completion_tokens)
    finish_reason: FinishReason = "length" if final.done_reason == "length" else "stop"
    return ChatResult(
        text=reply.text,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model_seconds=_model_seconds(final, wall_seconds=wall_seconds),
        finish_reason=finish_reason,
        model=model,
        seed=options.seed,
        thinking=reply.thinking,
        thinking_tokens=thinking_tokens,
        token_logprobs=reply.top_logprobs or None,
    )


class OllamaClient:
    """A model client for one model on an Ollama server.

    Replies are streamed by default, as Ollama does when a request leaves `stream` unset. A
    stream reports an error that happens part-way as a final error object, which this client
    then raises.
    """

    def __init__(
        self,
        *,
        host: str,
        model: str,
        timeout_seconds: float,
        max_parallel: int = 1,
        stream: bool = True,
        raw_template: RawPromptTemplate = CHATML_TEMPLATE,
    ) -> None:
        if not model.strip():
            raise ConfigurationError("the Ollama model name is empty; set PONDER_OLLAMA_MODEL")
        if timeout_seconds <= 0:
            raise ConfigurationError(
                f"invalid model timeout {timeout_seconds!r} s; set {TIMEOUT_SETTING} above 0"
            )
        self._host = host
        self._model = model
        self._timeout_seconds = timeout_seconds
        self._max_parallel = max_parallel
        self._stream = stream
        self._raw_template = raw_template
        self._client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout_seconds))

    @property
    def host(self) -> str:
        return self._host

    @property
    def timeout_seconds(self) -> float:
        return self._timeout_seconds

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Return an over-estimate of the prompt tokens, because Ollama has no tokenize endpoint.

        The estimate assumes a tokenizer at least as coarse as SmolLM2's: one token per digit,
        punctuation mark and non-ASCII byte, one per three letters of a word, plus 8 tokens per
        message and 32 per request for the chat template.
        """
        # NOTE: random letter strings that contain vowels (for example generated identifiers)
        # can take more tokens than estimated.
        return estimate_prompt_tokens(messages)

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        """Send the messages to /api/chat and return the assistant's reply."""
        # NOTE: Ollama silently drops the start of a prompt longer than the model's context
        # length (its `num_ctx` option), which this client leaves at the server's default.
        arguments = _ChatArguments(
            model=self._model,
            messages=[{"role": m.role, "content": m.content} for m in messages],
            options=ollama_options(options),
            think=options.think,
            logprobs=options.top_logprobs > 0 or None,
            top_logprobs=options.top_logprobs or None,
        )

        started = time.monotonic()
        async with self._translated_errors(model=self._model):
            if self._stream:
                reply = await _collect(
                    await self._client.chat(**arguments, stream=True), _chat_piece
                )
            else:
                reply = _single(await self._client.chat(**arguments, stream=False), _chat_piece)
        if reply is None:
            raise self._incomplete_stream_error()

        result = _to_result(
            reply,
            model=self._model,
            options=options,
            prompt_estimate=self.count_tokens(messages),
            wall_seconds=time.monotonic() - started,
        )
        self._log_call("chat", result)
        return result

    async def continue_chat(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        """Continue the assistant message `partial` with a raw prompt on /api/generate.

        Raw mode skips the model's own template, so the prompt is rendered with the client's
        `raw_template`, and `think` is not sent: a thinking model's reasoning stays in the text.
        """
        # NOTE: the default template is ChatML, which is right for ChatML models (Qwen, SmolLM)
        # only. Other models need their own RawPromptTemplate.
        prompt = self._raw_template.render(messages, partial)
        arguments = _GenerateArguments(
            model=self._model,
            prompt=prompt,
            raw=True,
            options=ollama_options(options, extra_stop=self._raw_template.stop),
            logprobs=options.top_logprobs > 0 or None,
            top_logprobs=options.top_logprobs or None,
        )

        started = time.monotonic()
        async with self._translated_errors(model=self._model):
            if self._stream:
                reply = await _collect(
                    await self._client.generate(**arguments, stream=True), _generate_piece
                )
            else:
                reply = _single(
                    await self._client.generate(**arguments, stream=False), _generate_piece
                )
        if reply is None:
            raise self._incomplete_stream_error()

        result = _to_result(
            reply,
            model=self._model,
            options=options,
            prompt_estimate=self.count_tokens(
                [*messages, ChatMessage(role="assistant", content=partial)]
            ),
            wall_seconds=time.monotonic() - started,
        )
        self._log_call("raw continuation", result)
        return result

    async def list_models(self) -> list[str]:
        """Return the names of the models pulled on the server (GET /api/tags)."""
        async with self._translated_errors(model=None):
            response = await self._client.list()
        return [entry.model for entry in response.models if entry.model]

    async def has_model(self) -> bool:
        """Tell whether the configured model is pulled; a name without a tag means `:latest`.

        Raises ModelUnavailableError and the other model errors when the list request fails.
        """
        names = set(await self.list_models())
        return self._model in names or f"{self._model}:latest" in names

    async def close(self) -> None:
        """Close the connection pool; calling it again does nothing."""
        # The `ollama` package leaves AsyncClient.close without type hints.
        await self._client.close()  # type: ignore[no-untyped-call]
        logger.debug("closed the Ollama client for %s", self._host)

    @asynccontextmanager
    async def _translated_errors(self, *, model: str | None) -> AsyncIterator[None]:
        """Run one call under the timeout and turn library errors into Ponder's model errors."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                yield
        except (
            ollama.ResponseError,
            ConnectionError,
            TimeoutError,
            httpx.TransportError,
            json.JSONDecodeError,
            pydantic.ValidationError,
        ) as exc:
            raise translate_error(
                exc, host=self._host, model=model, timeout_seconds=self._timeout_seconds
            ) from exc

    def _incomplete_stream_error(self) -> ModelResponseError:
        return ModelResponseError(
            f"the reply of model {self._model!r} from Ollama at {self._host} ended before its "
            "final part; retry, and check the Ollama server log if it happens again"
        )

    def _log_call(self, kind: str, result: ChatResult) -> None:
        logger.debug(
            "ollama %s on %s: %d+%d tokens (%d thinking), %.2f s, finish %s",
            kind,
            self._model,
            result.prompt_tokens,
            result.completion_tokens,
            result.thinking_tokens,
            result.model_seconds,
            result.finish_reason,
        )


def _connect_failure_reason(exc: BaseException) -> str:
    """Name the socket-level cause of a failed connection, searching the exception chain."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"host name not found ({cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def _subject(model: str | None) -> str:
    return "the model list" if model is None else f"model {model!r}"


def _status_error(exc: ollama.ResponseError, *, host: str, model: str | None) -> ModelError:
    """Translate an error reply of the server: an HTTP status, or an error object in a stream."""
    status, detail = exc.status_code, exc.error
    if status == NO_STATUS_CODE:
        return ModelResponseError(
            f"Ollama at {host} reported an error part-way through the reply for "
            f"{_subject(model)}: {detail}; retry, and check the Ollama server log if it "
            "happens again"
        )
    if status == httpx.codes.NOT_FOUND and model is not None:
        return ModelNotFoundError(
            f"model {model!r} is not pulled on {host} (Ollama: {detail}); run `ollama pull {model}`"
        )
    if status == httpx.codes.SERVICE_UNAVAILABLE:
        return ModelBusyError(
            f"Ollama at {host} is busy (HTTP 503: {detail}); retry later, or raise "
            "OLLAMA_NUM_PARALLEL or OLLAMA_MAX_QUEUE on the server"
        )
    return ModelResponseError(
        f"Ollama at {host} returned HTTP {status} for {_subject(model)}: {detail}; check the "
        "request options and the Ollama server log"
    )


def translate_error(
    exc: Exception, *, host: str, model: str | None, timeout_seconds: float
) -> ModelError:
    """Return the Ponder model error for an exception of `ollama`, httpx or the socket layer.

    `model` is None for calls that name no model, such as listing models.
    """
    if isinstance(exc, ollama.ResponseError):
        return _status_error(exc, host=host, model=model)
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return ModelUnavailableError(
            f"cannot reach Ollama at {host}: {_connect_failure_reason(exc)}; start it with "
            f"`ollama serve` or fix {HOST_SETTING}"
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ModelTimeoutError(
            f"{_subject(model)} on Ollama at {host} timed out after {timeout_seconds:g} s; "
            f"raise {TIMEOUT_SETTING} or request fewer tokens"
        )
    if isinstance(exc, httpx.TransportError):
        return ModelResponseError(
            f"the connection to Ollama at {host} broke during the reply for {_subject(model)}: "
            f"{str(exc) or type(exc).__name__}; retry, and check the Ollama server log if it "
            "happens again"
        )
    return ModelResponseError(
        f"Ollama at {host} sent a malformed reply for {_subject(model)}: {exc}; check that "
        f"{HOST_SETTING} points at an Ollama server"
    )
