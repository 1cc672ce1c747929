"""Platform-neutral user and admin commands, shared by every adapter and the CLI.

Adapters turn a chat command into a CommandRequest (text adapters with `parse_chat_command`) and
show the CommandReply's text. The layer authorizes every admin command itself, so an adapter
cannot forget to, and writes every admin command, allowed or not, to the audit log.

An actor is an admin when its `platform:id` is in PONDER_ADMIN_IDS, when it is a Discord member
with the Manage Server permission and PONDER_DISCORD_MANAGERS_ARE_ADMINS is true, or when it is
the local operator: `ponder admin` runs on the server, and whoever has a shell there owns Ponder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine
from sqlmodel import Session

from core.budget import (
    MAX_BUDGET_TOKENS,
    MIN_USEFUL_TOKENS,
    PERIOD_ADJECTIVES,
    BudgetDefaults,
    BudgetStatus,
    as_period,
    budget_status,
    describe_reset,
    load_defaults,
    new_user_status,
    period_start,
    reset_usage,
    save_defaults,
    usage_report,
)
from core.config import BudgetPeriod, Settings
from core.db import session_scope
from core.errors import InvalidQuestionError, PonderError
from core.models import AuditEntry, Question, User, utcnow
from core.questions import find_user, get_or_create_user, parse_user_ref, validate_user_ref

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
DEFAULT_USAGE_TOP = 10
MAX_USAGE_TOP = 100
MAX_BLOCK_REASON_CHARS = 256
MAX_AUDIT_FIELD_CHARS = 128
DISCORD_MENTION = re.compile(r"^<@!?(\d+)>$")
PERIOD_PHRASES: dict[str, str] = {"day": "today", "week": "this week", "month": "this month"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """The user who runs a command. `is_server_manager` is Discord's Manage Server permission;
    `is_local_operator` marks `ponder admin` on the server's shell, which is always an admin.
    """

    platform: str
    user_id: str
    display_name: str | None = None
    is_server_manager: bool = False
    is_local_operator: bool = False

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
    question_cap_tokens: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandReply:
    """The outcome: `text` is ready to show in a chat; `data` is for `--json` output."""

    ok: bool
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class CommandRejectedError(Exception):
    """A command cannot run as given; the message is the reply text."""


def is_admin(actor: Actor, settings: Settings) -> bool:
    """Tell whether the actor may run admin commands."""
    if actor.is_local_operator or actor.ref in settings.admin_ids:
        return True
    return (
        actor.platform == "discord"
        and actor.is_server_manager
        and settings.discord_managers_are_admins
    )


def not_admin_message(actor: Actor) -> str:
    return (
        f"Only Ponder admins can run this command. Your id is {actor.ref}; an admin can add it "
        "to PONDER_ADMIN_IDS."
    )


def run_command(engine: Engine, settings: Settings, request: CommandRequest) -> CommandReply:
    """Authorize and run a command. User errors come back as a reply with ok=False, not raised."""
    is_admin_command = request.name in ADMIN_COMMANDS
    if is_admin_command and not is_admin(request.actor, settings):
        reply = CommandReply(ok=False, text=not_admin_message(request.actor))
        logger.warning("rejected %s from non-admin %s", request.name, request.actor.ref)
        _write_audit(engine, request, reply, authorized=False)
        return reply

    handler = HANDLERS[request.name]
    try:
        with session_scope(engine) as session:
            reply = handler(session, settings, request)
    except CommandRejectedError as exc:
        reply = CommandReply(ok=False, text=str(exc))
    except PonderError as exc:
        logger.warning("command %s from %s failed: %s", request.name, request.actor.ref, exc)
        reply = CommandReply(ok=False, text=exc.user_message)
    if is_admin_command:
        _write_audit(engine, request, reply, authorized=True)
        logger.info(
            "admin %s ran %s on %s: %s",
            request.actor.ref,
            request.name,
            _audit_target(request),
            "done" if reply.ok else "rejected",
        )
    return reply


def _write_audit(
    engine: Engine, request: CommandRequest, reply: CommandReply, *, authorized: bool
) -> None:
    details: dict[str, Any] = {"authorized": authorized, "ok": reply.ok}
    for name in ("tokens", "period", "top", "question_cap_tokens", "reason"):
        value = getattr(request, name)
        if value is not None:
            details[name] = value
    if not reply.ok:
        details["message"] = reply.text
    with session_scope(engine) as session:
        session.add(
            AuditEntry(
                actor=request.actor.ref[:MAX_AUDIT_FIELD_CHARS],
                action=request.name,
                target=_audit_target(request),
                details=details,
            )
        )


def _audit_target(request: CommandRequest) -> str | None:
    if request.question_id is not None:
        return f"question:{request.question_id}"
    if request.target is None:
        return None
    try:
        platform, user_id = resolve_target(request)
    except CommandRejectedError:
        return request.target[:MAX_AUDIT_FIELD_CHARS]
    return f"{platform}:{user_id}"


# Resolving and checking arguments.


def resolve_target(request: CommandRequest) -> tuple[str, str]:
    """Return the target user as (platform, id): `platform:id`, a Discord mention or a bare id
    on the actor's platform.
    """
    raw = (request.target or "").strip()
    if not raw:
        raise CommandRejectedError("Name a user as platform:id, for example telegram:123456.")
    mention = DISCORD_MENTION.match(raw)
    try:
        if mention:
            validate_user_ref("discord", mention.group(1))
            return "discord", mention.group(1)
        if ":" in raw:
            return parse_user_ref(raw)
        validate_user_ref(request.actor.platform, raw)
        return request.actor.platform, raw
    except InvalidQuestionError as exc:
        raise CommandRejectedError(
            f"Invalid user {raw[:80]!r}; write it as platform:id, for example telegram:123456."
        ) from exc


def _existing_user(session: Session, request: CommandRequest) -> User:
    platform, user_id = resolve_target(request)
    user = find_user(session, platform, user_id)
    if user is None:
        raise CommandRejectedError(f"No user {platform}:{user_id} has asked Ponder yet.")
    return user


def _checked_tokens(tokens: int | None, *, what: str, minimum: int = 0) -> int:
    if tokens is None:
        raise CommandRejectedError(f"Give the {what} in tokens, for example 50000.")
    if not minimum <= tokens <= MAX_BUDGET_TOKENS:
        raise CommandRejectedError(
            f"Invalid {what} {tokens:,}: use {minimum:,} to {MAX_BUDGET_TOKENS:,} tokens."
        )
    return tokens


def _checked_cap(tokens: int | None) -> int | None:
    if tokens is None:
        return None
    return _checked_tokens(tokens, what="per-question cap", minimum=MIN_USEFUL_TOKENS)


# Budget commands.


def _my_budget(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    actor = request.actor
    user = find_user(session, actor.platform, actor.user_id)
    now = utcnow()
    if user is None:
        status = new_user_status(session, settings, actor.platform, actor.user_id, now=now)
    else:
        status = budget_status(session, settings, user, now=now)
    return CommandReply(ok=True, text=describe_own_budget(status, now), data=status.as_dict())


def describe_own_budget(status: BudgetStatus, now: datetime) -> str:
    """Return the `my_budget` reply, addressed to the user."""
    cap = f"One question may use up to {status.question_cap_tokens:,} tokens."
    if status.limit_tokens is None:
        text = (
            f"You have no token limit (Ponder admin). You used {status.used_tokens:,} tokens "
            f"{PERIOD_PHRASES[status.period]}. {cap}"
        )
    else:
        text = (
            f"Your {PERIOD_ADJECTIVES[status.period]} budget: {status.remaining_tokens:,} of "
            f"{status.limit_tokens:,} tokens left ({status.used_tokens:,} used, "
            f"{status.reserved_tokens:,} reserved). It resets {describe_reset(status, now)}. {cap}"
        )
    if status.is_blocked:
        text += " You are blocked from asking Ponder."
    return text


def describe_budget(status: BudgetStatus, user: User, now: datetime) -> str:
    """Return an admin's view of one user's budget."""
    if status.limit_tokens is None:
        allowance = (
            f"no limit (admin); {status.used_tokens:,} tokens used {PERIOD_PHRASES[status.period]}"
        )
    else:
        source = "the default" if user.budget_tokens is None else "own budget"
        allowance = (
            f"{PERIOD_ADJECTIVES[status.period]} budget {status.limit_tokens:,} tokens ({source}): "
            f"{status.remaining_tokens:,} left, {status.used_tokens:,} used, "
            f"{status.reserved_tokens:,} reserved; resets {describe_reset(status, now)}"
        )
    text = f"{status.user_ref}: {allowance}. Per question up to {status.question_cap_tokens:,}."
    if user.is_blocked:
        text += f" Blocked: {user.blocked_reason or 'no reason given'}."
    return text


def _budget_show(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    user = _existing_user(session, request)
    now = utcnow()
    status = budget_status(session, settings, user, now=now)
    data = {**status.as_dict(), "own_budget": user.budget_tokens is not None}
    return CommandReply(ok=True, text=describe_budget(status, user, now), data=data)


def _budget_set(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    tokens = _checked_tokens(request.tokens, what="budget")
    cap = _checked_cap(request.question_cap_tokens)
    platform, user_id = resolve_target(request)
    user = get_or_create_user(session, platform, user_id)
    user.budget_tokens = tokens
    if request.period is not None:
        user.budget_period = request.period
    if cap is not None:
        user.question_cap_tokens = cap
    session.add(user)
    session.flush()

    now = utcnow()
    status = budget_status(session, settings, user, now=now)
    text = (
        f"Set {user.ref}'s budget to {tokens:,} tokens per {status.period}. "
        f"{status.remaining_tokens or 0:,} tokens are left now; "
        f"it resets {describe_reset(status, now)}."
    )
    if status.limit_tokens is None:
        text += " As an admin they stay unlimited while PONDER_ADMINS_UNLIMITED is true."
    return CommandReply(ok=True, text=text, data=status.as_dict())


def _budget_reset(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    user = _existing_user(session, request)
    cancelled = reset_usage(session, settings, user)
    session.flush()
    status = budget_status(session, settings, user)
    if cancelled == 0:
        text = f"{user.ref} used no tokens {PERIOD_PHRASES[status.period]}; nothing to reset."
    else:
        text = (
            f"Cleared {cancelled:,} tokens of {user.ref}'s usage {PERIOD_PHRASES[status.period]}."
        )
    if status.limit_tokens is not None:
        text += f" {status.remaining_tokens:,} of {status.limit_tokens:,} tokens are left."
    return CommandReply(ok=True, text=text, data={**status.as_dict(), "cleared_tokens": cancelled})


def _budget_default(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    tokens = _checked_tokens(request.tokens, what="default budget")
    cap = _checked_cap(request.question_cap_tokens)
    current = load_defaults(session, settings)
    defaults = BudgetDefaults(
        tokens=tokens,
        period=request.period or current.period,
        question_cap_tokens=cap or current.question_cap_tokens,
    )
    save_defaults(session, defaults)
    text = (
        f"The default budget is now {defaults.tokens:,} tokens per {defaults.period}, up to "
        f"{defaults.question_cap_tokens:,} per question. It applies to every user without an "
        "own budget."
    )
    data = {
        "tokens": defaults.tokens,
        "period": defaults.period,
        "question_cap_tokens": defaults.question_cap_tokens,
    }
    return CommandReply(ok=True, text=text, data=data)


def _usage(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    top = DEFAULT_USAGE_TOP if request.top is None else request.top
    if not 1 <= top <= MAX_USAGE_TOP:
        raise CommandRejectedError(f"Invalid top {top}: use 1 to {MAX_USAGE_TOP} users.")
    period = request.period or load_defaults(session, settings).period
    now = utcnow()
    rows = usage_report(session, period, top=top, now=now)
    since = _period_start_text(period, now)
    if not rows:
        text = f"No tokens spent {PERIOD_PHRASES[period]} (since {since})."
    else:
        lines = [f"Top {len(rows)} users by tokens {PERIOD_PHRASES[period]} (since {since}):"]
        lines += [
            f"{rank}. {row.user_ref}: {row.tokens:,} tokens, {_plural(row.questions, 'question')}"
            for rank, row in enumerate(rows, start=1)
        ]
        text = "\n".join(lines)
    data = {
        "period": period,
        "since": since,
        "users": [
            {"user": row.user_ref, "tokens": row.tokens, "questions": row.questions} for row in rows
        ],
    }
    return CommandReply(ok=True, text=text, data=data)


def _period_start_text(period: BudgetPeriod, now: datetime) -> str:
    return f"{period_start(period, now):%Y-%m-%d %H:%M} UTC"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


# Blocking.


def _block(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    reason = (request.reason or "").strip() or None
    if reason is not None and len(reason) > MAX_BLOCK_REASON_CHARS:
        raise CommandRejectedError(
            f"The reason is {len(reason)} characters long; the maximum is {MAX_BLOCK_REASON_CHARS}."
        )
    user = _existing_user(session, request)
    user.is_blocked = True
    user.blocked_reason = reason
    session.add(user)
    text = f"Blocked {user.ref}"
    text += f" ({reason})." if reason else "."
    text += " Their questions are refused until an admin unblocks them."
    return CommandReply(ok=True, text=text, data={"user": user.ref, "blocked": True})


def _unblock(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    user = _existing_user(session, request)
    was_blocked = user.is_blocked
    user.is_blocked = False
    user.blocked_reason = None
    session.add(user)
    text = f"Unblocked {user.ref}." if was_blocked else f"{user.ref} is not blocked."
    return CommandReply(ok=True, text=text, data={"user": user.ref, "blocked": False})


# Explaining a question.


def _why(session: Session, settings: Settings, request: CommandRequest) -> CommandReply:
    if request.question_id is None:
        raise CommandRejectedError("Give a question id, for example 42.")
    question = session.get(Question, request.question_id)
    if question is None:
        raise CommandRejectedError(f"No question {request.question_id} exists.")
    user = session.get(User, question.user_id)
    asker = user.ref if user else f"user id {question.user_id}"
    data = question_trace_summary(question, asker)
    return CommandReply(ok=True, text=describe_question_trace(data), data=data)


def question_trace_summary(question: Question, asker: str) -> dict[str, Any]:
    """Return the facts `why` shows about a question, from its stored row and trace."""
    trace = question.trace or {}
    plan = trace.get("plan") or {}
    agreement = trace.get("agreement")
    return {
        "question_id": question.id,
        "user": asker,
        "status": question.status,
        "effort": question.effort,
        "planned_strategy": plan.get("strategy"),
        "planned_budget_tokens": plan.get("budget_tokens"),
        "difficulty": plan.get("difficulty") or question.difficulty_level,
        "plan_reason": plan.get("reason") or question.plan_reason,
        "strategy": question.strategy,
        "calls": question.calls,
        "samples": len(trace.get("candidates") or []),
        "agreement": list(agreement) if agreement else None,
        "stop_reason": trace.get("stop_reason"),
        "prompt_tokens": question.prompt_tokens,
        "completion_tokens": question.completion_tokens,
        "tokens": question.prompt_tokens + question.completion_tokens,
        "reserved_tokens": (trace.get("budget") or {}).get("reserved_tokens"),
        "wall_seconds": round(question.wall_seconds, 2),
        "model_seconds": round(question.model_seconds, 2),
        "error": question.error,
    }


def describe_question_trace(summary: dict[str, Any]) -> str:
    """Return `why`'s reply: a few short lines that read well in a chat."""
    lines = [f"Question {summary['question_id']} from {summary['user']}: {summary['status']}"]
    if summary["planned_strategy"]:
        plan = f"Plan: {summary['planned_strategy']}"
        if summary["planned_budget_tokens"] is not None:
            plan += f", budget {summary['planned_budget_tokens']:,} tokens"
        if summary["difficulty"]:
            plan += f", difficulty {summary['difficulty']}"
        if summary["plan_reason"]:
            plan += f" ({summary['plan_reason']})"
        lines.append(plan)
    if summary["strategy"]:
        ran = [
            f"Ran: {summary['strategy']}",
            _plural(summary["calls"], "call"),
            _plural(summary["samples"], "sample"),
        ]
        if summary["agreement"]:
            agreed, total = summary["agreement"]
            ran.append(f"{agreed} of {total} agree")
        if summary["stop_reason"]:
            ran.append(f"stop reason: {summary['stop_reason']}")
        lines.append(", ".join(ran))
        tokens = (
            f"Tokens: {summary['prompt_tokens']:,} + {summary['completion_tokens']:,} = "
            f"{summary['tokens']:,}"
        )
        if summary["reserved_tokens"] is not None:
            tokens += f" (reserved {summary['reserved_tokens']:,})"
        tokens += f"; {summary['wall_seconds']} s, model {summary['model_seconds']} s"
        lines.append(tokens)
    if summary["error"]:
        lines.append(f"Error: {summary['error']}")
    return "\n".join(lines)


