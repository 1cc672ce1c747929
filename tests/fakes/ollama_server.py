"""A fake Ollama server for tests: a real HTTP server on 127.0.0.1 that speaks Ollama's API.

It serves /api/chat and /api/generate (one JSON object, or NDJSON parts with chunked transfer
encoding when the request streams) and /api/tags. A model that is not in `models` gets Ollama's
404 reply. Each test can set the reply and its statistics, inject one fault, and read the
requests the server received.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

LOOPBACK = "127.0.0.1"
CREATED_AT = "2025-01-01T00:00:00.000000Z"
MODIFIED_AT = "2025-01-01T00:00:00Z"
DEFAULT_HANG_SECONDS = 5.0
IDLE_CONNECTION_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.05

FaultKind = Literal["status", "hang", "stream_error", "malformed", "truncated"]


@dataclass(kw_only=True)
class FakeReply:
    """The fake model's reply, with the statistics Ollama puts in the final part.

    A statistic set to None is left out of the reply. Each alternative in `top_logprobs`
    replies has log-probability -0.25 times its rank, starting at rank 1.
    """

    content: str = "2 + 3 = 5. The answer is 5."
    thinking: str = "The user adds two small numbers."
    prompt_eval_count: int | None = 26
    eval_count: int | None = 12
    prompt_eval_duration_ns: int | None = 150_000_000
    eval_duration_ns: int | None = 600_000_000
    total_duration_ns: int | None = 900_000_000
    done_reason: str = "stop"


@dataclass(kw_only=True)
class Fault:
    """A failure the server injects into every generation request until cleared.

    - `status` replies with `status_code` and `{"error": error}`.
    - `hang` waits `hang_seconds`, or until the server stops, and closes the connection
      without a reply.
    - `stream_error` streams one part and then `{"error": error}`.
    - `malformed` sends text that is not JSON.
    - `truncated` streams the parts but leaves out the final `done` part.
    """

    kind: FaultKind
    status_code: int = HTTPStatus.INTERNAL_SERVER_ERROR
    error: str = "fake failure"
    hang_seconds: float = DEFAULT_HANG_SECONDS


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class FakeOllamaState:
    """The configuration and the request log that handler threads share."""

    models: list[str] = field(default_factory=lambda: ["qwen2.5:7b"])
    reply: FakeReply = field(default_factory=FakeReply)
    fault: Fault | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _split_words(text: str) -> list[str]:
    """Split text into stream pieces of one word and its trailing space each."""
    return re.findall(r"\S+\s*|\s+", text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS
    server: _FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    @property
    def state(self) -> FakeOllamaState:
        return self.server.state

    def do_GET(self) -> None:
        self._record({})
        if self.path == "/api/tags":
            self._send_json(HTTPStatus.OK, {"models": [_tag(name) for name in self.state.models]})
        else:
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
        self._record(body)
        if self.path not in ("/api/chat", "/api/generate"):
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        model = str(body.get("model", ""))
        if model not in self.state.models:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"model '{model}' not found"})
            return
        with self.state.lock:
            fault, reply = self.state.fault, self.state.reply
        if fault is not None and self._apply_fault(fault):
            return
        if body.get("stream", True):
            self._stream(body, reply, fault)
        else:
            self._send_json(HTTPStatus.OK, _whole_reply(self.path, body, reply))

    def _record(self, body: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.requests.append(RecordedRequest(self.command, self.path, body))

    def _apply_fault(self, fault: Fault) -> bool:
        """Inject a fault that replaces the whole reply; return False for in-stream faults."""
        if fault.kind == "status":
            self._send_json(fault.status_code, {"error": fault.error})
            return True
        if fault.kind == "hang":
            self.state.stopping.wait(fault.hang_seconds)
            self.close_connection = True
            return True
        if fault.kind == "malformed":
            self._send_text(HTTPStatus.OK, '{"model": "broken', content_type="application/json")
            return True
        return False

    def _stream(self, body: dict[str, Any], reply: FakeReply, fault: Fault | None) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        parts = _stream_parts(self.path, body, reply)
        if fault is not None and fault.kind == "stream_error":
            parts = [parts[0], {"error": fault.error}]
        elif fault is not None and fault.kind == "truncated":
            parts = parts[:-1]
        for part in parts:
            self._write_chunk(json.dumps(part).encode() + b"\n")
        self._write_chunk(b"")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send_text(status, json.dumps(payload), content_type="application/json")

    def _send_text(self, status: int, text: str, *, content_type: str = "text/plain") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 4_683_087_332,
        "digest": "0" * 64,
        "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B"},
    }


def _wants_thinking(body: dict[str, Any]) -> bool:
    return body.get("think") not in (None, False)


def _logprobs(body: dict[str, Any], pieces: list[str]) -> list[dict[str, Any]] | None:
    if not body.get("logprobs"):
        return None
    count = int(body.get("top_logprobs") or 0)
    return [
        {
            "token": piece,
            "logprob": -0.25,
            "top_logprobs": [
                {"token": f"{piece}#{rank}", "logprob": -0.25 * rank}
                for rank in range(1, count + 1)
            ],
        }
        for piece in pieces
    ]


def _statistics(reply: FakeReply) -> dict[str, Any]:
    values = {
        "done_reason": reply.done_reason,
        "total_duration": reply.total_duration_ns,
        "load_duration": 1_000_000,
        "prompt_eval_count": reply.prompt_eval_count,
        "prompt_eval_duration": reply.prompt_eval_duration_ns,
        "eval_count": reply.eval_count,
        "eval_duration": reply.eval_duration_ns,
    }
    return {name: value for name, value in values.items() if value is not None}


def _part(
    path: str,
    body: dict[str, Any],
    *,
    content: str,
    thinking: str,
    logprobs: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Build one reply object without statistics, in the shape of the endpoint."""
    part: dict[str, Any] = {"model": body["model"], "created_at": CREATED_AT, "done": False}
    if path == "/api/chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        part["message"] = message
    else:
        part["response"] = content
        if thinking:
            part["thinking"] = thinking
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def _whole_reply(path: str, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
    thinking = reply.thinking if _wants_thinking(body) else ""
    logprobs = _logprobs(body, _split_words(reply.content))
    part = _part(path, body, content=reply.content, thinking=thinking, logprobs=logprobs)
    return {**part, "done": True, **_statistics(reply)}


def _stream_parts(path: str, body: dict[str, Any], reply: FakeReply) -> list[dict[str, Any]]:
    """Return the thinking parts, then one part per word, then the final part."""
    parts: list[dict[str, Any]] = []
    if _wants_thinking(body):
        for piece in _split_words(reply.thinking):
            parts.append(_part(path, body, content="", thinking=piece, logprobs=None))
    for piece in _split_words(reply.content):
        logprobs = _logprobs(body, [piece])
        parts.append(_part(path, body, content=piece, thinking="", logprobs=logprobs))
    final = _part(path, body, content="", thinking="", logprobs=None)
    parts.append({**final, "done": True, **_statistics(reply)})
    return parts


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeOllamaState) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that times out or closes a kept-alive connection resets it; that is expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeOllamaServer:
    """The fake server, run in a background thread between `start()` and `stop()`."""

    def __init__(self, *, models: list[str] | None = None) -> None:
        self.state = FakeOllamaState()
        if models is not None:
            self.state.models = list(models)
        self._server = _FakeHTTPServer(self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_SECONDS},
            name="fake-ollama",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def reply(self) -> FakeReply:
        return self.state.reply

    @reply.setter
    def reply(self, reply: FakeReply) -> None:
        with self.state.lock:
            self.state.reply = reply

    def inject(self, fault: Fault | None) -> None:
        """Make every later generation request fail this way; None clears the fault."""
        with self.state.lock:
            self.state.fault = fault

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def last_body(self) -> dict[str, Any]:
        """Return the JSON body of the newest request."""
        requests = self.requests
        assert requests, "the fake Ollama server has received no request"
        return requests[-1].body

    def start(self) -> FakeOllamaServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release handlers that hang, so the test ends promptly."""
        self.state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
