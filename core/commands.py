"""Platform-neutral user and admin commands, shared by every adapter and the CLI.

Adapters turn a chat command into a CommandRequest and show the CommandReply's text. The layer
authorizes every admin command itself, so an adapter cannot forget to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine

from core.config import BudgetPeriod, Settings

logger = logging.getLogger(__name__)

CommandName = Literal[
    "my_budget",
    "budget_show",
    "budget_set",
    "budget_reset",
    "budget_default",
    "usage",
    "block",
    "unblock",
    "why",
]
ADMIN_COMMANDS: frozenset[str] = frozenset(
    {
        "budget_show",
        "budget_set",
        "budget_reset",
        "budget_default",
        "usage",
        "block",
        "unblock",
        "why",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who runs a command. `is_server_manager` is Discord's Manage Server permission."""

    platform: str
    user_id: str
    display_name: str | None = None
    is_server_manager: bool = False

    @property
    def ref(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRequest:
    """A parsed command. `target` is `platform:id`, or a bare id on the actor's platform."""

    actor: Actor
    name: CommandName
    target: str | None = None
    tokens: int | None = None
    period: BudgetPeriod | None = None
    top: int | None = None
    question_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReply:
    """The outcome: `text` is ready to show in a chat; `data` is for `--json` output."""

    ok: bool
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def run_command(engine: Engine, settings: Settings, request: CommandRequest) -> CommandReply:
    """Authorize and run a command. User errors come back as a reply with ok=False, not raised."""
    raise NotImplementedError("the command layer is being built")
