"""`ponder beat` and `ponder flower`: the scheduler of periodic tasks and the monitoring UI."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from bots.cli.common import fail
from core.config import get_settings

BEAT_SCHEDULE_FILE_NAME = "celerybeat-schedule"


def beat(
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Start Celery beat, which runs the sweep of stranded questions periodically.

    Run exactly one beat per deployment, or the sweep runs once per beat.
    """
    settings = get_settings()
    if not settings.broker_url:
        fail(
            "PONDER_BROKER_URL is not set; beat sends periodic tasks to a broker, for example "
            "PONDER_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    from tasks.app import app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule_path = settings.data_dir / BEAT_SCHEDULE_FILE_NAME
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule_path}"])


def flower(
    address: Annotated[str, typer.Option(help="Address the web UI binds to.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the web UI.")] = 5555,
) -> None:
    """Start Flower, a web UI that shows workers, queues and tasks."""
    settings = get_settings()
    if not settings.broker_url:
        fail(
            "PONDER_BROKER_URL is not set; Flower monitors a broker, for example "
            "PONDER_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    if importlib.util.find_spec("flower") is None:
        fail("Flower is not installed; install it with `pip install 'ponder[monitoring]'`")
    from tasks.app import app

    app.start(["flower", f"--address={address}", f"--port={port}"])
