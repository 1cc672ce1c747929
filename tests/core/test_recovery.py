"""The claims, leases and stranded-question query of core/recovery.py, on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from core.config import Settings
from core.db import session_scope
from core.errors import NotFoundError
from core.models import Question, utcnow
from core.questions import submit_question
from core.recovery import (
    MAX_REDELIVERY_AGE_SECONDS,
    MAX_STRANDED_ATTEMPTS,
    answer_deadline,
    claim_delivery,
    claim_question,
    find_stranded_questions,
    find_undelivered_questions,
    mark_delivered,
    release_delivery_claim,
    requeue_overdue,
    retry_backoff_seconds,
)
from core.schemas import AskRequest

LEASE_SECONDS = 100.0
DELIVERY_LEASE_SECONDS = 50.0


def stored_question(
    engine: Engine,
    settings: Settings,
    *,
    status: str = "queued",
    started_seconds_ago: float | None = None,
    attempts: int = 0,
    age_seconds: float = 0.0,
) -> int:
    question = submit_question(
        engine, settings, AskRequest(platform="telegram", user_id="5", text="What is 2 + 3?")
    )
    assert question.id is not None
    now = utcnow()
    with session_scope(engine) as session:
        stored = session.get(Question, question.id)
        assert stored is not None
        stored.status = status
        stored.attempts = attempts
        stored.created_at = now - timedelta(seconds=age_seconds)
        if started_seconds_ago is not None:
            stored.started_at = now - timedelta(seconds=started_seconds_ago)
        session.add(stored)
    return question.id


def finish(
    engine: Engine,
    question_id: int,
    *,
    finished_seconds_ago: float,
    claimed_seconds_ago: float | None = None,
    delivered: bool = False,
) -> None:
    """Set a stored question's finish time, delivery claim and delivery, relative to now."""
    now = utcnow()
    with session_scope(engine) as session:
        question = session.get(Question, question_id)
        assert question is not None
        question.finished_at = now - timedelta(seconds=finished_seconds_ago)
        if claimed_seconds_ago is not None:
            question.delivery_claimed_at = now - timedelta(seconds=claimed_seconds_ago)
        if delivered:
            question.delivered_at = now
        session.add(question)


def load(engine: Engine, question_id: int) -> Question:
    with session_scope(engine) as session:
        question = session.get(Question, question_id)
    assert question is not None
    return question


def claim(engine: Engine, question_id: int, *, is_redelivery: bool = False) -> str:
    return claim_question(
        engine, question_id, lease_seconds=LEASE_SECONDS, is_redelivery=is_redelivery
    ).state


def test_claim_queued_question(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings)

    claimed = claim_question(
        migrated_engine, question_id, lease_seconds=LEASE_SECONDS, is_redelivery=False
    )

    assert claimed.state == "claimed"
    assert claimed.question.status == "running"
    assert claimed.question.attempts == 1
    assert claimed.question.started_at is not None


def test_second_copy_finds_question_held(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings)
    assert claim(migrated_engine, question_id) == "claimed"
    assert claim(migrated_engine, question_id) == "held"


