"""Fake platform and model servers run in background threads, for synchronous tests that drive
real worker subprocesses, and for benchmarks/burst.py.

- `BackgroundBotApi` runs the fake Telegram Bot API (an aiohttp app) on its own event loop.
- `start_delayed_ollama` starts the fake Ollama server with a fixed delay before each reply to
  /api/chat and /api/generate, to control how long a model call takes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any

from tests.fakes.ollama_server import FakeOllamaServer, _Handler
from tests.fakes.telegram_server import FakeBotApi

TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
GENERATION_PATHS = ("/api/chat", "/api/generate")


class BackgroundBotApi:
    """The fake Telegram Bot API, served from a thread between `start()` and `stop()`."""

    def __init__(self, token: str = TELEGRAM_TOKEN) -> None:
        self.api = FakeBotApi(token=token)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-telegram", daemon=True
        )

    @property
    def base_url(self) -> str:
        return self.api.base_url

    def start(self) -> BackgroundBotApi:
        self._thread.start()
        self._run(self.api.start())
        return self

    def stop(self) -> None:
        self._run(self.api.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def sent_texts(self, chat_id: str) -> list[str]:
        """Return the texts of the messages sent to `chat_id`, oldest first."""
        return [
            str(request.params.get("text"))
            for request in list(self.api.requests)
            if request.method == "sendMessage"
            and request.status == 200
            and str(request.params.get("chat_id")) == chat_id
        ]

    def messages_per_chat(self) -> Counter[str]:
        """Count the messages sent successfully to each chat."""
        return Counter(
            str(request.params.get("chat_id"))
            for request in list(self.api.requests)
            if request.method == "sendMessage" and request.status == 200
        )

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=10)


def start_delayed_ollama(
    delay_seconds: float, *, models: list[str] | None = None
) -> FakeOllamaServer:
    """Start a fake Ollama server that waits `delay_seconds` before each generation reply."""

    class DelayedHandler(_Handler):
        def do_POST(self) -> None:
            if self.path in GENERATION_PATHS:
                time.sleep(delay_seconds)
            super().do_POST()

    server = FakeOllamaServer(models=models)
    # The fake builds its HTTP server with its own handler class; swap in the delayed one.
    server._server.RequestHandlerClass = DelayedHandler
    return server.start()
