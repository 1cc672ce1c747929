"""The Celery app, configured from Ponder's settings when Celery first reads its config."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from core.config import Settings, get_settings

logger = logging.getLogger(__name__)

UNUSED_BROKER_URL = "memory://"
SWEEP_TASK_NAME = "ponder.sweep_stranded_questions"

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
