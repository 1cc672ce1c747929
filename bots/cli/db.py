"""`ponder db`: apply and inspect database migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from bots.cli.common import reported_errors
from core import db
from core.config import get_settings

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command()
def upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    with reported_errors():
        db.upgrade(get_settings().resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command()
def downgrade(
    revision: Annotated[
        str,
        typer.Argument(
            help="Target revision, or base. Warning: base drops every table and the data in it."
        ),
    ],
) -> None:
    """Revert migrations down to REVISION. Reverting to base drops every table and its data."""
    with reported_errors():
        db.downgrade(get_settings().resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command()
def current() -> None:
    """Print the database's revision and the newest one."""
    engine = db.create_db_engine(get_settings().resolved_database_url)
    with reported_errors():
        typer.echo(f"current: {db.current_revision(engine) or 'empty'}")
    typer.echo(f"head:    {db.head_revision()}")