Handler = Callable[[Session, Settings, CommandRequest], CommandReply]

HANDLERS: dict[str, Handler] = {
    "my_budget": _my_budget,
    "budget_show": _budget_show,
    "budget_set": _budget_set,
    "budget_reset": _budget_reset,
    "budget_default": _budget_default,
    "usage": _usage,
    "block": _block,
    "unblock": _unblock,
    "why": _why,
}


# Parsing chat commands.

PERIOD_WORDS = "day|week|month"
CHAT_USAGE: dict[str, str] = {
    "budget": "/budget",
    "showbudget": "/showbudget USER",
    "setbudget": f"/setbudget USER TOKENS [{PERIOD_WORDS}]",
    "resetbudget": "/resetbudget USER",
    "defaultbudget": f"/defaultbudget TOKENS [{PERIOD_WORDS}]",
    "usage": f"/usage [TOP] [{PERIOD_WORDS}]",
    "block": "/block USER [REASON]",
    "unblock": "/unblock USER",
    "why": "/why QUESTION_ID",
}
CHAT_ALIASES: dict[str, str] = {
    "mybudget": "budget",
    "my_budget": "budget",
    "budget_show": "showbudget",
    "budget_set": "setbudget",
    "budget_reset": "resetbudget",
    "budget_default": "defaultbudget",
}
TOKEN_SUFFIXES: dict[str, int] = {"k": 1_000, "m": 1_000_000}


