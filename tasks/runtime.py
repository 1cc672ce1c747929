"""Per-process resources for tasks: settings, database engine, model client and an event loop.

Celery tasks are synchronous, while model clients are async and must keep one connection pool
for the life of the process. A single event loop runs in a background thread, and tasks submit
coroutines to it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy import Engine

from core.config import Settings, get_settings
from core.db import create_db_engine, ensure_schema
from core.llm.base import ModelClient
from core.llm.factory import create_model_client

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Runtime:
    """Shared resources of one worker process, created lazily on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._client: ModelClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                url = self.settings.resolved_database_url
                self._engine = create_db_engine(url)
                ensure_schema(self._engine, url)
            return self._engine

    @property
    def client(self) -> ModelClient:
        with self._lock:
            if self._client is None:
                self._client = create_model_client(self.settings)
            return self._client

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="ponder-event-loop", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the process's event loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._event_loop())
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Close the model client and stop the loop; safe to call more than once."""
        loop, client = self._loop, self._client
        if loop is not None and client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(10)
            except Exception:
                logger.exception("closing the model client failed")
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._engine is not None:
            self._engine.dispose()
        self._loop = self._client = self._engine = None


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """Return this process's runtime, creating it on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
            atexit.register(_runtime.close)
        return _runtime


def reset_runtime() -> None:
    """Close and forget the runtime, for a forked child or a test that changes settings."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
        _runtime = None
