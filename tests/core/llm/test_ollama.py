"""Tests for the Ollama client against a fake Ollama HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from core.config import Settings
from core.errors import (
    ConfigurationError,
    ModelBusyError,
    ModelNotFoundError,
    ModelResponseError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from core.llm.base import ChatMessage, ModelClient, SamplingOptions, ThinkLevel
from core.llm.factory import create_model_client
from core.llm.ollama import (
    OllamaClient,
    RawPromptTemplate,
    estimate_text_tokens,
    translate_error,
)
from tests.conftest import ponder_executable
from tests.fakes.ollama_server import FakeOllamaServer, FakeReply, Fault

MODEL = "qwen2.5:7b"
ANSWER = "2 + 3 = 5. The answer is 5."
THINKING = "The user adds two small numbers."
# "The" 1, " user" 2, " adds" 2, " two" 1, " small" 2, " numbers" 3, "." 1.
THINKING_ESTIMATE = 12
QUESTION = [ChatMessage(role="user", content="What is 2 + 3?")]
SHORT_TIMEOUT_SECONDS = 0.5
# A failed call must end well before the fake server's 5 s hang is over.
TIMEOUT_GRACE_SECONDS = 1.5
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllamaServer]:
    server = FakeOllamaServer(models=[MODEL, "llama3:latest"]).start()
    yield server
    server.stop()


@pytest.fixture(params=[True, False], ids=["streaming", "non-streaming"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
async def client(fake_ollama: FakeOllamaServer, stream: bool) -> AsyncIterator[OllamaClient]:
    ollama_client = OllamaClient(
        host=fake_ollama.url, model=MODEL, timeout_seconds=5.0, stream=stream
    )
    yield ollama_client
    await ollama_client.close()


def closed_port_url() -> str:
    """Return the URL of a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_client_satisfies_protocol(fake_ollama: FakeOllamaServer) -> None:
    ollama_client = OllamaClient(host=fake_ollama.url, model=MODEL, timeout_seconds=1.0)

    assert isinstance(ollama_client, ModelClient)

    asyncio.run(ollama_client.close())


async def test_chat_parses_counts_and_seconds(client: OllamaClient) -> None:
    result = await client.chat(QUESTION, SamplingOptions(seed=7))

    assert result.text == ANSWER
    assert result.prompt_tokens == 26
    assert result.completion_tokens == 12
    assert result.model_seconds == 0.75
    assert result.finish_reason == "stop"
    assert result.model == MODEL
    assert result.seed == 7
    assert result.thinking == ""
    assert result.thinking_tokens == 0
    assert result.token_logprobs is None


async def test_chat_sends_stream_flag(
    client: OllamaClient, fake_ollama: FakeOllamaServer, stream: bool
) -> None:
    await client.chat(QUESTION, SamplingOptions())

    assert fake_ollama.last_body()["stream"] is stream


async def test_streaming_equals_non_streaming(fake_ollama: FakeOllamaServer) -> None:
    fake_ollama.reply = FakeReply(eval_count=40)
    options = SamplingOptions(seed=3, think=True, top_logprobs=2)
    streaming = OllamaClient(host=fake_ollama.url, model=MODEL, timeout_seconds=5.0)
    whole = OllamaClient(host=fake_ollama.url, model=MODEL, timeout_seconds=5.0, stream=False)

    streamed = await streaming.chat(QUESTION, options)
    single = await whole.chat(QUESTION, options)
    await streaming.close()
    await whole.close()

    assert streamed == single
    assert streamed.token_logprobs == single.token_logprobs
    assert streamed.thinking == THINKING


