"""A real Celery worker on the real Redis answers a question asked through the console adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.answering import ledger_tokens
from core.db import session_scope
from core.models import Question
from tasks.runtime import get_runtime

pytestmark = [pytest.mark.redis, pytest.mark.model, pytest.mark.slow]


def test_worker_answers_console_question(worker_env: dict[str, str], start_worker) -> None:
    worker = start_worker()

    asked = subprocess.run(
        [str(Path(sys.executable).parent / "ponder"), "ask", "--json", "What is 2 + 3?"],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout)
    question_id = payload["question_id"]
    assert "no broker configured" not in asked.stderr
    assert f"answering question {question_id}" in worker.log()
    with session_scope(get_runtime().engine) as session:
        stored = session.get(Question, question_id)
    assert stored is not None
    assert stored.status == "answered"
    assert stored.answer == payload["answer"]
    assert payload["calls"] == stored.calls == 1
    total = payload["prompt_tokens"] + payload["completion_tokens"]
    assert ledger_tokens(get_runtime().engine, question_id) == total
    call_tokens = sum(
        call["prompt_tokens"] + call["completion_tokens"] for call in stored.trace["calls"]
    )
    assert call_tokens == total
    assert f"{payload['prompt_tokens']:,} + {payload['completion_tokens']:,} tokens" in (
        stored.footnote or ""
    )
