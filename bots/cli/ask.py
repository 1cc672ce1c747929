"""`ponder ask` and `ponder strategies`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bots import console
from bots.cli.common import fail, parse_assignments, print_json
from core.budget import user_status
from core.db import session_scope
from core.errors import PonderError, StrategyOptionError
from core.models import Question
from core.schemas import EFFORTS, Effort, Reply
from core.strategies.base import parse_options
from core.strategies.registry import STRATEGIES
from tasks.runtime import get_runtime

ANSWER_PAYLOAD_KEYS = (
    "question_id",
    "status",
    "answer",
    "short_answer",
    "error",
    "footnote",
    "strategy",
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "wall_seconds",
    "model_seconds",
    "model",
    "stop_reason",
    "difficulty",
    "difficulty_score",
    "samples",
    "agreement",
    "reason",
    "effort",
    "budget_remaining",
)


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    user: Annotated[
        str | None,
        typer.Option(help="Asker as platform:id, for example cli:alice. Default: cli:LOGIN."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    strategy: Annotated[
        str | None, typer.Option(help="Force a strategy; `ponder strategies` lists them.")
    ] = None,
    effort: Annotated[str, typer.Option(help="auto, low, medium or high.")] = "auto",
    option: Annotated[
        list[str] | None,
        typer.Option("--set", help="Strategy option KEY=VALUE; repeatable."),
    ] = None,
) -> None:
    """Ask a question and print the answer with its footnote."""
    if effort not in EFFORTS:
        raise typer.BadParameter(
            f"{effort!r}; valid values: {', '.join(EFFORTS)}", param_hint="--effort"
        )
    options = parse_assignments(option)
    if options and strategy is None:
        raise typer.BadParameter("--set needs --strategy", param_hint="--set")
    if strategy is not None and strategy not in STRATEGIES:
        raise typer.BadParameter(
            f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}",
            param_hint="--strategy",
        )
    if strategy is not None:
        _check_options(strategy, options)
    chosen_effort: Effort = effort
    try:
        stored, reply = console.ask(
            question, user=user, effort=chosen_effort, strategy=strategy, strategy_options=options
        )
    except PonderError as exc:
        if as_json:
            print_json(rejection_payload(exc))
        fail(str(exc))
    if as_json:
        print_json(answer_payload(stored, reply))
    else:
        typer.echo(reply.full_text)
    if reply.status != "answered":
        raise typer.Exit(1)


def _check_options(strategy: str, options: dict[str, Any]) -> None:
    """Reject unknown or invalid `--set` options before the question is stored."""
    try:
        parse_options(strategy, STRATEGIES[strategy].options_type, options)
    except StrategyOptionError as exc:
        fail(f"invalid --set: {exc}", code=2)


def answer_payload(question: Question, reply: Reply) -> dict[str, Any]:
    """Return the `--json` object for an answered or failed question."""
    trace = question.trace or {}
    return {
        "question_id": question.id,
        "status": question.status,
        "answer": question.answer if question.status == "answered" else None,
        "short_answer": question.short_answer,
        "error": reply.answer if question.status != "answered" else None,
        "footnote": question.footnote,
        "strategy": question.strategy,
        "calls": question.calls,
        "prompt_tokens": question.prompt_tokens,
        "completion_tokens": question.completion_tokens,
        "wall_seconds": round(question.wall_seconds, 3),
        "model_seconds": round(question.model_seconds, 3),
        "model": question.model,
        "stop_reason": trace.get("stop_reason"),
        "difficulty": question.difficulty_level,
        "difficulty_score": question.difficulty_score,
        "samples": (question.outcome or {}).get("samples"),
        "agreement": trace.get("agreement"),
        "reason": question.plan_reason,
        "effort": question.effort,
        "budget_remaining": _budget_remaining(question),
    }


def rejection_payload(error: PonderError) -> dict[str, Any]:
    """Return the `--json` object for a question that `console.ask` raised on.

    It has the keys of `answer_payload`, with null for everything but the status and the error.
    """
    payload: dict[str, Any] = dict.fromkeys(ANSWER_PAYLOAD_KEYS)
    timed_out = isinstance(error, console.AnswerTimeoutError)
    # NOTE: after a timed-out wait the question is stored, but console.ask raises without its
    # id, so question_id stays null; the error message names the id.
    payload["status"] = "timed_out" if timed_out else "rejected"
    payload["error"] = str(error)
    return payload


def _budget_remaining(question: Question) -> int | None:
    """Return the asker's remaining tokens: from the trace, or from the budget when the worker
    refused the question before running it and so wrote no budget to the trace.
    """
    budget = (question.trace or {}).get("budget") or {}
    if "remaining_tokens" in budget:
        remaining: int | None = budget["remaining_tokens"]
        return remaining
    if question.status != "refused":
        return None
    runtime = get_runtime()
    with session_scope(runtime.engine) as session:
        return user_status(session, runtime.settings, question.user_id).remaining_tokens


def strategies() -> None:
    """List the strategies with a one-line description each."""
    width = max(len(name) for name in STRATEGIES)
    for name, strategy in STRATEGIES.items():
        typer.echo(f"{name.ljust(width)}  {strategy.description}")