async def test_chat_maps_sampling_options(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    options = SamplingOptions(
        temperature=0.7, seed=42, max_tokens=64, stop=("\n\n", "Question:"), top_p=0.9
    )
    messages = [ChatMessage(role="system", content="Be brief."), *QUESTION]

    await client.chat(messages, options)

    body = fake_ollama.last_body()
    assert fake_ollama.requests[-1].path == "/api/chat"
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert body["options"] == {
        "temperature": 0.7,
        "num_predict": 64,
        "seed": 42,
        "stop": ["\n\n", "Question:"],
        "top_p": 0.9,
    }


async def test_chat_leaves_out_unset_options(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    await client.chat(QUESTION, SamplingOptions())

    body = fake_ollama.last_body()
    assert body["options"] == {"temperature": 0.0, "num_predict": 256}
    assert "think" not in body
    assert "logprobs" not in body
    assert "top_logprobs" not in body


@pytest.mark.parametrize("think", [True, "high"])
async def test_think_sent_and_thinking_counted(
    client: OllamaClient, fake_ollama: FakeOllamaServer, think: ThinkLevel
) -> None:
    fake_ollama.reply = FakeReply(eval_count=40)

    result = await client.chat(QUESTION, SamplingOptions(think=think))

    assert fake_ollama.last_body()["think"] == think
    assert result.thinking == THINKING
    assert result.text == ANSWER
    assert result.completion_tokens == 40
    assert result.thinking_tokens == THINKING_ESTIMATE
    assert estimate_text_tokens(THINKING) == THINKING_ESTIMATE


async def test_think_false_sent(client: OllamaClient, fake_ollama: FakeOllamaServer) -> None:
    result = await client.chat(QUESTION, SamplingOptions(think=False))

    assert fake_ollama.last_body()["think"] is False
    assert result.thinking == ""
    assert result.thinking_tokens == 0


async def test_thinking_tokens_capped_at_eval_count(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.reply = FakeReply(eval_count=5)

    result = await client.chat(QUESTION, SamplingOptions(think=True))

    assert result.completion_tokens == 5
    assert result.thinking_tokens == 5


@pytest.mark.parametrize(
    ("done_reason", "finish_reason"), [("length", "length"), ("stop", "stop"), ("unload", "stop")]
)
async def test_done_reason_maps_to_finish_reason(
    client: OllamaClient, fake_ollama: FakeOllamaServer, done_reason: str, finish_reason: str
) -> None:
    fake_ollama.reply = FakeReply(done_reason=done_reason)

    result = await client.chat(QUESTION, SamplingOptions())

    assert result.finish_reason == finish_reason


async def test_total_duration_without_eval_durations(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.reply = FakeReply(prompt_eval_duration_ns=None, eval_duration_ns=None)

    result = await client.chat(QUESTION, SamplingOptions())

    assert result.model_seconds == 0.9


async def test_wall_time_without_any_duration(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.reply = FakeReply(
        prompt_eval_duration_ns=None, eval_duration_ns=None, total_duration_ns=None
    )

    result = await client.chat(QUESTION, SamplingOptions())

    assert result.model_seconds > 0
    assert result.model_seconds < 5


async def test_missing_counts_use_estimates(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.reply = FakeReply(prompt_eval_count=None, eval_count=None)

    result = await client.chat(QUESTION, SamplingOptions())

    # 10 tokens of text, 8 for the message and 32 for the request.
    assert result.prompt_tokens == 50
    assert result.completion_tokens == estimate_text_tokens(ANSWER)
    assert estimate_text_tokens(ANSWER) == 17


async def test_top_logprobs_requested_and_parsed(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    result = await client.chat(QUESTION, SamplingOptions(top_logprobs=2))

    body = fake_ollama.last_body()
    assert body["logprobs"] is True
    assert body["top_logprobs"] == 2
    # The fake replies with one entry per word of the answer, 9 in all.
    assert result.token_logprobs == ((-0.25, -0.5),) * 9


async def test_continue_chat_sends_raw_prompt(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    messages = [ChatMessage(role="system", content="Be brief."), *QUESTION]
    partial = "Let me think. 2 + 3"

    result = await client.continue_chat(
        messages, partial, SamplingOptions(max_tokens=32, think=True, stop=("Wait",))
    )

    request = fake_ollama.requests[-1]
    assert request.path == "/api/generate"
    assert request.body["raw"] is True
    assert request.body["prompt"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\nLet me think. 2 + 3"
    )
    assert request.body["prompt"].endswith(partial)
    assert request.body["options"] == {
        "temperature": 0.0,
        "num_predict": 32,
        "stop": ["Wait", "<|im_end|>"],
    }
    assert "think" not in request.body
    assert result.text == ANSWER
    assert result.prompt_tokens == 26
    assert result.completion_tokens == 12


async def test_continue_chat_uses_given_template(fake_ollama: FakeOllamaServer) -> None:
    template = RawPromptTemplate(
        message="[{role}] {content}\n", assistant_start="[assistant] ", stop=("[user]",)
    )
    ollama_client = OllamaClient(
        host=fake_ollama.url, model=MODEL, timeout_seconds=5.0, raw_template=template
    )

    await ollama_client.continue_chat(QUESTION, "It is", SamplingOptions())
    await ollama_client.close()

    body = fake_ollama.last_body()
    assert body["prompt"] == "[user] What is 2 + 3?\n[assistant] It is"
    assert body["options"]["stop"] == ["[user]"]


async def test_list_models(client: OllamaClient) -> None:
    assert await client.list_models() == [MODEL, "llama3:latest"]


@pytest.mark.parametrize(
    ("model", "expected"), [(MODEL, True), ("llama3", True), ("llama3:8b", False)]
)
async def test_has_model(fake_ollama: FakeOllamaServer, model: str, expected: bool) -> None:
    ollama_client = OllamaClient(host=fake_ollama.url, model=model, timeout_seconds=5.0)

    found = await ollama_client.has_model()
    await ollama_client.close()

    assert found is expected


async def test_connection_refused_is_unavailable(stream: bool) -> None:
    host = closed_port_url()
    ollama_client = OllamaClient(host=host, model=MODEL, timeout_seconds=5.0, stream=stream)

    with pytest.raises(ModelUnavailableError) as caught:
        await ollama_client.chat(QUESTION, SamplingOptions())
    await ollama_client.close()

    assert str(caught.value) == (
        f"cannot reach Ollama at {host}: connection refused; start it with `ollama serve` "
        "or fix PONDER_OLLAMA_HOST"
    )
    assert caught.value.__cause__ is not None


async def test_has_model_unreachable_raises() -> None:
    host = closed_port_url()
    ollama_client = OllamaClient(host=host, model=MODEL, timeout_seconds=5.0)

    with pytest.raises(ModelUnavailableError) as caught:
        await ollama_client.has_model()
    await ollama_client.close()

    assert host in str(caught.value)
    assert "connection refused" in str(caught.value)


def test_host_name_failure_is_unavailable() -> None:
    host = "http://ollama.invalid:11434"
    error = httpx.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    translated = translate_error(error, host=host, model=MODEL, timeout_seconds=5.0)

    assert isinstance(translated, ModelUnavailableError)
    assert str(translated) == (
        f"cannot reach Ollama at {host}: host name not found (Name or service not known); "
        "start it with `ollama serve` or fix PONDER_OLLAMA_HOST"
    )


async def test_unknown_model_is_not_found(fake_ollama: FakeOllamaServer, stream: bool) -> None:
    ollama_client = OllamaClient(
        host=fake_ollama.url, model="llama3:8b", timeout_seconds=5.0, stream=stream
    )

    with pytest.raises(ModelNotFoundError) as caught:
        await ollama_client.chat(QUESTION, SamplingOptions())
    await ollama_client.close()

    assert str(caught.value) == (
        f"model 'llama3:8b' is not pulled on {fake_ollama.url} "
        "(Ollama: model 'llama3:8b' not found); run `ollama pull llama3:8b`"
    )
    assert isinstance(caught.value.__cause__, ollama.ResponseError)


async def test_continue_chat_unknown_model_is_not_found(fake_ollama: FakeOllamaServer) -> None:
    ollama_client = OllamaClient(host=fake_ollama.url, model="llama3:8b", timeout_seconds=5.0)

    with pytest.raises(ModelNotFoundError) as caught:
        await ollama_client.continue_chat(QUESTION, "It is", SamplingOptions())
    await ollama_client.close()

    assert "run `ollama pull llama3:8b`" in str(caught.value)


async def test_status_503_is_busy(client: OllamaClient, fake_ollama: FakeOllamaServer) -> None:
    fake_ollama.inject(Fault(kind="status", status_code=503, error=BUSY_ERROR))

    with pytest.raises(ModelBusyError) as caught:
        await client.chat(QUESTION, SamplingOptions())

    assert str(caught.value) == (
        f"Ollama at {fake_ollama.url} is busy (HTTP 503: {BUSY_ERROR}); retry later, or raise "
        "OLLAMA_NUM_PARALLEL or OLLAMA_MAX_QUEUE on the server"
    )


async def test_other_status_is_response_error(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    detail = "model requires more system memory (5.5 GiB) than is available (2.0 GiB)"
    fake_ollama.inject(Fault(kind="status", status_code=500, error=detail))

    with pytest.raises(ModelResponseError) as caught:
        await client.chat(QUESTION, SamplingOptions())

    assert str(caught.value) == (
        f"Ollama at {fake_ollama.url} returned HTTP 500 for model {MODEL!r}: {detail}; check "
        "the request options and the Ollama server log"
    )


async def test_hanging_server_times_out(fake_ollama: FakeOllamaServer, stream: bool) -> None:
    fake_ollama.inject(Fault(kind="hang", hang_seconds=5.0))
    ollama_client = OllamaClient(
        host=fake_ollama.url, model=MODEL, timeout_seconds=SHORT_TIMEOUT_SECONDS, stream=stream
    )

    started = time.monotonic()
    with pytest.raises(ModelTimeoutError) as caught:
        await ollama_client.chat(QUESTION, SamplingOptions())
    elapsed = time.monotonic() - started
    await ollama_client.close()

    assert elapsed >= SHORT_TIMEOUT_SECONDS
    assert elapsed < SHORT_TIMEOUT_SECONDS + TIMEOUT_GRACE_SECONDS
    assert str(caught.value) == (
        f"model {MODEL!r} on Ollama at {fake_ollama.url} timed out after 0.5 s; "
        "raise PONDER_MODEL_TIMEOUT_SECONDS or request fewer tokens"
    )


async def test_dropped_connection_is_response_error(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.inject(Fault(kind="hang", hang_seconds=0.1))

    with pytest.raises(ModelResponseError) as caught:
        await client.chat(QUESTION, SamplingOptions())

    assert str(caught.value).startswith(
        f"the connection to Ollama at {fake_ollama.url} broke during the reply for model "
        f"{MODEL!r}: "
    )
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


def test_model_list_timeout_message() -> None:
    host = "http://127.0.0.1:11434"

    translated = translate_error(
        httpx.ReadTimeout("timed out"), host=host, model=None, timeout_seconds=5.0
    )

    assert isinstance(translated, ModelTimeoutError)
    assert str(translated) == (
        f"the model list on Ollama at {host} timed out after 5 s; "
        "raise PONDER_MODEL_TIMEOUT_SECONDS or request fewer tokens"
    )


async def test_error_mid_stream_is_response_error(fake_ollama: FakeOllamaServer) -> None:
    detail = "an error was encountered while running the model: unexpected EOF"
    fake_ollama.inject(Fault(kind="stream_error", error=detail))
    ollama_client = OllamaClient(host=fake_ollama.url, model=MODEL, timeout_seconds=5.0)

    with pytest.raises(ModelResponseError) as caught:
        await ollama_client.chat(QUESTION, SamplingOptions())
    await ollama_client.close()

    assert str(caught.value) == (
        f"Ollama at {fake_ollama.url} reported an error part-way through the reply for model "
        f"{MODEL!r}: {detail}; retry, and check the Ollama server log if it happens again"
    )


async def test_stream_without_final_part_is_response_error(
    fake_ollama: FakeOllamaServer,
) -> None:
    fake_ollama.inject(Fault(kind="truncated"))
    ollama_client = OllamaClient(host=fake_ollama.url, model=MODEL, timeout_seconds=5.0)

    with pytest.raises(ModelResponseError) as caught:
        await ollama_client.chat(QUESTION, SamplingOptions())
    await ollama_client.close()

    assert str(caught.value) == (
        f"the reply of model {MODEL!r} from Ollama at {fake_ollama.url} ended before its final "
        "part; retry, and check the Ollama server log if it happens again"
    )


async def test_malformed_json_is_response_error(
    client: OllamaClient, fake_ollama: FakeOllamaServer
) -> None:
    fake_ollama.inject(Fault(kind="malformed"))

    with pytest.raises(ModelResponseError) as caught:
        await client.chat(QUESTION, SamplingOptions())

    message = str(caught.value)
    assert message.startswith(
        f"Ollama at {fake_ollama.url} sent a malformed reply for model {MODEL!r}: "
    )
    assert message.endswith("; check that PONDER_OLLAMA_HOST points at an Ollama server")
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_empty_model_name_rejected() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OllamaClient(host="http://127.0.0.1:11434", model=" ", timeout_seconds=5.0)

    assert str(caught.value) == "the Ollama model name is empty; set PONDER_OLLAMA_MODEL"


def test_factory_builds_ollama_client(settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "model_backend": "ollama",
            "ollama_host": "http://127.0.0.1:11500",
            "ollama_model": "llama3:8b",
            "model_timeout_seconds": 7.0,
            "model_parallelism": 3,
        }
    )

    created = create_model_client(configured)

    assert isinstance(created, OllamaClient)
    assert created.host == "http://127.0.0.1:11500"
    assert created.model_name == "llama3:8b"
    assert created.timeout_seconds == 7.0
    assert created.max_parallel == 3
    asyncio.run(created.close())


COUNT_CASES = {
    "prose": [
        ChatMessage(role="system", content="You are a knowledgeable assistant."),
        ChatMessage(role="user", content="What is the capital of France?"),
    ],
    "no system message": [ChatMessage(role="user", content="hi")],
    "digits": [ChatMessage(role="user", content="What is 123456789 * 987654321?")],
    "code": [ChatMessage(role="user", content="def f(x):\n    return x**2 + 3*x - 7\n")],
    "accents and CJK": [
        ChatMessage(role="user", content="Le café est très chaud. 日本の首都はどこですか?")
    ],
    "emoji": [ChatMessage(role="user", content="🙂🙂 emoji test 🚀")],
    "base64 and hex": [
        ChatMessage(role="user", content="aGVsbG8gd29ybGQ= 3f9a2c7e1b0d4e5f6a7b8c9d0e1f2a3b")
    ],
    "consonant runs": [ChatMessage(role="user", content="xqzjvk wplmrt zzxq HTTPS JSON")],
    "multi-turn": [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="What is 2 + 2?"),
        ChatMessage(role="assistant", content="4"),
        ChatMessage(role="user", content="And 40 + 2?"),
    ],
}


@pytest.mark.model
def test_count_tokens_over_estimates_real_tokenizer() -> None:
    from core.llm.embedded import EmbeddedClient

    embedded = EmbeddedClient(context_tokens=512)
    ollama_client = OllamaClient(host="http://127.0.0.1:11434", model=MODEL, timeout_seconds=1.0)

    for name, messages in COUNT_CASES.items():
        estimate = ollama_client.count_tokens(messages)
        real = embedded.count_tokens(messages)
        assert estimate >= real, f"{name}: estimate {estimate} < real {real}"
    asyncio.run(embedded.close())
    asyncio.run(ollama_client.close())


@pytest.mark.model
def test_count_tokens_prose_within_twice_real() -> None:
    from core.llm.embedded import EmbeddedClient

    embedded = EmbeddedClient(context_tokens=512)
    ollama_client = OllamaClient(host="http://127.0.0.1:11434", model=MODEL, timeout_seconds=1.0)
    messages = [
        ChatMessage(role="system", content="You are a knowledgeable assistant."),
        ChatMessage(
            role="user",
            content=(
                "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning "
                "and bakes muffins for her friends every day with four. She sells the remainder "
                "at the farmers' market daily for $2 per fresh duck egg. How much in dollars "
                "does she make every day at the farmers' market?"
            ),
        ),
    ]

    estimate = ollama_client.count_tokens(messages)
    real = embedded.count_tokens(messages)
    asyncio.run(embedded.close())
    asyncio.run(ollama_client.close())

    assert estimate <= 2 * real


@pytest.mark.slow
def test_ponder_ask_json_through_ollama(
    ponder_env: dict[str, str], fake_ollama: FakeOllamaServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PONDER_MODEL_BACKEND": "ollama",
        "PONDER_OLLAMA_HOST": fake_ollama.url,
        "PONDER_OLLAMA_MODEL": MODEL,
        "PONDER_MODEL_TIMEOUT_SECONDS": "10",
    }

    completed = subprocess.run(
        [
            ponder_executable(),
            "ask",
            "--json",
            "--user",
            "cli:tester",
            "--strategy",
            "direct",
            "What is 2 + 3?",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    payload = json.loads(completed.stdout)
    assert payload["status"] == "answered"
    assert payload["answer"] == ANSWER
    assert payload["prompt_tokens"] == 26
    assert payload["completion_tokens"] == 12
    assert payload["calls"] == 1
    assert payload["model_seconds"] == 0.75
    assert payload["model"] == MODEL
    body = fake_ollama.last_body()
    assert body["model"] == MODEL
    assert body["messages"][-1] == {"role": "user", "content": "What is 2 + 3?"}
