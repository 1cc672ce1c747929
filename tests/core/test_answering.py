"""Tests for the answering steps with a scripted model: accounting and idempotency."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from core.answering import (
    build_input,
    ledger_tokens,
    plan_question,
    record_answer,
    record_failure,
    run_plan,
    start_question,
)
from core.config import Settings
from core.errors import ModelUnavailableError
from core.llm.scripted import ScriptedClient
from core.questions import load_question, submit_question
from core.schemas import AskRequest
from core.strategies.base import BudgetedClient


def _ask(engine: Engine, settings: Settings, text: str = "What is 2 + 3?", **extra: object) -> int:
    question = submit_question(
        engine,
        settings,
        AskRequest(platform="cli", user_id="alice", text=text, **extra),  # type: ignore[arg-type]
    )
    assert question.id is not None
    return question.id


def _answer(engine: Engine, settings: Settings, question_id: int, client: ScriptedClient) -> None:
    question = start_question(engine, question_id)
    assert question is not None
    plan = plan_question(question, settings)
    budgeted = BudgetedClient(client, budget_tokens=plan.budget_tokens)
    result = asyncio.run(run_plan(budgeted, build_input(engine, question), plan))
    record_answer(engine, question_id, result, plan, model="scripted", wall_seconds=0.5)


def test_answer_records_matching_tokens(migrated_engine: Engine, settings: Settings) -> None:
    question_id = _ask(migrated_engine, settings)
    client = ScriptedClient(["The answer is 5."])

    _answer(migrated_engine, settings, question_id, client)

    stored = load_question(migrated_engine, question_id)
    assert stored.status == "answered"
    assert stored.answer == "The answer is 5."
    assert stored.short_answer == "5"
    assert stored.calls == 1
    # Prompt: "What is 2 + 3?" is 5 words plus 4 tokens for the message; the reply is 4 words.
    assert stored.prompt_tokens == 9
    assert stored.completion_tokens == 4
    assert ledger_tokens(migrated_engine, question_id) == 13
    assert stored.footnote is not None
    assert "9 + 4 tokens" in stored.footnote
    assert "1 call" in stored.footnote


def test_record_answer_twice_charges_once(migrated_engine: Engine, settings: Settings) -> None:
    question_id = _ask(migrated_engine, settings)
    _answer(migrated_engine, settings, question_id, ScriptedClient(["5"]))
    question = load_question(migrated_engine, question_id)

    assert start_question(migrated_engine, question_id) is None
    plan = plan_question(question, settings)
    budgeted = BudgetedClient(ScriptedClient(["6"]), budget_tokens=100)
    result = asyncio.run(run_plan(budgeted, build_input(migrated_engine, question), plan))
    record_answer(migrated_engine, question_id, result, plan, model="scripted", wall_seconds=1)

    assert (
        ledger_tokens(migrated_engine, question_id)
        == question.prompt_tokens + question.completion_tokens
    )
    assert load_question(migrated_engine, question_id).answer == "5"


def test_follow_up_includes_earlier_turn(migrated_engine: Engine, settings: Settings) -> None:
    first_id = _ask(migrated_engine, settings, "What is 2 + 3?")
    _answer(migrated_engine, settings, first_id, ScriptedClient(["5"]))
    second_id = _ask(migrated_engine, settings, "And times 2?", follow_up_of_id=first_id)
    client = ScriptedClient(["10"])

    _answer(migrated_engine, settings, second_id, client)

    messages = client.calls[0].messages
    assert [message.role for message in messages] == ["user", "assistant", "user"]
    assert messages[0].content == "What is 2 + 3?"
    assert messages[1].content == "5"
    assert load_question(migrated_engine, second_id).prompt_tokens == client.count_tokens(
        list(messages)
    )


def test_failure_stores_detail_and_user_message(
    migrated_engine: Engine, settings: Settings
) -> None:
    question_id = _ask(migrated_engine, settings)
    start_question(migrated_engine, question_id)

    reply = record_failure(
        migrated_engine, question_id, ModelUnavailableError("cannot connect to http://x:1")
    )

    stored = load_question(migrated_engine, question_id)
    assert stored.status == "failed"
    assert stored.error == "cannot connect to http://x:1"
    assert reply.answer == ModelUnavailableError.user_message
    assert ledger_tokens(migrated_engine, question_id) == 0
