"""`ponder worker`: start a Celery worker for Ponder's queue."""

from __future__ import annotations

from typing import Annotated

import typer

from bots.cli.common import fail
from core.config import get_settings


def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, help="Worker processes; each loads its own model.")
    ] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Worker node name.")] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo or threads.")] = "prefork",
) -> None:
    """Start a worker that answers queued questions."""
    settings = get_settings()
    if not settings.broker_url:
        fail(
            "PONDER_BROKER_URL is not set; a worker needs a broker, for example "
            "PONDER_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    from tasks.app import app

    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--queues={settings.task_queue}",
        f"--pool={pool}",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)
