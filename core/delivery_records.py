"""The record of which answer parts a delivery has posted, kept in `Question.delivery`.

A delivery may be retried in another worker process after a crash or a lost task. Each adapter
records every part right after the platform accepts it, so the retry posts only the parts that
are missing. The record maps the part's index to the platform's message id, both as strings,
under POSTED_PARTS_KEY. The Discord and Telegram adapters both write it through this module.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from core.db import session_scope
from core.models import Question

logger = logging.getLogger(__name__)

POSTED_PARTS_KEY = "posted_parts"


def posted_parts(question: Question) -> dict[int, str]:
    """Return the message id of each answer part recorded as posted, by part index."""
    raw: dict[str, Any] = question.delivery.get(POSTED_PARTS_KEY) or {}
    return {int(index): str(message_id) for index, message_id in raw.items()}


def record_posted_part(engine: Engine, question_id: int, *, index: int, message_id: str) -> None:
    """Add one posted part to the question's record; a question that does not exist is skipped.

    The row lock (on PostgreSQL) keeps two concurrent writers from dropping each other's parts.
    """
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None:
            logger.warning("question %d not found; part %d is not recorded", question_id, index)
            return
        parts = dict(question.delivery.get(POSTED_PARTS_KEY) or {})
        parts[str(index)] = message_id
        # A new dict, because SQLAlchemy does not notice changes inside a JSON value.
        question.delivery = {**question.delivery, POSTED_PARTS_KEY: parts}
        session.add(question)