def test_redelivery_takes_over_running(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(
        migrated_engine, settings, status="running", started_seconds_ago=5, attempts=1
    )

    claimed = claim_question(
        migrated_engine, question_id, lease_seconds=LEASE_SECONDS, is_redelivery=True
    )

    assert claimed.state == "claimed"
    assert claimed.question.attempts == 2


def test_expired_lease_can_be_claimed(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(
        migrated_engine,
        settings,
        status="running",
        started_seconds_ago=LEASE_SECONDS + 1,
        attempts=1,
    )
    assert claim(migrated_engine, question_id) == "claimed"


@pytest.mark.parametrize("status", ["answered", "failed", "refused"])
def test_finished_question_not_claimed(
    migrated_engine: Engine, settings: Settings, status: str
) -> None:
    question_id = stored_question(migrated_engine, settings, status=status)
    assert claim(migrated_engine, question_id, is_redelivery=True) == "finished"


def test_claim_unknown_question(migrated_engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="question 404 does not exist"):
        claim(migrated_engine, 404)


def claim_posting(engine: Engine, question_id: int) -> bool:
    claimed_at = claim_delivery(engine, question_id, lease_seconds=DELIVERY_LEASE_SECONDS)
    return claimed_at is not None


def test_delivery_claimed_once(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")

    first = claim_delivery(migrated_engine, question_id, lease_seconds=DELIVERY_LEASE_SECONDS)
    second = claim_posting(migrated_engine, question_id)
    assert first is not None
    release_delivery_claim(migrated_engine, question_id, first)
    after_release = claim_posting(migrated_engine, question_id)

    assert second is False
    assert after_release is True


def test_delivery_claim_sets_claim_not_delivered(
    migrated_engine: Engine, settings: Settings
) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")

    claimed_at = claim_delivery(migrated_engine, question_id, lease_seconds=DELIVERY_LEASE_SECONDS)

    question = load(migrated_engine, question_id)
    assert claimed_at is not None
    assert question.delivery_claimed_at is not None
    assert question.delivered_at is None


def test_expired_delivery_claim_taken_over(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")
    finish(
        migrated_engine,
        question_id,
        finished_seconds_ago=600,
        claimed_seconds_ago=DELIVERY_LEASE_SECONDS + 1,
    )

    assert claim_posting(migrated_engine, question_id) is True
    assert claim_posting(migrated_engine, question_id) is False


def test_fresh_delivery_claim_not_stolen(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")
    finish(
        migrated_engine,
        question_id,
        finished_seconds_ago=600,
        claimed_seconds_ago=DELIVERY_LEASE_SECONDS - 5,
    )
    assert claim_posting(migrated_engine, question_id) is False


def test_stale_release_keeps_new_claim(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")
    stale = utcnow() - timedelta(seconds=DELIVERY_LEASE_SECONDS + 1)
    assert claim_delivery(
        migrated_engine, question_id, lease_seconds=DELIVERY_LEASE_SECONDS, now=stale
    )
    current = claim_delivery(migrated_engine, question_id, lease_seconds=DELIVERY_LEASE_SECONDS)

    release_delivery_claim(migrated_engine, question_id, stale)

    assert current is not None
    assert load(migrated_engine, question_id).delivery_claimed_at is not None
    assert claim_posting(migrated_engine, question_id) is False


def test_delivered_question_not_claimed(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="answered")
    assert claim_posting(migrated_engine, question_id) is True

    marked = mark_delivered(migrated_engine, question_id)
    marked_again = mark_delivered(migrated_engine, question_id)
    finish(
        migrated_engine,
        question_id,
        finished_seconds_ago=600,
        claimed_seconds_ago=DELIVERY_LEASE_SECONDS + 1,
    )

    assert marked is True
    assert marked_again is False
    assert load(migrated_engine, question_id).delivered_at is not None
    assert claim_posting(migrated_engine, question_id) is False


def test_unfinished_delivery_not_claimed(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(migrated_engine, settings, status="running")
    assert claim_posting(migrated_engine, question_id) is False


def test_find_undelivered_questions(migrated_engine: Engine, settings: Settings) -> None:
    def answered(**timing: float) -> int:
        question_id = stored_question(migrated_engine, settings, status="answered")
        finish(migrated_engine, question_id, **timing)
        return question_id

    never_claimed = answered(finished_seconds_ago=120)
    expired_claim = answered(
        finished_seconds_ago=120, claimed_seconds_ago=DELIVERY_LEASE_SECONDS + 1
    )
    answered(finished_seconds_ago=120, claimed_seconds_ago=DELIVERY_LEASE_SECONDS - 5)
    answered(finished_seconds_ago=10)
    answered(finished_seconds_ago=MAX_REDELIVERY_AGE_SECONDS + 60)
    delivered = stored_question(migrated_engine, settings, status="failed")
    finish(migrated_engine, delivered, finished_seconds_ago=120, delivered=True)
    refused = stored_question(migrated_engine, settings, status="refused")
    finish(migrated_engine, refused, finished_seconds_ago=120)
    unfinished = stored_question(migrated_engine, settings, status="running")
    finish(migrated_engine, unfinished, finished_seconds_ago=120)

    found = find_undelivered_questions(
        migrated_engine,
        now=utcnow(),
        finished_after_seconds=60,
        delivery_lease_seconds=DELIVERY_LEASE_SECONDS,
        limit=10,
    )

    assert found == (never_claimed, expired_claim, refused)


def test_find_stranded_questions(migrated_engine: Engine, settings: Settings) -> None:
    old_queued = stored_question(migrated_engine, settings, age_seconds=120)
    stored_question(migrated_engine, settings, age_seconds=10)
    overdue = stored_question(
        migrated_engine, settings, status="running", started_seconds_ago=200, attempts=1
    )
    stored_question(migrated_engine, settings, status="running", started_seconds_ago=20)
    exhausted = stored_question(
        migrated_engine,
        settings,
        status="running",
        started_seconds_ago=200,
        attempts=MAX_STRANDED_ATTEMPTS,
    )
    undelivered = stored_question(migrated_engine, settings, status="answered")
    finish(migrated_engine, undelivered, finished_seconds_ago=120)

    stranded = find_stranded_questions(
        migrated_engine,
        now=utcnow(),
        queued_after_seconds=60,
        lease_seconds=LEASE_SECONDS,
        delivery_lease_seconds=DELIVERY_LEASE_SECONDS,
        limit=10,
    )

    assert stranded.queued == (old_queued,)
    assert stranded.overdue == (overdue,)
    assert stranded.exhausted == (exhausted,)
    assert stranded.undelivered == (undelivered,)


def test_requeue_overdue_releases_tokens(migrated_engine: Engine, settings: Settings) -> None:
    question_id = stored_question(
        migrated_engine, settings, status="running", started_seconds_ago=200, attempts=1
    )
    with session_scope(migrated_engine) as session:
        question = session.get(Question, question_id)
        assert question is not None
        question.reserved_tokens = 700
        session.add(question)
    cutoff = utcnow() - timedelta(seconds=LEASE_SECONDS)

    moved = requeue_overdue(migrated_engine, question_id, started_before=cutoff)
    moved_again = requeue_overdue(migrated_engine, question_id, started_before=cutoff)

    with session_scope(migrated_engine) as session:
        question = session.get(Question, question_id)
    assert moved is True
    assert moved_again is False
    assert question is not None
    assert question.status == "queued"
    assert question.reserved_tokens == 0


def test_deadline_leaves_one_call_before_soft_limit() -> None:
    configured = Settings(  # type: ignore[call-arg]
        _env_file=None, task_soft_time_limit_seconds=600, model_timeout_seconds=120
    )
    assert answer_deadline(1000.0, configured) == 1000.0 + 600 - 120


def test_deadline_at_half_soft_limit_for_slow_models() -> None:
    configured = Settings(  # type: ignore[call-arg]
        _env_file=None, task_soft_time_limit_seconds=60, model_timeout_seconds=120
    )
    assert answer_deadline(0.0, configured) == 30.0


def test_retry_backoff_repeats_last_value() -> None:
    configured = Settings(_env_file=None, model_retry_backoff_seconds="1,4")  # type: ignore[call-arg]
    waits = [retry_backoff_seconds(configured, retries) for retries in range(4)]
    assert waits == [1.0, 4.0, 4.0, 4.0]
