"""The fixed texts the Telegram bot sends: help, progress and short error messages."""

from __future__ import annotations

from core.config import Settings

THINKING_TEXT = "thinking…"
QUEUE_UNAVAILABLE_TEXT = (
    "Ponder cannot queue questions right now. Please ask again in a few minutes."
)
UNKNOWN_COMMAND_TEXT = "Unknown command /{name}. Send /help to see what Ponder understands."
ADMIN_COMMANDS_HELP = (
    "Admin commands: /budget USER, /setbudget USER TOKENS [day|week|month], /resetbudget USER, "
    "/defaultbudget TOKENS [day|week|month], /usage [TOP] [day|week|month], /block USER [REASON], "
    "/unblock USER, /why QUESTION_ID. USER is a numeric Telegram user id."
)


def help_text(settings: Settings, *, user_id: int, bot_username: str) -> str:
    """Return the /start and /help text: how to ask, how budgets work, and the asker's id."""
    return (
        "Ponder answers questions and thinks harder when a question is harder.\n\n"
        "How to ask:\n"
        "• In this private chat, send any message.\n"
        f"• In a group, write /ask followed by the question, mention @{bot_username}, or reply "
        "to one of Ponder's messages.\n"
        "• Reply to an answer to ask a follow-up; Ponder then sees the earlier turns.\n\n"
        "Budgets: every question spends model tokens, and each user has an allowance of "
        f"{settings.default_budget_tokens:,} tokens per {settings.default_budget_period} unless "
        "an admin sets another. Harder questions spend more. The footnote under each answer "
        "shows what it spent and what is left; /budget shows your remaining budget and when it "
        "resets.\n\n"
        f"Your Telegram user id is {user_id}.\n\n"
        f"{ADMIN_COMMANDS_HELP}"
    )
