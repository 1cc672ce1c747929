"""Claims that keep answering and delivery safe when a task runs twice, and the stranded-question
query behind the periodic sweep.

A task can run twice: the broker redelivers it after a worker dies, the sweep re-enqueues a
question whose task was lost, or a retry overlaps a duplicate. Two rules keep that harmless:

- Answering: a worker claims a question with one conditional UPDATE. It may claim a queued
  question, or a running one whose lease (its start plus the hard time limit) has expired. It
  may also claim any running one when the broker marked the message as redelivered: the broker
  redelivers only after the worker that had it died or its visibility timeout passed, and the
  hard time limit is below that timeout. Every other copy finds the question held and stops.
- Delivery: a worker claims the posting with one conditional UPDATE that sets
  `delivery_claimed_at`, posts, and only then sets `delivered_at`. The claim is a lease: a copy
  may take it over once `delivery_lease_seconds` have passed, so a worker that died while posting
  delays the answer instead of losing it. A failed post clears the claim for the retry. The
  adapters record each posted part in `Question.delivery`, so the copy that takes over posts only
  the parts still missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, and_, or_, update
from sqlmodel import col, select

from core.config import Settings
from core.db import session_scope
from core.errors import NotFoundError
from core.models import TERMINAL_STATUSES, Question, utcnow

logger = logging.getLogger(__name__)

ClaimState = Literal["claimed", "finished", "held"]
MAX_STRANDED_ATTEMPTS = 3
# The sweep stops redelivering an answer that is still undelivered this long after the question
# finished, so that a chat that rejects every post is not retried forever.
MAX_REDELIVERY_AGE_SECONDS = 24 * 3600.0
# Added to the hard time limit before a running question counts as abandoned, to absorb clock
# differences between the worker that started it and the process that checks.
LEASE_GRACE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class QuestionClaim:
    """The outcome of claiming a question: claimed by this task, already finished, or held by
    another live task. `question` is the stored row after the claim."""

    state: ClaimState
    question: Question


@dataclass(frozen=True, slots=True)
class StrandedQuestions:
    """Questions the sweep acts on, by id."""

    queued: tuple[int, ...]
    overdue: tuple[int, ...]
    exhausted: tuple[int, ...]
    undelivered: tuple[int, ...]


def lease_seconds(hard_time_limit_seconds: float) -> float:
    """Return how long after its start a running question is presumed abandoned."""
    return hard_time_limit_seconds + LEASE_GRACE_SECONDS


def answer_deadline(started: float, settings: Settings) -> float:
    """Return the `time.monotonic()` moment after which a strategy starts no new model call.

    One model call may take up to the model timeout, so the deadline stops new calls that long
    before the soft time limit, and the strategy returns its best answer in time. With a model
    timeout above half the soft limit, the deadline is at half the soft limit.
    """
    soft = settings.task_soft_time_limit_seconds
    return started + soft - min(settings.model_timeout_seconds, soft / 2)


def retry_backoff_seconds(settings: Settings, retries_done: int) -> float:
    """Return the wait before retry number `retries_done + 1`; the last configured value repeats."""
    backoff = settings.model_retry_backoff_seconds
    return backoff[min(retries_done, len(backoff) - 1)]


def claim_question(
    engine: Engine,
    question_id: int,
    *,
    lease_seconds: float,
    is_redelivery: bool,
    now: datetime | None = None,
) -> QuestionClaim:
    """Mark the question running for this task and count the attempt, unless a live task has it."""
    # NOTE: after the sweep re-enqueues an abandoned question, the original message still comes
    # back once the visibility timeout passes. Should the sweep's copy still be running then
    # (possible only when twice the hard limit plus the lease grace exceeds the visibility
    # timeout), both copies run; record_answer and the delivery claim still count it once.
    now = now or utcnow()
    running = col(Question.status) == "running"
    if not is_redelivery:
        lease_expired = or_(
            col(Question.started_at).is_(None),
            col(Question.started_at) < now - timedelta(seconds=lease_seconds),
        )
        running = and_(running, lease_expired)
    statement = (
        update(Question)
        .where(col(Question.id) == question_id, or_(col(Question.status) == "queued", running))
        .values(status="running", attempts=col(Question.attempts) + 1, started_at=now)
    )
    with session_scope(engine) as session:
        claimed = session.exec(statement).rowcount == 1
        question = session.get(Question, question_id, populate_existing=True)
    if question is None:
        raise NotFoundError(f"question {question_id} does not exist")
    if claimed:
        return QuestionClaim("claimed", question)
    if question.status in TERMINAL_STATUSES:
        return QuestionClaim("finished", question)
    return QuestionClaim("held", question)


def claim_delivery(
    engine: Engine, question_id: int, *, lease_seconds: float, now: datetime | None = None
) -> datetime | None:
    """Claim the posting of a finished question's answer for `lease_seconds`.

    Return the claim's time, which `release_delivery_claim` takes, or None when the answer is
    delivered, the question is not finished, or another task has an unexpired claim.
    """
    now = now or utcnow()
    claim_free = or_(
        col(Question.delivery_claimed_at).is_(None),
        col(Question.delivery_claimed_at) < now - timedelta(seconds=lease_seconds),
    )
    statement = (
        update(Question)
        .where(
            col(Question.id) == question_id,
            col(Question.delivered_at).is_(None),
            col(Question.status).in_(TERMINAL_STATUSES),
            claim_free,
        )
        .values(delivery_claimed_at=now)
    )
    with session_scope(engine) as session:
        claimed = session.exec(statement).rowcount == 1
    return now if claimed else None


def mark_delivered(engine: Engine, question_id: int, *, now: datetime | None = None) -> bool:
    """Record that the answer reached its chat; return False if it was recorded already."""
    statement = (
        update(Question)
        .where(col(Question.id) == question_id, col(Question.delivered_at).is_(None))
        .values(delivered_at=now or utcnow())
    )
    with session_scope(engine) as session:
        return bool(session.exec(statement).rowcount == 1)


def release_delivery_claim(engine: Engine, question_id: int, claimed_at: datetime) -> None:
    """Clear this task's delivery claim after a failed post, so that the retry can claim it.

    A claim that another task has taken over since (its time differs) is left alone.
    """
    statement = (
        update(Question)
        .where(
            col(Question.id) == question_id,
            col(Question.delivery_claimed_at) == claimed_at,
        )
        .values(delivery_claimed_at=None)
    )
    with session_scope(engine) as session:
        session.exec(statement)


def find_stranded_questions(
    engine: Engine,
    *,
    now: datetime,
    queued_after_seconds: float,
    lease_seconds: float,
    delivery_lease_seconds: float,
    limit: int,
) -> StrandedQuestions:
    """Find questions queued for longer than `queued_after_seconds`, and running questions whose
    lease expired; `exhausted` are overdue ones already started MAX_STRANDED_ATTEMPTS times.

    `undelivered` are questions that finished more than `queued_after_seconds` ago (and less than
    MAX_REDELIVERY_AGE_SECONDS ago) whose answer is not delivered and not claimed by a live task.
    """
    queued_before = now - timedelta(seconds=queued_after_seconds)
    started_before = now - timedelta(seconds=lease_seconds)
    with session_scope(engine) as session:
        queued = session.exec(
            select(Question.id)
            .where(Question.status == "queued", col(Question.created_at) < queued_before)
            .order_by(col(Question.id))
            .limit(limit)
        ).all()
        overdue = session.exec(
            select(Question.id, Question.attempts)
            .where(Question.status == "running", col(Question.started_at) < started_before)
            .order_by(col(Question.id))
            .limit(limit)
        ).all()
    undelivered = find_undelivered_questions(
        engine,
        now=now,
        finished_after_seconds=queued_after_seconds,
        delivery_lease_seconds=delivery_lease_seconds,
        limit=limit,
    )
    return StrandedQuestions(
        queued=tuple(question_id for question_id in queued if question_id is not None),
        overdue=tuple(
            question_id
            for question_id, attempts in overdue
            if question_id is not None and attempts < MAX_STRANDED_ATTEMPTS
        ),
        exhausted=tuple(
            question_id
            for question_id, attempts in overdue
            if question_id is not None and attempts >= MAX_STRANDED_ATTEMPTS
        ),
        undelivered=undelivered,
    )


def find_undelivered_questions(
    engine: Engine,
    *,
    now: datetime,
    finished_after_seconds: float,
    delivery_lease_seconds: float,
    limit: int,
) -> tuple[int, ...]:
    """Find finished questions whose answer is not delivered and not claimed by a live task.

    A question qualifies once it finished more than `finished_after_seconds` ago, which leaves
    its own delivery task time to run, and until MAX_REDELIVERY_AGE_SECONDS after it finished.
    """
    finished_before = now - timedelta(seconds=finished_after_seconds)
    finished_since = now - timedelta(seconds=MAX_REDELIVERY_AGE_SECONDS)
    claim_expired = or_(
        col(Question.delivery_claimed_at).is_(None),
        col(Question.delivery_claimed_at) < now - timedelta(seconds=delivery_lease_seconds),
    )
    with session_scope(engine) as session:
        found = session.exec(
            select(Question.id)
            .where(
                col(Question.delivered_at).is_(None),
                col(Question.finished_at) < finished_before,
                col(Question.finished_at) >= finished_since,
                col(Question.status).in_(TERMINAL_STATUSES),
                claim_expired,
            )
            .order_by(col(Question.id))
            .limit(limit)
        ).all()
    return tuple(question_id for question_id in found if question_id is not None)


def requeue_overdue(engine: Engine, question_id: int, *, started_before: datetime) -> bool:
    """Put a running question whose lease expired back to queued and release its reserved
    tokens, as a retry does; return False if the question moved on meanwhile."""
    statement = (
        update(Question)
        .where(
            col(Question.id) == question_id,
            col(Question.status) == "running",
            col(Question.started_at) < started_before,
        )
        .values(
            status="queued",
            reserved_tokens=0,
            error="its worker stopped before finishing; queued again",
        )
    )
    with session_scope(engine) as session:
        return bool(session.exec(statement).rowcount == 1)