class _UsageError(Exception):
    """The arguments do not fit the command's usage line."""


def parse_chat_command(name: str, args: list[str], actor: Actor) -> CommandRequest | CommandReply:
    """Parse a text command such as `/setbudget telegram:42 5000 day` into a request.

    `name` may carry the leading slash and Telegram's `@botname`. Bad arguments return a reply
    with the usage line instead of raising.
    """
    key = name.strip().lstrip("/").split("@", 1)[0].lower()
    key = CHAT_ALIASES.get(key, key)
    parser = _CHAT_PARSERS.get(key)
    if parser is None:
        known = ", ".join(f"/{command}" for command in CHAT_USAGE)
        return CommandReply(ok=False, text=f"Unknown command /{key}. Commands: {known}.")
    try:
        return parser(actor, [arg for arg in args if arg.strip()])
    except _UsageError:
        return CommandReply(ok=False, text=f"Usage: {CHAT_USAGE[key]}")


def parse_tokens(text: str) -> int:
    """Parse a token count: "5000", "5,000", "5_000", "5k" or "2m".

    >>> parse_tokens("5,000"), parse_tokens("12k"), parse_tokens("1.5m")
    (5000, 12000, 1500000)
    """
    cleaned = text.strip().lower().replace(",", "").replace("_", "")
    multiplier = TOKEN_SUFFIXES.get(cleaned[-1:], 1)
    if multiplier != 1:
        cleaned = cleaned[:-1]
    try:
        value = float(cleaned) * multiplier if multiplier != 1 else int(cleaned)
    except ValueError as exc:
        raise ValueError(f"invalid token count {text!r}; write a number such as 5000") from exc
    if value < 0 or value != int(value):
        raise ValueError(f"invalid token count {text!r}; use a whole number of at least 0")
    return int(value)


