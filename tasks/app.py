"""The Celery app, configured from Ponder's settings when Celery first reads its config."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from core.config import Settings, get_settings

logger = logging.getLogger(__name__)

# The broker redelivers an unacknowledged task after this long, so every task time limit must
# stay below it or a slow task would run twice at once.
VISIBILITY_TIMEOUT_SECONDS = 3_600
TASK_SOFT_TIME_LIMIT_SECONDS = 1_200
TASK_HARD_TIME_LIMIT_SECONDS = 1_320
UNUSED_BROKER_URL = "memory://"

app = Celery("ponder", include=["tasks.answer"])


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return Celery's settings for Ponder's settings."""
    return {
        "broker_url": settings.broker_url or UNUSED_BROKER_URL,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
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
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_SECONDS,
        "task_time_limit": TASK_HARD_TIME_LIMIT_SECONDS,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


@app.on_configure.connect
def _configure(sender: Celery, **_kwargs: Any) -> None:
    sender.conf.update(celery_config(get_settings()))
