"""Throttled progress edits: at most one edit of a progress message per interval.

A strategy may report progress many times a second. Each report replaces the text waiting to be
sent, and one background task sends the newest text once the interval since the previous edit
has passed. The strategy never waits for Discord, and a failed or rate-limited edit delays or
drops progress text but never the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from core.errors import DeliveryError

logger = logging.getLogger(__name__)

EditFunction = Callable[[str], Awaitable[None]]
Clock = Callable[[], float]


class ProgressThrottle:
    """Coalesces progress texts for one message into edits at least `interval_seconds` apart."""

    def __init__(
        self,
        edit: EditFunction,
        *,
        interval_seconds: float,
        label: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._edit = edit
        self._interval_seconds = interval_seconds
        self._label = label
        self._clock = clock
        self._pending: str | None = None
        self._last_sent: str | None = None
        self._last_edit_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_editing = False
        self._is_closed = False
        self.edits_sent = 0
        self.edits_failed = 0

    def submit(self, text: str) -> None:
        """Queue `text` as the next progress text, replacing any text not yet sent."""
        if self._is_closed or text == self._last_sent:
            return
        self._pending = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_pending(), name=f"progress {self._label}")

    async def _send_pending(self) -> None:
        while self._pending is not None and not self._is_closed:
            if self._last_edit_at is not None:
                wait_seconds = self._last_edit_at + self._interval_seconds - self._clock()
                if wait_seconds > 0:
                    await asyncio.sleep(wait_seconds)
                    continue
            text, self._pending = self._pending, None
            # The interval counts from the start of an edit, so a slow edit (one that waited
            # out a 429) does not shorten the gap before the next.
            self._last_edit_at = self._clock()
            self._is_editing = True
            try:
                await self._edit(text)
            except DeliveryError as exc:
                self.edits_failed += 1
                logger.warning("progress edit of %s failed; dropping it: %s", self._label, exc)
            else:
                self.edits_sent += 1
                self._last_sent = text
            finally:
                self._is_editing = False

    def abandon(self) -> None:
        """Stop sending progress at once, cancelling any edit in flight."""
        self._is_closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def close(self, *, timeout_seconds: float) -> None:
        """Stop sending progress, waiting up to `timeout_seconds` for an edit in flight.

        The answer replaces the progress text, so an edit that finished after it would hide the
        answer; waiting for the edit in flight keeps the order.
        """
        self._is_closed = True
        task = self._task
        if task is None or task.done():
            return
        if self._is_editing:
            done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
            if done:
                return
            logger.warning(
                "progress edit of %s still running after %.0f s; cancelling it",
                self._label,
                timeout_seconds,
            )
        task.cancel()
        await asyncio.wait({task})
