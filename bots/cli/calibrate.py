"""`ponder calibrate`: refit the difficulty estimator from the answered questions."""

from __future__ import annotations

from typing import Annotated

import typer

from bots.cli.common import print_json, reported_errors
from core.calibration import (
    MIN_HISTORY_QUESTIONS,
    CalibrationReport,
    check_min_questions,
    count_questions,
    reset_weights,
)
from core.calibration import calibrate as run_calibration
from core.config import get_settings
from core.db import create_db_engine, ensure_schema


def calibrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report the refit without saving the weights.")
    ] = False,
    min_questions: Annotated[
        int,
        typer.Option(
            min=2,
            help=(
                "Minimum number of answered questions with agreement signals to refit; below "
                f"{MIN_HISTORY_QUESTIONS} it needs --force."
            ),
        ),
    ] = MIN_HISTORY_QUESTIONS,
    force: Annotated[
        bool,
        typer.Option("--force", help=f"Allow a --min-questions below {MIN_HISTORY_QUESTIONS}."),
    ] = False,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Delete the saved weights and return to the shipped defaults; no refit runs.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Refit the difficulty estimator on stored outcomes and report how well it ranks questions.

    AUROC rates the ranking: the probability that a question whose samples disagreed scores higher than one whose samples agreed (0.5 is chance, 1.0 is perfect).

    The refit is saved only when its 5-fold cross-validated AUROC beats the current weights' AUROC on the same questions. Undo a saved refit with --reset.
    """  # noqa: E501 -- Typer keeps single line breaks in these paragraphs, so each is one line.
    settings = get_settings()
    if reset:
        with reported_errors():
            reset_report = reset_weights(settings)
        if as_json:
            print_json(reset_report.as_dict())
        else:
            typer.echo(reset_report.message)
        return

    url = settings.resolved_database_url
    with reported_errors():
        check_min_questions(min_questions, force=force)
        engine = create_db_engine(url)
        ensure_schema(engine, url)
        report = run_calibration(
            engine, settings, dry_run=dry_run, min_questions=min_questions, force=force
        )
        engine.dispose()
    if as_json:
        print_json(report.as_dict())
        return
    for line in describe_report(report):
        typer.echo(line)


def describe_report(report: CalibrationReport) -> list[str]:
    """Return the report as lines for the terminal."""
    lines = [
        f"history: {count_questions(report.questions)} with agreement signals, "
        f"{report.disagreed} with disagreeing samples"
    ]
    if report.auroc_after is not None:
        lines.append(f"AUROC before the refit: {_format_auroc(report.auroc_before)}")
        lines.append(f"AUROC after the refit:  {_format_auroc(report.auroc_after)} (in-sample)")
        lines.append(
            f"AUROC after the refit:  {_format_auroc(report.auroc_cross_validated)} "
            "(5-fold cross-validated)"
        )
    lines.append(report.message)
    return lines


def _format_auroc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
