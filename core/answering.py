"""Answering one stored question: plan, run the strategy, record the result and the usage.

The functions here are the steps of the worker's task. Database steps are synchronous and short;
the strategy run is async. Each step reloads what it needs by question id so that the task can be
retried or run twice without double counting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from core.budget import (
    BudgetStatus,
    format_reset_moment,
    release_reservation,
    settle_reservation,
    user_status,
)
from core.config import Settings
from core.db import session_scope
from core.errors import NotFoundError, PonderError
from core.footnote import FootnoteFacts, estimate_energy, format_footnote
from core.llm.base import ChatMessage
from core.models import TERMINAL_STATUSES, Question, UsageEntry, utcnow
from core.schemas import Reply
from core.strategies.base import (
    BudgetedClient,
    ProgressCallback,
    StrategyInput,
    StrategyResult,
    parse_options,
)
from core.strategies.registry import get_strategy

logger = logging.getLogger(__name__)

DEFAULT_STRATEGY = "direct"
MAX_FOLLOW_UP_TURNS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerPlan:
    """What to run for a question and how much it may spend."""

    strategy: str
    budget_tokens: int
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    difficulty: str | None = None


def plan_question(question: Question, settings: Settings) -> AnswerPlan:
    """Choose the strategy: the one the asker forced, or the default."""
    if question.requested_strategy:
        return AnswerPlan(
            strategy=question.requested_strategy,
            budget_tokens=settings.question_token_cap,
            options=dict(question.strategy_options),
            reason="strategy chosen by the asker",
        )
    return AnswerPlan(
        strategy=DEFAULT_STRATEGY,
        budget_tokens=settings.question_token_cap,
        reason="default strategy",
    )


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


async def run_plan(
    client: BudgetedClient,
    request: StrategyInput,
    plan: AnswerPlan,
    *,
    progress: ProgressCallback | None = None,
) -> StrategyResult:
    """Run the planned strategy within the client's budget."""
    strategy = get_strategy(plan.strategy)
    options = parse_options(strategy.name, strategy.options_type, plan.options)
    return await strategy.run(request, client=client, options=options, progress=progress)


def _trace(result: StrategyResult, plan: AnswerPlan) -> dict[str, Any]:
    return {
        "plan": {
            "strategy": plan.strategy,
            "budget_tokens": plan.budget_tokens,
            "options": plan.options,
            "reason": plan.reason,
            "difficulty": plan.difficulty,
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
    plan: AnswerPlan,
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
        facts = FootnoteFacts(
            strategy=result.strategy,
            calls=result.calls,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            wall_seconds=wall_seconds,
            model_seconds=result.model_seconds,
            model=model,
            reason=plan.reason or None,
            difficulty=plan.difficulty,
            agreement=result.agreement,
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
