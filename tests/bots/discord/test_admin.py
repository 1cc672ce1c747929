"""`/budget` and `/ponder` through the bot's command tree and the core command layer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from core.commands import Actor, CommandRequest, run_command
from core.config import Settings
from core.db import session_scope
from core.questions import find_user, get_or_create_user
from tests.bots.discord.conftest import ADMIN_ID, APPLICATION_ID, BotHarness
from tests.bots.discord.payloads import (
    INTEGER_OPTION,
    MANAGE_GUILD,
    SEND_MESSAGES,
    STRING_OPTION,
    SUB_COMMAND,
    SUB_COMMAND_GROUP,
    USER_OPTION,
    interaction_create,
    option,
)

MEMBER_ID = 2_200_000_000_000_000_001
TARGET_ID = 2_200_000_000_000_000_002
EPHEMERAL = 1 << 6


def ponder_payload(
    user_id: int,
    subcommand: list[str],
    options: list[dict[str, Any]],
    *,
    permissions: int = SEND_MESSAGES,
) -> dict[str, Any]:
    """A /ponder interaction; `subcommand` is ["block"] or ["budget", "set"]."""
    leaf = {"name": subcommand[-1], "type": SUB_COMMAND, "options": options}
    top = leaf
    if len(subcommand) == 2:
        top = {"name": subcommand[0], "type": SUB_COMMAND_GROUP, "options": [leaf]}
    return interaction_create(
        application_id=APPLICATION_ID,
        user_id=user_id,
        command="ponder",
        options=[top],
        permissions=permissions,
        resolved_users=[TARGET_ID],
    )


def create_target(engine: Engine) -> None:
    with session_scope(engine) as session:
        get_or_create_user(session, "discord", str(TARGET_ID))


def is_blocked(engine: Engine) -> bool:
    with session_scope(engine) as session:
        user = find_user(session, "discord", str(TARGET_ID))
        assert user is not None
        return user.is_blocked


def reply_text(bot_harness: BotHarness) -> str:
    [edit] = bot_harness.server.requests_to("PATCH", "/messages/@original$")
    content: str = edit.body["content"]
    return content


def block_payload(user_id: int, *, permissions: int = SEND_MESSAGES) -> dict[str, Any]:
    return ponder_payload(
        user_id,
        ["block"],
        [option("user", USER_OPTION, str(TARGET_ID)), option("reason", STRING_OPTION, "spam")],
        permissions=permissions,
    )


async def test_non_admin_refused_with_own_id(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    create_target(migrated_engine)

    await bot_harness.dispatch_interaction(block_payload(MEMBER_ID))

    [callback] = bot_harness.server.requests_to("POST", "/callback$")
    assert callback.body["data"]["flags"] == EPHEMERAL
    assert reply_text(bot_harness) == (
        f"Only Ponder admins can run this command. Your id is discord:{MEMBER_ID}; an admin "
        "can add it to PONDER_ADMIN_IDS."
    )
    assert is_blocked(migrated_engine) is False


async def test_admin_blocks_user(bot_harness: BotHarness, migrated_engine: Engine) -> None:
    create_target(migrated_engine)

    await bot_harness.dispatch_interaction(block_payload(ADMIN_ID))

    assert reply_text(bot_harness) == (
        f"Blocked discord:{TARGET_ID} (spam). Their questions are refused until an admin "
        "unblocks them."
    )
    assert is_blocked(migrated_engine) is True


async def test_server_manager_refused_unless_enabled(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    create_target(migrated_engine)

    await bot_harness.dispatch_interaction(block_payload(MEMBER_ID, permissions=MANAGE_GUILD))

    assert reply_text(bot_harness).startswith("Only Ponder admins can run this command.")
    assert is_blocked(migrated_engine) is False


class TestManagersAreAdmins:
    """With PONDER_DISCORD_MANAGERS_ARE_ADMINS, Manage Server makes a member an admin."""

    @pytest.fixture
    def discord_settings(self, discord_settings: Settings) -> Settings:
        return discord_settings.model_copy(update={"discord_managers_are_admins": True})

    async def test_server_manager_allowed(
        self, bot_harness: BotHarness, migrated_engine: Engine
    ) -> None:
        create_target(migrated_engine)

        await bot_harness.dispatch_interaction(block_payload(MEMBER_ID, permissions=MANAGE_GUILD))

        assert reply_text(bot_harness).startswith(f"Blocked discord:{TARGET_ID}")
        assert is_blocked(migrated_engine) is True

    async def test_member_without_manage_server_refused(
        self, bot_harness: BotHarness, migrated_engine: Engine
    ) -> None:
        create_target(migrated_engine)

        await bot_harness.dispatch_interaction(block_payload(MEMBER_ID))

        assert reply_text(bot_harness).startswith("Only Ponder admins can run this command.")
        assert is_blocked(migrated_engine) is False


async def test_budget_set_passes_every_option(
    bot_harness: BotHarness, migrated_engine: Engine
) -> None:
    create_target(migrated_engine)
    payload = ponder_payload(
        ADMIN_ID,
        ["budget", "set"],
        [
            option("user", USER_OPTION, str(TARGET_ID)),
            option("tokens", INTEGER_OPTION, 5_000),
            option("period", STRING_OPTION, "week"),
            option("question_cap", INTEGER_OPTION, 1_000),
        ],
    )

    await bot_harness.dispatch_interaction(payload)

    with session_scope(migrated_engine) as session:
        user = find_user(session, "discord", str(TARGET_ID))
    assert user is not None
    assert user.budget_tokens == 5_000
    assert user.budget_period == "week"
    assert user.question_cap_tokens == 1_000


async def test_my_budget_is_ephemeral(
    bot_harness: BotHarness, discord_settings, migrated_engine: Engine
) -> None:
    payload = interaction_create(application_id=APPLICATION_ID, user_id=MEMBER_ID, command="budget")

    await bot_harness.dispatch_interaction(payload)

    [callback] = bot_harness.server.requests_to("POST", "/callback$")
    assert callback.body["data"]["flags"] == EPHEMERAL
    expected = run_command(
        migrated_engine,
        discord_settings,
        CommandRequest(actor=Actor(platform="discord", user_id=str(MEMBER_ID)), name="my_budget"),
    )
    assert reply_text(bot_harness) == expected.text


async def test_why_unknown_question_gets_command_reply(
    bot_harness: BotHarness, discord_settings, migrated_engine: Engine
) -> None:
    payload = ponder_payload(ADMIN_ID, ["why"], [option("question_id", INTEGER_OPTION, 999)])

    await bot_harness.dispatch_interaction(payload)

    expected = run_command(
        migrated_engine,
        discord_settings,
        CommandRequest(
            actor=Actor(platform="discord", user_id=str(ADMIN_ID)), name="why", question_id=999
        ),
    )
    assert reply_text(bot_harness) == expected.text


async def test_commands_registered_with_discord(bot_harness: BotHarness) -> None:
    commands = {command["name"]: command for command in bot_harness.server.commands}

    assert sorted(commands) == ["ask", "budget", "ponder"]
    ask_options = {item["name"]: item for item in commands["ask"]["options"]}
    assert ask_options["question"]["required"] is True
    assert [choice["value"] for choice in ask_options["effort"]["choices"]] == [
        "auto",
        "low",
        "medium",
        "high",
    ]
    ponder_options = {item["name"]: item for item in commands["ponder"]["options"]}
    assert sorted(ponder_options) == ["block", "budget", "unblock", "usage", "why"]
    budget_subcommands = [item["name"] for item in ponder_options["budget"]["options"]]
    assert sorted(budget_subcommands) == ["default", "reset", "set", "show"]
