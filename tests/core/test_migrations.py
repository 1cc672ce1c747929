"""Migrations run up, down and up again on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import core.models  # noqa: F401  (registers the tables)
from core.db import create_db_engine, current_revision, downgrade, head_revision, upgrade

EXPECTED_TABLES = {
    "users",
    "questions",
    "usage_ledger",
    "answer_messages",
    "audit_log",
    "app_settings",
}


def _round_trip(url: str) -> None:
    upgrade(url)
    engine = create_db_engine(url)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES

    downgrade(url, "base")
    assert current_revision(engine) is None
    assert not EXPECTED_TABLES & set(inspect(engine).get_table_names())

    upgrade(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def _schema_differences(url: str) -> list[object]:
    upgrade(url)
    engine = create_db_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    return list(differences)


def test_migrations_round_trip_sqlite(sqlite_url: str) -> None:
    _round_trip(sqlite_url)


@pytest.mark.postgres
def test_migrations_round_trip_postgres(postgres_url: str) -> None:
    _round_trip(postgres_url)


def test_models_match_migrations_sqlite(sqlite_url: str) -> None:
    assert _schema_differences(sqlite_url) == []


@pytest.mark.postgres
def test_models_match_migrations_postgres(postgres_url: str) -> None:
    assert _schema_differences(postgres_url) == []
