"""What a Discord delivery has posted so far, kept in the question's `delivery` field.

The worker that runs a question and the worker that delivers it may be different processes, and
a delivery may be retried after a crash. Recording the progress message and each posted answer
part in the database lets any process finish a delivery without posting a part twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from sqlalchemy import Engine

from core.db import create_db_engine, session_scope
from core.delivery_records import posted_parts as recorded_parts
from core.delivery_records import record_posted_part
from core.models import TERMINAL_STATUSES, Question

logger = logging.getLogger(__name__)

PROGRESS_MESSAGE_KEY = "progress_message_id"


def progress_message_id(question: Question) -> int | None:
    """Return the id of the question's progress message, when one was posted."""
    value = question.delivery.get(PROGRESS_MESSAGE_KEY)
    return int(value) if value is not None else None


def posted_parts(question: Question) -> dict[int, int]:
    """Return the message id of each answer part already posted, by part index."""
    return {index: int(message_id) for index, message_id in recorded_parts(question).items()}


class DeliveryRecords:
    """Writes delivery progress into questions, on an engine opened on first use."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = create_db_engine(self._database_url)
            return self._engine

    async def is_finished(self, question_id: int) -> bool:
        """Tell whether the question has an answer or error, so progress edits must stop."""
        return await asyncio.to_thread(self._is_finished, question_id)

    def _is_finished(self, question_id: int) -> bool:
        with session_scope(self._get_engine()) as session:
            question = session.get(Question, question_id)
            return question is None or question.status in TERMINAL_STATUSES

    async def remember_progress_message(self, question_id: int, message_id: int) -> None:
        await asyncio.to_thread(self._update, question_id, PROGRESS_MESSAGE_KEY, str(message_id))

    async def remember_part(self, question_id: int, index: int, message_id: int) -> None:
        await asyncio.to_thread(
            record_posted_part,
            self._get_engine(),
            question_id,
            index=index,
            message_id=str(message_id),
        )

    def _update(self, question_id: int, key: str, value: Any) -> None:
        with session_scope(self._get_engine()) as session:
            question = session.get(Question, question_id, with_for_update=True)
            if question is None:
                return
            question.delivery = {**question.delivery, key: value}
            session.add(question)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
