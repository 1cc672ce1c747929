"""Answering one stored question: plan, probe, run the ladder, record the result and the usage.

The functions here are the steps of the worker's task. Database steps are synchronous and short;
the strategy run is async. Each step reloads what it needs by question id so that the task can be
retried or run twice without double counting.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from core.budget import (
    BudgetStatus,
    budget_status,
    format_reset_moment,
    release_reservation,
    settle_reservation,
    user_status,
)
from core.calibration import outcome_record
from core.config import Settings
from core.db import session_scope
from core.difficulty import estimate_difficulty, load_model
from core.errors import NotFoundError, PonderError
from core.escalation import escalation_from_result, run_ladder
from core.footnote import FootnoteFacts, estimate_energy, format_footnote
from core.llm.base import ChatMessage
from core.models import TERMINAL_STATUSES, Question, UsageEntry, User, utcnow
from core.planner import Plan, PlanInput, forced_plan, load_policy, probe_and_replan
from core.planner import plan_question as choose_plan
from core.schemas import EFFORTS, Effort, Reply
from core.strategies.base import BudgetedClient, ProgressCallback, StrategyInput, StrategyResult

logger = logging.getLogger(__name__)

MAX_FOLLOW_UP_TURNS = 4
# English text averages about 4 characters per token with BPE tokenizers. Dividing by 3 and
# adding a few tokens per message over-estimates, so the planned minimum is not too small.
CHARS_PER_TOKEN_ESTIMATE = 3
TOKENS_PER_MESSAGE_ESTIMATE = 8


def plan_question(
    question: Question,
    settings: Settings,
    *,
    budget: BudgetStatus | None = None,
    queue_depth: int = 0,
    prompt_tokens: int | None = None,
) -> Plan:
    """Estimate the question's difficulty and plan its strategy and budget.

    `budget` is the asker's budget status (None: only the per-question cap limits the plan);
    `queue_depth` is the number of questions waiting for a worker; `prompt_tokens` is the
    question's prompt size, estimated from its length when None.
    """
    model = load_model(settings.data_dir)
    estimate = estimate_difficulty(question.text, model)
    effort: Effort = question.effort if question.effort in EFFORTS else "auto"
    inputs = PlanInput(
        estimate=estimate,
        question_cap_tokens=budget.question_cap_tokens if budget else settings.question_token_cap,
        remaining_tokens=budget.remaining_tokens if budget else None,
        effort=effort,
        queue_depth=queue_depth,
        prompt_tokens=prompt_tokens
        if prompt_tokens is not None
        else estimate_prompt_tokens(_question_messages(question, settings)),
        probe_worthwhile=model.is_worth_probing(estimate.score),
    )
    if question.requested_strategy:
        return forced_plan(inputs, question.requested_strategy, dict(question.strategy_options))
    return choose_plan(inputs, load_policy(settings.policy))


def estimate_prompt_tokens(messages: list[ChatMessage]) -> int:
    """Return an over-estimate of the prompt tokens of these messages, without a tokenizer."""
    chars = sum(len(message.content) for message in messages)
    return math.ceil(chars / CHARS_PER_TOKEN_ESTIMATE) + TOKENS_PER_MESSAGE_ESTIMATE * len(messages)


def _question_messages(question: Question, settings: Settings) -> list[ChatMessage]:
    return StrategyInput(question=question.text, system_prompt=settings.system_prompt).messages()


def question_budget(engine: Engine, settings: Settings, question: Question) -> BudgetStatus:
    """Return the asker's budget, leaving out what this question itself has reserved."""
    with session_scope(engine) as session:
        user = session.get(User, question.user_id)
        if user is None:
            raise NotFoundError(
                f"user id {question.user_id} of question {question.id} does not exist"
            )
        return budget_status(session, settings, user, excluding_question=question.id)


def record_plan(engine: Engine, question_id: int, plan: Plan) -> None:
    """Store the difficulty, its features and the plan's reason before any model call."""
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None:
            raise NotFoundError(f"question {question_id} does not exist")
        _store_plan(question, plan)
        session.add(question)


