"""The periodic sweep: re-enqueue questions whose task was lost, give up on ones that keep dying.

Beat runs it every `sweep_interval_seconds`. It finds, in the database:

- questions still queued after `sweep_queued_after_seconds`: their task may never have reached
  the broker, or the broker lost it. They are enqueued again.
- running questions whose lease expired (started longer ago than the hard time limit plus a
  grace): their worker died and nothing redelivered the task. They are set back to queued and
  enqueued again, or marked failed once started MAX_STRANDED_ATTEMPTS times.
- finished questions whose answer is still undelivered `sweep_queued_after_seconds` after they
  finished, and whose delivery claim is free or expired: their delivery task was lost, or its
  worker died while posting. Their delivery is enqueued again.

A question that is still in the broker gets a second task; the claims in core/recovery.py make
the second one stop at once. A Redis marker per question and task keeps the sweep from adding
more than one task of each kind per question in each `sweep_queued_after_seconds`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine

from core.answering import record_failure
from core.config import Settings
from core.errors import PonderError
from core.models import utcnow
from core.ratelimit import REDIS_SCHEMES, redis_client
from core.recovery import (
    MAX_STRANDED_ATTEMPTS,
    find_stranded_questions,
    lease_seconds,
    requeue_overdue,
)
from tasks.answer import deliver_answer, enqueue, enqueue_answer
from tasks.app import SWEEP_TASK_NAME, app
from tasks.runtime import get_runtime

logger = logging.getLogger(__name__)

SWEEP_BATCH_SIZE = 500
MARKER_KEY_PREFIX = "ponder:sweep:"
DELIVERY_MARKER_KEY_PREFIX = "ponder:sweep-delivery:"


@dataclass(frozen=True, slots=True)
class SweepReport:
    """The questions one sweep acted on, by id."""

    requeued: tuple[int, ...]
    recovered: tuple[int, ...]
    failed: tuple[int, ...]
    redelivered: tuple[int, ...]


def sweep(engine: Engine, settings: Settings, *, now: datetime) -> SweepReport:
    """Re-enqueue stranded questions and lost deliveries, and fail exhausted questions, as seen
    at `now`."""
    lease = lease_seconds(settings.task_hard_time_limit_seconds)
    stranded = find_stranded_questions(
        engine,
        now=now,
        queued_after_seconds=settings.sweep_queued_after_seconds,
        lease_seconds=lease,
        delivery_lease_seconds=settings.delivery_lease_seconds,
        limit=SWEEP_BATCH_SIZE,
    )

    failed = [question_id for question_id in stranded.exhausted if _give_up(engine, question_id)]
    started_before = now - timedelta(seconds=lease)
    recovered = [
        question_id
        for question_id in stranded.overdue
        if requeue_overdue(engine, question_id, started_before=started_before)
    ]
    requeued = [
        question_id
        for question_id in (*recovered, *stranded.queued)
        if _mark_enqueued(settings, question_id, key_prefix=MARKER_KEY_PREFIX)
    ]
    for question_id in requeued:
        enqueue_answer(question_id)
    redelivered = [
        question_id
        for question_id in stranded.undelivered
        if _mark_enqueued(settings, question_id, key_prefix=DELIVERY_MARKER_KEY_PREFIX)
    ]
    for question_id in redelivered:
        enqueue(deliver_answer, question_id)

    if failed or requeued:
        logger.warning(
            "sweep: enqueued %d question(s) again (%d abandoned by their worker), failed %d: %s",
            len(requeued),
            len(recovered),
            len(failed),
            [*requeued, *failed],
        )
    if redelivered:
        logger.warning(
            "sweep: enqueued the delivery of %d undelivered answer(s) again: %s",
            len(redelivered),
            redelivered,
        )
    return SweepReport(
        requeued=tuple(requeued),
        recovered=tuple(recovered),
        failed=tuple(failed),
        redelivered=tuple(redelivered),
    )


def _give_up(engine: Engine, question_id: int) -> bool:
    error = PonderError(
        f"question {question_id} was started {MAX_STRANDED_ATTEMPTS} times and its worker "
        "stopped each time before finishing; check the worker logs for crashes or time limits",
        user_message="Ponder could not finish this question. Please ask again, perhaps in a "
        "shorter form.",
    )
    reply = record_failure(engine, question_id, error)
    if reply.status != "failed":
        return False
    enqueue(deliver_answer, question_id)
    return True


def _mark_enqueued(settings: Settings, question_id: int, *, key_prefix: str) -> bool:
    """Set the question's Redis marker under `key_prefix`; return False if the sweep set it in
    the last period."""
    url = settings.broker_url
    if not url or url.split(":", 1)[0] not in REDIS_SCHEMES:
        return True
    key = f"{settings.broker_key_prefix}{key_prefix}{question_id}"
    period_seconds = max(1, int(settings.sweep_queued_after_seconds))
    try:
        return bool(redis_client(url).set(key, "1", nx=True, ex=period_seconds))
    except redis.RedisError as exc:
        logger.warning("sweep: Redis marker for question %d failed (%s)", question_id, exc)
        return True


@app.task(name=SWEEP_TASK_NAME)
def sweep_stranded_questions() -> dict[str, int]:
    """Run the sweep now; beat schedules this task."""
    runtime = get_runtime()
    report = sweep(runtime.engine, runtime.settings, now=utcnow())
    return {
        "requeued": len(report.requeued),
        "recovered": len(report.recovered),
        "failed": len(report.failed),
        "redelivered": len(report.redelivered),
    }
