"""The Celery app, configured from Ponder's settings when Celery first reads its config."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from core.config import Settings, get_settings

logger = logging.getLogger(__name__)

UNUSED_BROKER_URL = "memory://"
SWEEP_TASK_NAME = "ponder.sweep_stranded_questions"
# Redis serves the lowest priority step first. Deliveries go ahead of questions still to answer,
# so that a finished answer does not wait behind a backlog of questions. The priorities come
# from task routes, applied as each task is sent. task_default_priority stays unset: a task class
# copies it when bound, it then overrides the routes, and threads that send their first tasks at
# the same moment can miss it.
PRIORITY_STEPS = [0, 3, 6, 9]
DELIVERY_PRIORITY = 0
DEFAULT_PRIORITY = 6
TASK_PRIORITIES = {
    "ponder.deliver_answer": DELIVERY_PRIORITY,
    "ponder.answer_question": DEFAULT_PRIORITY,
    SWEEP_TASK_NAME: DEFAULT_PRIORITY,
}

app = Celery("ponder", include=["tasks.answer", "tasks.sweep"])


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return Celery's settings for Ponder's settings.

    The broker hands an unacknowledged task to another worker after the visibility timeout, so
    Settings rejects task time limits that are not below it: a slow task would run twice at once.
    """
    return {
        "broker_url": settings.broker_url or UNUSED_BROKER_URL,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "global_keyprefix": settings.broker_key_prefix,
            "priority_steps": PRIORITY_STEPS,
        },
        # A route without a queue would send to the queue Celery cached at its first send.
        "task_routes": {
            name: {"queue": settings.task_queue, "priority": priority}
            for name, priority in TASK_PRIORITIES.items()
        },
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.task_queue,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Late acknowledgement plus reject-on-worker-lost: a worker killed mid-answer leaves the
        # task in the broker, which hands it to another worker; tasks are idempotent by id.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_hard_time_limit_seconds,
        "beat_schedule": {
            "sweep-stranded-questions": {
                "task": SWEEP_TASK_NAME,
                "schedule": settings.sweep_interval_seconds,
            }
        },
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


@app.on_configure.connect
def _configure(sender: Celery, **_kwargs: Any) -> None:
    sender.conf.update(celery_config(get_settings()))