def _store_plan(question: Question, plan: Plan) -> None:
    if plan.estimate is not None:
        question.difficulty_score = round(plan.estimate.score, 4)
        question.difficulty_level = plan.estimate.level
        question.features = plan.estimate.as_record()
    question.plan_reason = plan.reason


def start_question(engine: Engine, question_id: int) -> Question | None:
    """Mark the question running and count the attempt; return None when it already finished."""
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None:
            raise NotFoundError(f"question {question_id} does not exist")
        if question.status in TERMINAL_STATUSES:
            return None
        question.status = "running"
        question.attempts += 1
        question.started_at = utcnow()
        session.add(question)
        return question


def build_input(
    engine: Engine, question: Question, *, system_prompt: str | None = None
) -> StrategyInput:
    """Return the strategy input, with earlier turns when the question is a follow-up."""
    history: list[ChatMessage] = []
    with session_scope(engine) as session:
        earlier_id = question.follow_up_of_id
        while earlier_id is not None and len(history) < 2 * MAX_FOLLOW_UP_TURNS:
            earlier = session.get(Question, earlier_id)
            if earlier is None:
                break
            turn = [ChatMessage(role="user", content=earlier.text)]
            if earlier.answer:
                turn.append(ChatMessage(role="assistant", content=earlier.answer))
            history[:0] = turn
            earlier_id = earlier.follow_up_of_id
    return StrategyInput(
        question=question.text, history=tuple(history), system_prompt=system_prompt
    )


async def refine_plan(
    client: BudgetedClient, request: StrategyInput, plan: Plan, settings: Settings
) -> Plan:
    """Run the difficulty probe on the question's client when the plan requests it, and plan
    again with its result. Without a probe, return the plan unchanged."""
    if not plan.probe:
        return plan
    return await probe_and_replan(
        client,
        request,
        plan,
        policy=load_policy(settings.policy),
        model=load_model(settings.data_dir),
    )


async def run_plan(
    client: BudgetedClient,
    request: StrategyInput,
    plan: Plan,
    *,
    progress: ProgressCallback | None = None,
) -> StrategyResult:
    """Run the plan's escalation ladder within the client's budget."""
    return await run_ladder(client, request, plan, progress=progress)


def _trace(result: StrategyResult, plan: Plan) -> dict[str, Any]:
    return {
        "plan": {
            "strategy": plan.strategy,
            "budget_tokens": plan.budget_tokens,
            "options": plan.options,
            "reason": plan.reason,
            "difficulty": plan.difficulty,
            "level": plan.level,
            "rungs": [rung.model_dump() for rung in plan.ladder],
        },
        "stop_reason": result.stop_reason,
        "agreement": list(result.agreement) if result.agreement else None,
        "nodes_expanded": result.nodes_expanded,
        "steps": list(result.trace),
        "candidates": [
            {
                "answer": candidate.answer,
                "prompt_tokens": candidate.prompt_tokens,
                "completion_tokens": candidate.completion_tokens,
                "seed": candidate.seed,
                "score": candidate.score,
                "votes": candidate.votes,
            }
            for candidate in result.candidates
        ],
        "details": result.details,
        "calls": [
            {
                "purpose": record.purpose,
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "model_seconds": round(record.model_seconds, 4),
                "seed": record.seed,
                "finish_reason": record.finish_reason,
            }
            for record in result.call_log
        ],
    }


