"""Tests for the queue depth the planner reads: real Redis, a queue of this test's own."""

from __future__ import annotations

import uuid

import pytest
import redis

from core.config import Settings
from tasks.answer import queue_depth


def _settings(redis_url: str, queue: str, **extra: object) -> Settings:
    return Settings(_env_file=None, broker_url=redis_url, task_queue=queue, **extra)  # type: ignore[call-arg]


def test_queue_depth_without_broker() -> None:
    assert queue_depth(Settings(_env_file=None)) == 0  # type: ignore[call-arg]


@pytest.mark.redis
def test_queue_depth_of_empty_queue(redis_url: str) -> None:
    queue = f"ponder-test-{uuid.uuid4().hex[:10]}"

    assert queue_depth(_settings(redis_url, queue)) == 0


@pytest.mark.redis
def test_queue_depth_counts_waiting_tasks(redis_url: str) -> None:
    queue = f"ponder-test-{uuid.uuid4().hex[:10]}"
    settings = _settings(redis_url, queue)
    client = redis.Redis.from_url(redis_url)
    try:
        # Celery's Redis transport keeps a queue as a list named after it; the depth is its
        # length, whatever the messages contain.
        client.lpush(queue, "task 1", "task 2", "task 3")

        assert queue_depth(settings) == 3
    finally:
        client.delete(queue)
        client.close()


@pytest.mark.redis
def test_queue_depth_with_key_prefix(redis_url: str) -> None:
    queue = f"ponder-test-{uuid.uuid4().hex[:10]}"
    settings = _settings(redis_url, queue, broker_key_prefix="tenant-a:")
    client = redis.Redis.from_url(redis_url)
    try:
        client.lpush(f"tenant-a:{queue}", "1", "2")

        assert queue_depth(settings) == 2
    finally:
        client.delete(f"tenant-a:{queue}")
        client.close()


def test_queue_depth_when_broker_unreachable() -> None:
    # Port 1 on loopback refuses connections, so the read fails fast and counts as empty.
    settings = Settings(_env_file=None, broker_url="redis://127.0.0.1:1/0")  # type: ignore[call-arg]

    assert queue_depth(settings) == 0
