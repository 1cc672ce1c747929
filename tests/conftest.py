"""Shared fixtures: isolated settings, real PostgreSQL and Redis, and a real Celery worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import Engine

from core.config import Settings, get_settings
from core.db import create_db_engine, upgrade
from tasks.app import app as celery_app
from tasks.app import celery_config
from tasks.delivery import forget_deliverers
from tasks.runtime import reset_runtime

POSTGRES_ADMIN_URL = os.environ.get(
    "PONDER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PONDER_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
WORKER_READY_TIMEOUT_SECONDS = 60
REPO_ROOT = Path(__file__).resolve().parent.parent


def use_fresh_settings() -> None:
    """Reread the settings and apply them to the runtime and to this process's Celery app.

    Celery reads its configuration once per process, so without this a test would send tasks to
    the broker and queue of whichever test configured the app first.
    """
    get_settings.cache_clear()
    reset_runtime()
    forget_deliverers()
    celery_app.conf.update(celery_config(get_settings()))
    # Pooled broker connections keep the URL they were made with, so drop them too.
    celery_app.close()
    celery_app.amqp._producer_pool = None


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ponder.sqlite3'}"


@pytest.fixture
def migrated_engine(sqlite_url: str) -> Iterator[Engine]:
    """A SQLite database at the newest migration."""
    upgrade(sqlite_url)
    engine = create_db_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    # The per-user rate limit is off, so that tests may ask many questions as one user;
    # tests/core/test_ratelimit.py turns it on.
    return Settings(
        _env_file=None, data_dir=tmp_path, database_url=sqlite_url, rate_limit_per_minute=0
    )


@pytest.fixture
def ponder_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str
) -> Iterator[dict[str, str]]:
    """Point the process-wide settings at a fresh SQLite file and no broker."""
    for name in list(os.environ):
        if name.startswith("PONDER_"):
            monkeypatch.delenv(name)
    env = {
        "PONDER_DATA_DIR": str(tmp_path),
        "PONDER_DATABASE_URL": sqlite_url,
        "PONDER_RATE_LIMIT_PER_MINUTE": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    use_fresh_settings()
    yield env
    reset_runtime()
    forget_deliverers()
    get_settings.cache_clear()
    # The test may have left invalid settings in the environment, so restore Celery's defaults.
    celery_app.conf.update(celery_config(Settings.model_construct()))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"ponder_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.close()
    return REDIS_URL


def ponder_executable() -> str:
    found = shutil.which("ponder", path=str(Path(sys.executable).parent))
    assert found, "the ponder command is not installed in this environment"
    return found


class WorkerProcess:
    """A real `ponder worker` subprocess with its own queue and log file."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str) -> None:
        self.env = env
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, concurrency: int = 1) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                ponder_executable(),
                "worker",
                f"--concurrency={concurrency}",
                f"--hostname={self.name}@%h",
                "--loglevel=INFO",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {WORKER_READY_TIMEOUT_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = 9) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)


@pytest.fixture
def worker_env(
    ponder_env: dict[str, str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment for workers and askers that share a broker queue of this test's own."""
    queue = f"ponder-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("PONDER_BROKER_URL", redis_url)
    monkeypatch.setenv("PONDER_TASK_QUEUE", queue)
    use_fresh_settings()
    return {
        **os.environ,
        **ponder_env,
        "PONDER_BROKER_URL": redis_url,
        "PONDER_TASK_QUEUE": queue,
    }


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[type[WorkerProcess] | object]:
    """Start real workers on demand; every one is stopped after the test."""
    workers: list[WorkerProcess] = []

    def start(*, concurrency: int = 1, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        index = len(workers)
        worker = WorkerProcess(
            {**worker_env, **(extra_env or {})},
            tmp_path / f"worker-{index}.log",
            f"w{index}-{uuid.uuid4().hex[:6]}",
        )
        workers.append(worker)
        worker.start(concurrency=concurrency)
        return worker

    yield start
    for worker in workers:
        worker.stop()
