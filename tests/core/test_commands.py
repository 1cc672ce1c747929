"""Tests for the command layer: authorization, audit rows, each command and chat parsing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import Engine, func
from sqlmodel import col, select

from core.answering import build_input, plan_question, record_answer, run_plan, start_question
from core.budget import reserve_question_budget
from core.commands import (
    ADMIN_COMMANDS,
    Actor,
    CommandReply,
    CommandRequest,
    parse_chat_command,
    parse_tokens,
    run_command,
)
from core.config import Settings
from core.db import session_scope
from core.errors import UserBlockedError
from core.llm.scripted import ScriptedClient, ScriptedReply
from core.models import AppSetting, AuditEntry, UsageEntry, User
from core.questions import submit_question
from core.schemas import AskRequest
from core.strategies.base import BudgetedClient

ADMIN = Actor(platform="telegram", user_id="1")
STRANGER = Actor(platform="telegram", user_id="123456")
MANAGER = Actor(platform="discord", user_id="77", is_server_manager=True)
OPERATOR = Actor(platform="cli", user_id="root", is_local_operator=True)
NOT_ADMIN_TEXT = (
    "Only Ponder admins can run this command. Your id is telegram:123456; an admin can add it "
    "to PONDER_ADMIN_IDS."
)


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_ids": ["telegram:1"]})


def _ask(engine: Engine, settings: Settings, user_id: str = "42") -> int:
    question = submit_question(
        engine,
        settings,
        AskRequest(platform="telegram", user_id=user_id, text="What is 2 + 3?", strategy="direct"),
    )
    assert question.id is not None
    return question.id


def _answer(engine: Engine, settings: Settings, question_id: int) -> None:
    question = start_question(engine, question_id)
    assert question is not None
    plan = plan_question(question, settings)
    reservation = reserve_question_budget(
        engine, settings, question_id, planned_tokens=plan.budget_tokens
    )
    # The prompt is 9 tokens; 91 completion tokens make the answer cost 100.
    client = BudgetedClient(
        ScriptedClient([ScriptedReply("The answer is 5.", completion_tokens=91)]),
        budget_tokens=reservation.tokens,
    )
    result = asyncio.run(run_plan(client, build_input(engine, question), plan))
    record_answer(
        engine, question_id, result, plan, model="scripted", wall_seconds=0.2, settings=settings
    )


def _run(engine: Engine, settings: Settings, **fields: object) -> CommandReply:
    fields.setdefault("actor", ADMIN)
    return run_command(engine, settings, CommandRequest(**fields))  # type: ignore[arg-type]


def _audit_rows(engine: Engine) -> list[AuditEntry]:
    with session_scope(engine) as session:
        return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())


# Authorization and audit, for every admin command.

ADMIN_REQUESTS: dict[str, dict[str, object]] = {
    "budget_show": {"target": "telegram:42"},
    "budget_set": {"target": "telegram:42", "tokens": 5_000},
    "budget_reset": {"target": "telegram:42"},
    "budget_default": {"tokens": 20_000},
    "usage": {},
    "block": {"target": "telegram:42", "reason": "spam"},
    "unblock": {"target": "telegram:42"},
    "why": {"question_id": 1},
}


def test_every_admin_command_covered() -> None:
    assert set(ADMIN_REQUESTS) == ADMIN_COMMANDS


@pytest.mark.parametrize("name", sorted(ADMIN_COMMANDS))
@pytest.mark.parametrize(
    ("actor", "managers_are_admins", "allowed"),
    [
        (ADMIN, False, True),
        (OPERATOR, False, True),
        (MANAGER, True, True),
        (MANAGER, False, False),
        (STRANGER, True, False),
    ],
    ids=["admin-id", "local-operator", "discord-manager", "manager-setting-off", "stranger"],
)
def test_admin_command_authorization(
    migrated_engine: Engine,
    admin_settings: Settings,
    name: str,
    actor: Actor,
    managers_are_admins: bool,
    allowed: bool,
) -> None:
    settings = admin_settings.model_copy(
        update={"discord_managers_are_admins": managers_are_admins}
    )
    _ask(migrated_engine, settings)

    reply = _run(migrated_engine, settings, actor=actor, name=name, **ADMIN_REQUESTS[name])

    rows = _audit_rows(migrated_engine)
    assert len(rows) == 1
    assert rows[0].actor == actor.ref
    assert rows[0].action == name
    assert rows[0].details["authorized"] is allowed
    assert rows[0].created_at is not None
    if allowed:
        assert reply.ok is True
        assert "Only Ponder admins" not in reply.text
    else:
        assert reply.ok is False
        assert reply.text == (
            f"Only Ponder admins can run this command. Your id is {actor.ref}; an admin can "
            "add it to PONDER_ADMIN_IDS."
        )


def test_audit_row_records_target(migrated_engine: Engine, admin_settings: Settings) -> None:
    _run(migrated_engine, admin_settings, name="budget_set", target="telegram:42", tokens=5_000)
    _run(migrated_engine, admin_settings, actor=STRANGER, name="block", target="99")
    _run(migrated_engine, admin_settings, name="why", question_id=7)

    rows = _audit_rows(migrated_engine)

    assert [row.target for row in rows] == ["telegram:42", "telegram:99", "question:7"]
    assert rows[0].details == {"authorized": True, "ok": True, "tokens": 5_000}
    assert rows[1].details["authorized"] is False
    assert rows[1].details["message"] == NOT_ADMIN_TEXT
    assert rows[2].details["ok"] is False


def test_my_budget_needs_no_admin(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(migrated_engine, admin_settings, actor=STRANGER, name="my_budget")

    assert reply.ok is True
    assert reply.data["remaining_tokens"] == 50_000
    assert _audit_rows(migrated_engine) == []


# The commands themselves.


@time_machine.travel(datetime(2026, 3, 4, 20, 48, tzinfo=UTC), tick=False)
def test_my_budget_text(migrated_engine: Engine, admin_settings: Settings) -> None:
    _answer(migrated_engine, admin_settings, _ask(migrated_engine, admin_settings, "123456"))

    reply = _run(migrated_engine, admin_settings, actor=STRANGER, name="my_budget")

    assert reply.text == (
        "Your daily budget: 49,900 of 50,000 tokens left (100 used, 0 reserved). It resets at "
        "00:00 UTC (in 3 h 12 min). One question may use up to 8,000 tokens."
    )


def test_my_budget_admin_unlimited(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(migrated_engine, admin_settings, name="my_budget")

    assert reply.text.startswith("You have no token limit (Ponder admin).")
    assert reply.data["remaining_tokens"] is None


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("budget_show", {}),
        ("budget_reset", {}),
        ("block", {}),
        ("unblock", {}),
    ],
)
def test_unknown_target_user(
    migrated_engine: Engine, admin_settings: Settings, name: str, fields: dict[str, object]
) -> None:
    reply = _run(migrated_engine, admin_settings, name=name, target="telegram:42", **fields)

    assert reply.ok is False
    assert reply.text == "No user telegram:42 has asked Ponder yet."


def test_budget_set_creates_user(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(
        migrated_engine,
        admin_settings,
        name="budget_set",
        target="telegram:42",
        tokens=5_000,
        period="week",
    )

    assert reply.ok is True
    assert reply.text.startswith("Set telegram:42's budget to 5,000 tokens per week.")
    assert reply.data["limit_tokens"] == 5_000
    assert reply.data["period"] == "week"
    with session_scope(migrated_engine) as session:
        user = session.exec(select(User).where(User.platform_user_id == "42")).one()
    assert user.budget_tokens == 5_000
    assert user.budget_period == "week"


def test_budget_set_bare_id(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(migrated_engine, admin_settings, name="budget_set", target="42", tokens=100)

    assert reply.data["user"] == "telegram:42"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tokens": -1}, "Invalid budget -1: use 0 to 2,000,000,000 tokens."),
        ({"tokens": None}, "Give the budget in tokens, for example 50000."),
        (
            {"tokens": 500, "question_cap_tokens": 10},
            "Invalid per-question cap 10: use 64 to 2,000,000,000 tokens.",
        ),
        (
            {"tokens": 500, "target": "tele gram:1"},
            "Invalid user 'tele gram:1'; write it as platform:id, for example telegram:123456.",
        ),
    ],
)
def test_budget_set_rejects_bad_values(
    migrated_engine: Engine, admin_settings: Settings, fields: dict[str, object], expected: str
) -> None:
    fields.setdefault("target", "telegram:42")

    reply = _run(migrated_engine, admin_settings, name="budget_set", **fields)

    assert reply.ok is False
    assert reply.text == expected


@time_machine.travel(datetime(2026, 3, 4, 20, 48, tzinfo=UTC), tick=False)
def test_budget_show_fields(migrated_engine: Engine, admin_settings: Settings) -> None:
    _answer(migrated_engine, admin_settings, _ask(migrated_engine, admin_settings))

    reply = _run(migrated_engine, admin_settings, name="budget_show", target="telegram:42")

    assert reply.data["limit_tokens"] == 50_000
    assert reply.data["used_tokens"] == 100
    assert reply.data["reserved_tokens"] == 0
    assert reply.data["remaining_tokens"] == 49_900
    assert reply.data["period"] == "day"
    assert reply.data["resets_at"] == "2026-03-05T00:00:00+00:00"
    assert reply.text == (
        "telegram:42: daily budget 50,000 tokens (the default): 49,900 left, 100 used, "
        "0 reserved; resets at 00:00 UTC (in 3 h 12 min). Per question up to 8,000."
    )


def test_budget_reset_clears_usage(migrated_engine: Engine, admin_settings: Settings) -> None:
    _answer(migrated_engine, admin_settings, _ask(migrated_engine, admin_settings))

    reply = _run(migrated_engine, admin_settings, name="budget_reset", target="telegram:42")

    assert reply.text == (
        "Cleared 100 tokens of telegram:42's usage today. 50,000 of 50,000 tokens are left."
    )
    assert reply.data["used_tokens"] == 0
    with session_scope(migrated_engine) as session:
        rows = session.exec(select(UsageEntry.kind, UsageEntry.tokens)).all()
    assert sorted(rows) == [("answer", 100), ("reset", -100)]


def test_budget_default_applies(migrated_engine: Engine, admin_settings: Settings) -> None:
    _ask(migrated_engine, admin_settings)

    reply = _run(
        migrated_engine,
        admin_settings,
        name="budget_default",
        tokens=20_000,
        period="month",
        question_cap_tokens=500,
    )
    shown = _run(migrated_engine, admin_settings, name="budget_show", target="telegram:42")

    assert reply.text == (
        "The default budget is now 20,000 tokens per month, up to 500 per question. It applies "
        "to every user without an own budget."
    )
    assert shown.data["limit_tokens"] == 20_000
    assert shown.data["period"] == "month"
    assert shown.data["question_cap_tokens"] == 500
    with session_scope(migrated_engine) as session:
        stored = session.get(AppSetting, "budget_default")
    assert stored is not None
    assert stored.value == {"tokens": 20_000, "period": "month", "question_cap_tokens": 500}


@time_machine.travel(datetime(2026, 3, 4, 12, 0, tzinfo=UTC), tick=False)
def test_usage_lists_top_users(migrated_engine: Engine, admin_settings: Settings) -> None:
    for user_id, count in (("5", 1), ("6", 2)):
        for _ in range(count):
            _answer(migrated_engine, admin_settings, _ask(migrated_engine, admin_settings, user_id))

    reply = _run(migrated_engine, admin_settings, name="usage", top=5)

    assert reply.text == (
        "Top 2 users by tokens today (since 2026-03-04 00:00 UTC):\n"
        "1. telegram:6: 200 tokens, 2 questions\n"
        "2. telegram:5: 100 tokens, 1 question"
    )
    assert reply.data["users"][0] == {"user": "telegram:6", "tokens": 200, "questions": 2}


def test_usage_rejects_bad_top(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(migrated_engine, admin_settings, name="usage", top=0)

    assert reply.ok is False
    assert reply.text == "Invalid top 0: use 1 to 100 users."


def test_block_then_unblock(migrated_engine: Engine, admin_settings: Settings) -> None:
    _ask(migrated_engine, admin_settings)

    blocked = _run(
        migrated_engine, admin_settings, name="block", target="telegram:42", reason="spam"
    )
    with pytest.raises(UserBlockedError):
        _ask(migrated_engine, admin_settings)
    unblocked = _run(migrated_engine, admin_settings, name="unblock", target="telegram:42")
    _ask(migrated_engine, admin_settings)

    assert blocked.text == (
        "Blocked telegram:42 (spam). Their questions are refused until an admin unblocks them."
    )
    assert unblocked.text == "Unblocked telegram:42."


def test_why_shows_trace(migrated_engine: Engine, admin_settings: Settings) -> None:
    question_id = _ask(migrated_engine, admin_settings)
    _answer(migrated_engine, admin_settings, question_id)

    reply = _run(migrated_engine, admin_settings, name="why", question_id=question_id)

    lines = reply.text.splitlines()
    assert lines[0] == f"Question {question_id} from telegram:42: answered"
    assert lines[1].startswith("Plan: direct, budget 8,000 tokens")
    assert lines[2] == "Ran: direct, 1 call, 1 sample, stop reason: completed"
    assert lines[3] == "Tokens: 9 + 91 = 100 (reserved 8,000); 0.2 s, model 0.0 s"
    assert reply.data["stop_reason"] == "completed"
    assert reply.data["samples"] == 1


def test_why_unknown_question(migrated_engine: Engine, admin_settings: Settings) -> None:
    reply = _run(migrated_engine, admin_settings, name="why", question_id=404)

    assert reply.ok is False
    assert reply.text == "No question 404 exists."


# Parsing chat commands.


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("/budget", [], CommandRequest(actor=STRANGER, name="my_budget")),
        (
            "showbudget",
            ["telegram:42"],
            CommandRequest(actor=STRANGER, name="budget_show", target="telegram:42"),
        ),
        (
            "/setbudget@PonderBot",
            ["telegram:42", "5,000", "week"],
            CommandRequest(
                actor=STRANGER, name="budget_set", target="telegram:42", tokens=5_000, period="week"
            ),
        ),
        (
            "budget_set",
            ["42", "5k"],
            CommandRequest(actor=STRANGER, name="budget_set", target="42", tokens=5_000),
        ),
        (
            "resetbudget",
            ["telegram:42"],
            CommandRequest(actor=STRANGER, name="budget_reset", target="telegram:42"),
        ),
        (
            "defaultbudget",
            ["20000", "month"],
            CommandRequest(actor=STRANGER, name="budget_default", tokens=20_000, period="month"),
        ),
        ("usage", [], CommandRequest(actor=STRANGER, name="usage")),
        (
            "usage",
            ["week", "5"],
            CommandRequest(actor=STRANGER, name="usage", top=5, period="week"),
        ),
        (
            "block",
            ["telegram:42", "too", "many", "questions"],
            CommandRequest(
                actor=STRANGER, name="block", target="telegram:42", reason="too many questions"
            ),
        ),
        (
            "unblock",
            ["telegram:42"],
            CommandRequest(actor=STRANGER, name="unblock", target="telegram:42"),
        ),
        ("why", ["#17"], CommandRequest(actor=STRANGER, name="why", question_id=17)),
    ],
)
def test_parse_chat_command(name: str, args: list[str], expected: CommandRequest) -> None:
    assert parse_chat_command(name, args, STRANGER) == expected


@pytest.mark.parametrize(
    ("name", "args", "usage"),
    [
        ("setbudget", ["telegram:42"], "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("setbudget", ["telegram:42", "lots"], "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("setbudget", ["telegram:42", "-5"], "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("setbudget", ["u", "5", "year"], "Usage: /setbudget USER TOKENS [day|week|month]"),
        ("budget", ["x"], "Usage: /budget"),
        ("showbudget", [], "Usage: /showbudget USER"),
        ("resetbudget", [], "Usage: /resetbudget USER"),
        ("defaultbudget", [], "Usage: /defaultbudget TOKENS [day|week|month]"),
        ("usage", ["1", "2"], "Usage: /usage [TOP] [day|week|month]"),
        ("block", [], "Usage: /block USER [REASON]"),
        ("unblock", ["a", "b"], "Usage: /unblock USER"),
        ("why", ["abc"], "Usage: /why QUESTION_ID"),
    ],
)
def test_parse_chat_command_usage(name: str, args: list[str], usage: str) -> None:
    reply = parse_chat_command(name, args, STRANGER)

    assert isinstance(reply, CommandReply)
    assert reply.ok is False
    assert reply.text == usage


def test_parse_unknown_chat_command() -> None:
    reply = parse_chat_command("/frobnicate", [], STRANGER)

    assert isinstance(reply, CommandReply)
    assert reply.text.startswith("Unknown command /frobnicate. Commands: /budget, /showbudget")


@pytest.mark.parametrize(
    ("text", "expected"), [("5000", 5_000), ("5,000", 5_000), ("5_000", 5_000), ("2.5k", 2_500)]
)
def test_parse_tokens(text: str, expected: int) -> None:
    assert parse_tokens(text) == expected


@pytest.mark.parametrize("text", ["", "k", "-3", "1.5", "lots"])
def test_parse_tokens_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid token count"):
        parse_tokens(text)


def test_audit_count_matches_commands(migrated_engine: Engine, admin_settings: Settings) -> None:
    for actor in (ADMIN, STRANGER):
        _run(migrated_engine, admin_settings, actor=actor, name="usage")
        _run(migrated_engine, admin_settings, actor=actor, name="my_budget")

    with session_scope(migrated_engine) as session:
        count = session.exec(select(func.count()).select_from(AuditEntry)).one()
    assert count == 2