def _tokens_arg(text: str) -> int:
    try:
        return parse_tokens(text)
    except ValueError as exc:
        raise _UsageError from exc


def _period_arg(text: str) -> BudgetPeriod:
    period = as_period(text.lower(), "day")
    if period != text.lower():
        raise _UsageError
    return period


def _parse_budget(actor: Actor, args: list[str]) -> CommandRequest:
    if args:
        raise _UsageError
    return CommandRequest(actor=actor, name="my_budget")


def _parse_show_budget(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) != 1:
        raise _UsageError
    return CommandRequest(actor=actor, name="budget_show", target=args[0])


def _parse_set_budget(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) not in (2, 3):
        raise _UsageError
    period = _period_arg(args[2]) if len(args) == 3 else None
    return CommandRequest(
        actor=actor, name="budget_set", target=args[0], tokens=_tokens_arg(args[1]), period=period
    )


def _parse_reset_budget(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) != 1:
        raise _UsageError
    return CommandRequest(actor=actor, name="budget_reset", target=args[0])


def _parse_default_budget(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) not in (1, 2):
        raise _UsageError
    period = _period_arg(args[1]) if len(args) == 2 else None
    return CommandRequest(
        actor=actor, name="budget_default", tokens=_tokens_arg(args[0]), period=period
    )


