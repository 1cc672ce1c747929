"""`ponder admin`: budgets, usage, blocking and question traces, run as the local operator.

Whoever can run commands on the server owns Ponder's database anyway, so these commands act as
an admin without PONDER_ADMIN_IDS; the audit log records them as `cli:LOGIN`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bots.cli.common import fail, print_json
from bots.console import default_user_ref
from core.budget import BUDGET_PERIODS
from core.commands import Actor, CommandReply, CommandRequest, parse_tokens, run_command
from core.config import BudgetPeriod
from core.errors import InvalidQuestionError
from core.questions import parse_user_ref
from tasks.runtime import get_runtime

admin_app = typer.Typer(
    help="Administer budgets, users and questions as the local operator.", no_args_is_help=True
)
budget_app = typer.Typer(help="Per-user token budgets.", no_args_is_help=True)
admin_app.add_typer(budget_app, name="budget")

PERIOD_HELP = "Budget period: day, week or month (each starts at 00:00 UTC)."
CAP_HELP = "Most tokens one question may spend."


def _user_ref(value: str) -> str:
    """Check USER as `ponder ask --user` does, so both reject a bare name with the same message."""
    try:
        parse_user_ref(value)
    except InvalidQuestionError as exc:
        fail(str(exc))
    return value


UserArgument = Annotated[
    str,
    typer.Argument(
        help="The user as platform:id, e.g. telegram:42 or cli:alice.", callback=_user_ref
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
PeriodOption = Annotated[str | None, typer.Option(help=PERIOD_HELP)]
CapOption = Annotated[str | None, typer.Option("--question-cap", help=CAP_HELP)]


def operator() -> Actor:
    """Return the actor for commands typed on the server: `cli:LOGIN`, always an admin."""
    _, login = default_user_ref().split(":", 1)
    return Actor(platform="cli", user_id=login, is_local_operator=True)


def _period(value: str | None) -> BudgetPeriod | None:
    if value is None:
        return None
    for period in BUDGET_PERIODS:
        if value.lower() == period:
            return period
    raise typer.BadParameter(
        f"{value!r}; valid periods: {', '.join(BUDGET_PERIODS)}", param_hint="--period"
    )


def _tokens(value: str | None, param_hint: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_tokens(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def _run(request: CommandRequest, *, as_json: bool = False) -> CommandReply:
    runtime = get_runtime()
    reply = run_command(runtime.engine, runtime.settings, request)
    if as_json:
        print_json(reply.data if reply.ok else {"error": reply.text})
    else:
        typer.echo(reply.text, err=not reply.ok)
    if not reply.ok:
        raise typer.Exit(1)
    return reply


@budget_app.command("set")
def budget_set(
    user: UserArgument,
    tokens: Annotated[str, typer.Argument(help="Tokens per period, e.g. 50000 or 50k.")],
    period: PeriodOption = None,
    question_cap: CapOption = None,
) -> None:
    """Set a user's token budget; creates the user when they never asked."""
    _run(
        CommandRequest(
            actor=operator(),
            name="budget_set",
            target=user,
            tokens=_tokens(tokens, "TOKENS"),
            period=_period(period),
            question_cap_tokens=_tokens(question_cap, "--question-cap"),
        )
    )


@budget_app.command("show")
def budget_show(user: UserArgument, as_json: JsonOption = False) -> None:
    """Show a user's limit, used, reserved and remaining tokens and the reset time."""
    _run(CommandRequest(actor=operator(), name="budget_show", target=user), as_json=as_json)


@budget_app.command("reset")
def budget_reset(user: UserArgument) -> None:
    """Clear a user's usage in the current period (the ledger keeps a negative reset row)."""
    _run(CommandRequest(actor=operator(), name="budget_reset", target=user))


@budget_app.command("default")
def budget_default(
    tokens: Annotated[str, typer.Argument(help="Tokens per period for users without their own.")],
    period: PeriodOption = None,
    question_cap: CapOption = None,
) -> None:
    """Change the default budget at run time; it overrides PONDER_DEFAULT_BUDGET_*."""
    _run(
        CommandRequest(
            actor=operator(),
            name="budget_default",
            tokens=_tokens(tokens, "TOKENS"),
            period=_period(period),
            question_cap_tokens=_tokens(question_cap, "--question-cap"),
        )
    )


@admin_app.command()
def usage(
    top: Annotated[int, typer.Option(min=1, max=100, help="How many users to list.")] = 10,
    period: PeriodOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the users who spent the most tokens in the current period."""
    _run(
        CommandRequest(actor=operator(), name="usage", top=top, period=_period(period)),
        as_json=as_json,
    )


@admin_app.command()
def block(
    user: UserArgument,
    reason: Annotated[str | None, typer.Option(help="Shown to admins, at most 256 chars.")] = None,
) -> None:
    """Block a user: their new and queued questions are refused."""
    _run(CommandRequest(actor=operator(), name="block", target=user, reason=reason))


@admin_app.command()
def unblock(user: UserArgument) -> None:
    """Let a blocked user ask again."""
    _run(CommandRequest(actor=operator(), name="unblock", target=user))


@admin_app.command()
def why(
    question_id: Annotated[int, typer.Argument(help="The question's id.")],
    as_json: JsonOption = False,
) -> None:
    """Explain a question: plan, strategy, samples, agreement, stop reason and tokens."""
    _run(CommandRequest(actor=operator(), name="why", question_id=question_id), as_json=as_json)
