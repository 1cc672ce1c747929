"""`ponder doctor`: check that the database, broker, model and tokens are ready."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bots.cli.common import print_json, reported_errors
from core.config import get_settings
from core.doctor import CHECKS, CheckResult, run_checks

STATUS_STYLES = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


def doctor(
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            help=f"Run only this check; repeatable. Checks: {', '.join(CHECKS)}.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the database, broker, model backend and bot tokens; exit 1 if any check fails."""
    with reported_errors():
        results = run_checks(get_settings(), check)
    if as_json:
        print_json(
            {
                "ok": not any(result.is_failed for result in results),
                "checks": [
                    {"name": r.name, "status": r.status, "detail": r.detail} for r in results
                ],
            }
        )
    else:
        print_table(results)
    if any(result.is_failed for result in results):
        raise typer.Exit(1)


def print_table(results: list[CheckResult]) -> None:
    """Print one row per check: its name, status and detail."""
    table = Table(title="Ponder doctor")
    table.add_column("Check")
    table.add_column("Status")
    table.add_column("Detail", overflow="fold")
    for result in results:
        style = STATUS_STYLES[result.status]
        table.add_row(result.name, f"[{style}]{result.status}[/{style}]", result.detail)
    Console().print(table)
