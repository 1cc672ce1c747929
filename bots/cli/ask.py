"""`ponder ask` and `ponder strategies`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bots import console
from bots.cli.common import parse_assignments, print_json, reported_errors
from core.models import Question
from core.schemas import EFFORTS, Effort, Reply
from core.strategies.registry import STRATEGIES


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
    chosen_effort: Effort = effort
    with reported_errors():
        stored, reply = console.ask(
            question, user=user, effort=chosen_effort, strategy=strategy, strategy_options=options
        )
    if as_json:
        print_json(answer_payload(stored, reply))
    else:
        typer.echo(reply.full_text)
    if reply.status != "answered":
        raise typer.Exit(1)


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
        "budget_remaining": (trace.get("budget") or {}).get("remaining_tokens"),
    }


def strategies() -> None:
    """List the strategies with a one-line description each."""
    width = max(len(name) for name in STRATEGIES)
    for name, strategy in STRATEGIES.items():
        typer.echo(f"{name.ljust(width)}  {strategy.description}")
