"""Answer every benchmark question with every entry, each run on a fresh budgeted client."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.bench.entries import Entry, PolicyEntry, StrategyEntry
from core.bench.loading import BenchQuestion
from core.bench.policies import PolicyDecision
from core.bench.scoring import BenchRow, score_result
from core.errors import ModelError
from core.llm.base import ModelClient
from core.strategies.base import (
    BudgetedClient,
    Strategy,
    StrategyInput,
    StrategyOptions,
    StrategyResult,
    parse_options,
)
from core.strategies.registry import get_strategy

logger = logging.getLogger(__name__)

RowCallback = Callable[[BenchRow], None]


async def run_benchmark(
    questions: Sequence[BenchQuestion],
    entries: Sequence[Entry],
    client: ModelClient,
    *,
    budget_tokens: int,
    system_prompt: str | None = None,
    on_row: RowCallback | None = None,
) -> list[BenchRow]:
    """Run each entry on each question, one run at a time, and return one row per pair.

    Runs are sequential so that each row's seconds measure that run alone on the backend.
    `on_row` is called after every run, for a progress bar.
    """
    rows: list[BenchRow] = []
    for question in questions:
        for entry in entries:
            row = await run_entry(
                question, entry, client, budget_tokens=budget_tokens, system_prompt=system_prompt
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One question answered by one entry: the scored row, and the strategy's result.

    `result` is None when a model error ended the run.
    """

    row: BenchRow
    result: StrategyResult | None


async def run_entry(
    question: BenchQuestion,
    entry: Entry,
    client: ModelClient,
    *,
    budget_tokens: int,
    system_prompt: str | None = None,
) -> BenchRow:
    """Answer one question with one entry within `budget_tokens` and return the scored row."""
    outcome = await answer_question(
        question, entry, client, budget_tokens=budget_tokens, system_prompt=system_prompt
    )
    return outcome.row


async def answer_question(
    question: BenchQuestion,
    entry: Entry,
    client: ModelClient,
    *,
    budget_tokens: int,
    system_prompt: str | None = None,
) -> RunOutcome:
    """Answer one question with one entry on a fresh budgeted client and score the answer.

    A model error ends only this run: the row records the error and counts as wrong.
    """
    request = StrategyInput(question=question.question, system_prompt=system_prompt)
    budgeted = BudgetedClient(client, budget_tokens=budget_tokens)
    decision: PolicyDecision | None = None
    started = time.monotonic()
    try:
        if isinstance(entry, StrategyEntry):
            strategy, options = entry.strategy, entry.options
        else:
            decision = await decide(entry, request, budgeted)
            strategy, options = resolve_decision(entry, decision, budgeted)
        result = await strategy.run(request, client=budgeted, options=options)
    except ModelError as exc:
        logger.warning("%s failed on question at line %d: %s", entry.name, question.line, exc)
        seconds = time.monotonic() - started
        return RunOutcome(_error_row(question, entry, budgeted, decision, seconds, exc), None)
    seconds = time.monotonic() - started
    return RunOutcome(_result_row(question, entry, result, decision, seconds), result)


async def decide(
    entry: PolicyEntry, request: StrategyInput, client: BudgetedClient
) -> PolicyDecision:
    """Call a policy, awaiting it when it is async."""
    outcome = entry.policy(request, client)
    decision = await outcome if inspect.isawaitable(outcome) else outcome
    if not isinstance(decision, PolicyDecision):
        raise TypeError(
            f"policy {entry.name!r} returned {decision!r}; a policy must return a PolicyDecision"
        )
    return decision


def resolve_decision(
    entry: PolicyEntry, decision: PolicyDecision, client: BudgetedClient
) -> tuple[Strategy, StrategyOptions]:
    """Validate a policy's choice and lower the client's budget to the one the policy chose."""
    strategy = decision.runner or get_strategy(decision.strategy)
    options = parse_options(strategy.name, strategy.options_type, decision.options)
    if decision.budget_tokens is not None:
        client.budget_tokens = min(
            client.budget_tokens, client.spent_tokens + decision.budget_tokens
        )
    logger.debug("policy %s chose %s: %s", entry.name, strategy.name, decision.reason)
    return strategy, options


def _result_row(
    question: BenchQuestion,
    entry: Entry,
    result: StrategyResult,
    decision: PolicyDecision | None,
    seconds: float,
) -> BenchRow:
    answer, correct = score_result(result, question=question.question, gold=question.gold)
    agreement = f"{result.agreement[0]}/{result.agreement[1]}" if result.agreement else ""
    return BenchRow(
        line=question.line,
        question=question.question,
        gold=question.gold,
        strategy=entry.name,
        chosen_strategy=result.strategy,
        answer=answer,
        correct=correct,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        calls=result.calls,
        seconds=seconds,
        model_seconds=result.model_seconds,
        stop_reason=result.stop_reason,
        agreement=agreement,
        samples=len(result.candidates),
        reason=decision.reason if decision else "",
        difficulty=(decision.difficulty or "") if decision else "",
        answer_text=result.answer_text,
    )


def _error_row(
    question: BenchQuestion,
    entry: Entry,
    client: BudgetedClient,
    decision: PolicyDecision | None,
    seconds: float,
    error: ModelError,
) -> BenchRow:
    chosen = entry.name if isinstance(entry, StrategyEntry) else ""
    return BenchRow(
        line=question.line,
        question=question.question,
        gold=question.gold,
        strategy=entry.name,
        chosen_strategy=decision.strategy if decision else chosen,
        answer="",
        correct=False,
        prompt_tokens=client.prompt_tokens,
        completion_tokens=client.completion_tokens,
        calls=client.calls,
        seconds=seconds,
        model_seconds=client.model_seconds,
        stop_reason="error",
        agreement="",
        samples=0,
        reason=decision.reason if decision else "",
        difficulty=(decision.difficulty or "") if decision else "",
        error=str(error),
    )
