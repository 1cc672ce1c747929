"""The neutral request and reply types that pass between the adapters and the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Effort = Literal["auto", "low", "medium", "high"]
EFFORTS: tuple[Effort, ...] = ("auto", "low", "medium", "high")


@dataclass(frozen=True, slots=True, kw_only=True)
class AskRequest:
    """A question as an adapter received it: who asked, where, and what."""

    platform: str
    user_id: str
    text: str
    display_name: str | None = None
    chat_id: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    follow_up_of_id: int | None = None
    effort: Effort = "auto"
    strategy: str | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdapterLimits:
    """What a chat platform allows when an answer is delivered."""

    max_message_chars: int
    can_edit: bool
    min_edit_interval_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An answer ready for delivery: the text, its footnote and how it was produced."""

    question_id: int
    answer: str
    footnote: str
    status: str
    error: str | None = None
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        return f"{self.answer}\n\n{self.footnote}" if self.footnote else self.answer
