"""Alembic migrations; the only source of Ponder's database schema."""
