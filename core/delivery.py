"""The interface between the worker and a chat platform's delivery code."""

from __future__ import annotations

from typing import Protocol

from core.models import Question
from core.schemas import AdapterLimits, Reply
from core.strategies.base import Progress


class Deliverer(Protocol):
    """Posts progress and the final answer for one platform. One instance per worker process."""

    limits: AdapterLimits

    async def started(self, question: Question) -> None:
        """Tell the asker that work has begun (a typing action or a progress message)."""
        ...

    async def progress(self, question: Question, progress: Progress) -> None:
        """Update the progress message; implementations throttle and may drop updates."""
        ...

    async def deliver(self, question: Question, reply: Reply) -> list[str]:
        """Post the final answer or error and return the ids of the messages posted.

        The worker records those ids so that a reply to any of them becomes a follow-up.
        """
        ...

    async def close(self) -> None:
        """Release network clients."""
        ...


class NullDeliverer:
    """For the console: the asking process reads the answer from the database."""

    limits = AdapterLimits(max_message_chars=1_000_000, can_edit=False, min_edit_interval_seconds=0)

    async def started(self, question: Question) -> None:
        return None

    async def progress(self, question: Question, progress: Progress) -> None:
        return None

    async def deliver(self, question: Question, reply: Reply) -> list[str]:
        return []

    async def close(self) -> None:
        return None