def record_answer(
    engine: Engine,
    question_id: int,
    result: StrategyResult,
    plan: Plan,
    *,
    model: str,
    wall_seconds: float,
    settings: Settings | None = None,
) -> Reply:
    """Store the answer, one ledger row and the settled reservation in a single transaction, and
    build the reply. With `settings`, the footnote also shows the asker's remaining budget and
    the energy estimate.

    Running this twice for the same question records the usage once.
    """
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None:
            raise NotFoundError(f"question {question_id} does not exist")
        if question.status == "answered":
            return reply_from_question(question)
        reserved = settle_reservation(
            session,
            question,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
        )
        budget = user_status(session, settings, question.user_id) if settings else None
        escalation = escalation_from_result(result)
        facts = FootnoteFacts(
            strategy=result.strategy,
            calls=result.calls,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            wall_seconds=wall_seconds,
            model_seconds=result.model_seconds,
            model=model,
            reason=plan.summary or plan.reason or None,
            difficulty=plan.difficulty,
            agreement=result.agreement,
            escalation=escalation.note if escalation else None,
            stopped_early_for_budget=result.budget_exhausted,
        )
        facts = _with_budget_and_energy(facts, settings, budget)
        question.status = "answered"
        question.finished_at = utcnow()
        question.answer = result.answer_text
        question.short_answer = result.short_answer[:256]
        question.footnote = format_footnote(facts)
        question.strategy = result.strategy
        question.model = model
        question.calls = result.calls
        question.prompt_tokens = result.prompt_tokens
        question.completion_tokens = result.completion_tokens
        question.wall_seconds = wall_seconds
        question.model_seconds = result.model_seconds
        question.error = None
        question.trace = {**_trace(result, plan), "budget": _budget_trace(reserved, budget)}
        _store_plan(question, plan)
        question.outcome = outcome_record(result, escalation)
        session.add(question)
    logger.info(
        "answered question %d with %s: %d calls, %d+%d tokens, %.2f s (model %.2f s)",
        question_id,
        result.strategy,
        result.calls,
        result.prompt_tokens,
        result.completion_tokens,
        wall_seconds,
        result.model_seconds,
    )
    return reply_from_question(question)


def _with_budget_and_energy(
    facts: FootnoteFacts, settings: Settings | None, budget: BudgetStatus | None
) -> FootnoteFacts:
    if settings is None:
        return facts
    energy_wh, energy_cost = estimate_energy(
        model_seconds=facts.model_seconds,
        watts=settings.watts,
        price_per_kwh=settings.price_per_kwh,
    )
    remaining = budget.remaining_tokens if budget else None
    return replace(
        facts,
        budget_remaining=remaining,
        budget_resets=(
            format_reset_moment(budget.period, budget.resets_at)
            if budget and remaining is not None
            else None
        ),
        energy_wh=energy_wh,
        energy_cost=energy_cost,
        currency_symbol=settings.currency_symbol,
    )


def _budget_trace(reserved_tokens: int, budget: BudgetStatus | None) -> dict[str, Any]:
    return {
        "reserved_tokens": reserved_tokens,
        "remaining_tokens": budget.remaining_tokens if budget else None,
        "resets_at": budget.resets_at.isoformat() if budget else None,
    }


def record_failure(engine: Engine, question_id: int, error: PonderError) -> Reply:
    """Mark the question failed with the error's detail; the reply carries the user message."""
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None:
            raise NotFoundError(f"question {question_id} does not exist")
        if question.status in TERMINAL_STATUSES:
            return reply_from_question(question)
        question.status = "failed"
        question.finished_at = utcnow()
        release_reservation(question)
        question.error = str(error)
        question.answer = None
        question.footnote = None
        question.trace = {**question.trace, "user_message": error.user_message}
        session.add(question)
    logger.warning("question %d failed: %s", question_id, error)
    return reply_from_question(question)


def requeue_question(engine: Engine, question_id: int, reason: str) -> None:
    """Put a running question back to queued before a retry."""
    with session_scope(engine) as session:
        question = session.get(Question, question_id, with_for_update=True)
        if question is None or question.status in TERMINAL_STATUSES:
            return
        question.status = "queued"
        release_reservation(question)
        question.error = reason
        session.add(question)


def reply_from_question(question: Question) -> Reply:
    """Build the reply to deliver from a stored question."""
    assert question.id is not None
    if question.status == "answered":
        return Reply(
            question_id=question.id,
            answer=question.answer or "",
            footnote=question.footnote or "",
            status=question.status,
            trace=question.trace,
        )
    user_message = str(question.trace.get("user_message") or PonderError.user_message)
    return Reply(
        question_id=question.id,
        answer=user_message,
        footnote="",
        status=question.status,
        error=question.error,
        trace=question.trace,
    )


def ledger_tokens(engine: Engine, question_id: int) -> int:
    """Return the tokens the ledger holds for one question."""
    with session_scope(engine) as session:
        rows = session.exec(select(UsageEntry).where(UsageEntry.question_id == question_id)).all()
        return sum(row.tokens for row in rows)


def elapsed_since(started: float) -> float:
    return time.monotonic() - started
