"""Database tables. The schema itself comes from the Alembic migrations in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

QuestionStatus = Literal["queued", "running", "answered", "failed", "refused"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"answered", "failed", "refused"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    """A person on one platform, identified by the platform's user id."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id", name="uq_users_platform_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32)
    platform_user_id: str = Field(max_length=64)
    display_name: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    budget_tokens: int | None = Field(
        default=None, description="Allowance per period; None means the current default."
    )
    budget_period: str | None = Field(
        default=None, max_length=8, description="day, week or month; None means the default."
    )
    question_cap_tokens: int | None = Field(
        default=None, description="Most tokens one question may spend; None means the default."
    )
    is_blocked: bool = Field(default=False)
    blocked_reason: str | None = Field(default=None, max_length=256)

    @property
    def ref(self) -> str:
        """The user as `platform:id`, the form commands and logs use."""
        return f"{self.platform}:{self.platform_user_id}"


class Question(SQLModel, table=True):
    """One question, from arrival to delivered answer."""

    __tablename__ = "questions"
    __table_args__ = (
        Index("ix_questions_status_created", "status", "created_at"),
        # The sweep looks for finished questions with no delivered_at.
        Index("ix_questions_delivered_finished", "delivered_at", "finished_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    platform: str = Field(max_length=32)
    chat_id: str | None = Field(default=None, max_length=64)
    thread_id: str | None = Field(default=None, max_length=64)
    message_id: str | None = Field(default=None, max_length=64)
    follow_up_of_id: int | None = Field(default=None, foreign_key="questions.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    effort: str = Field(default="auto", max_length=16)
    requested_strategy: str | None = Field(default=None, max_length=32)
    strategy_options: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    delivery: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    status: str = Field(default="queued", max_length=16)
    attempts: int = Field(default=0)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    started_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    delivery_claimed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=True),
        description="Time a delivery task last claimed the posting of the answer. The claim "
        "lapses after delivery_lease_seconds.",
    )

    answer: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    short_answer: str | None = Field(default=None, max_length=256)
    footnote: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    strategy: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=128)
    calls: int = Field(default=0)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    wall_seconds: float = Field(default=0.0)
    model_seconds: float = Field(default=0.0)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    trace: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    reserved_tokens: int = Field(
        default=0, description="Tokens held against the asker's budget while the question runs."
    )
    difficulty_score: float | None = Field(default=None)
    difficulty_level: str | None = Field(default=None, max_length=16)
    plan_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    features: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    outcome: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class UsageEntry(SQLModel, table=True):
    """One row of the usage ledger: tokens a question spent, per user."""

    __tablename__ = "usage_ledger"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    question_id: int | None = Field(default=None, foreign_key="questions.id", index=True)
    kind: str = Field(default="answer", max_length=16)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    tokens: int = Field(default=0)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class AnswerMessage(SQLModel, table=True):
    """A chat message that carries (part of) an answer, so a reply to it can be a follow-up."""

    __tablename__ = "answer_messages"
    __table_args__ = (
        UniqueConstraint("platform", "chat_id", "message_id", name="uq_answer_messages_message"),
    )

    id: int | None = Field(default=None, primary_key=True)
    question_id: int = Field(foreign_key="questions.id", index=True)
    platform: str = Field(max_length=32)
    chat_id: str = Field(max_length=64)
    message_id: str = Field(max_length=64)


class AuditEntry(SQLModel, table=True):
    """One admin action: who did what to whom, and when."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=128, index=True)
    action: str = Field(max_length=32)
    target: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class AppSetting(SQLModel, table=True):
    """A setting changed at run time by an admin, such as the default budget."""

    __tablename__ = "app_settings"

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