def _parse_usage(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) > 2:
        raise _UsageError
    top: int | None = None
    period: BudgetPeriod | None = None
    for arg in args:
        if arg.isdigit() and top is None:
            top = int(arg)
        elif period is None:
            period = _period_arg(arg)
        else:
            raise _UsageError
    return CommandRequest(actor=actor, name="usage", top=top, period=period)


def _parse_block(actor: Actor, args: list[str]) -> CommandRequest:
    if not args:
        raise _UsageError
    reason = " ".join(args[1:]) or None
    return CommandRequest(actor=actor, name="block", target=args[0], reason=reason)


def _parse_unblock(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) != 1:
        raise _UsageError
    return CommandRequest(actor=actor, name="unblock", target=args[0])


def _parse_why(actor: Actor, args: list[str]) -> CommandRequest:
    if len(args) != 1 or not args[0].lstrip("#").isdigit():
        raise _UsageError
    return CommandRequest(actor=actor, name="why", question_id=int(args[0].lstrip("#")))


_CHAT_PARSERS: dict[str, Callable[[Actor, list[str]], CommandRequest]] = {
    "budget": _parse_budget,
    "showbudget": _parse_show_budget,
    "setbudget": _parse_set_budget,
    "resetbudget": _parse_reset_budget,
    "defaultbudget": _parse_default_budget,
    "usage": _parse_usage,
    "block": _parse_block,
    "unblock": _parse_unblock,
    "why": _parse_why,
}
