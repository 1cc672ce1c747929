"""Request bodies, the base URL and token redaction of the REST layer."""

from __future__ import annotations

import logging

import pytest
from discord.http import Route

from bots.discord.rest import (
    REDACTED,
    DiscordRest,
    message_payload,
    protect_webhook_tokens_in_logs,
    reply_reference,
    use_api_base_url,
)
from tests.bots.discord.conftest import APPLICATION_ID, BOT_TOKEN
from tests.fakes.discord_server import FakeDiscordServer

INTERACTION_TOKEN = "aW50ZXJhY3Rpb246c2VjcmV0-interaction-token"


def test_message_payload_pings_nobody() -> None:
    payload = message_payload("@everyone <@123> <@&456>")

    assert payload["content"] == "@everyone <@123> <@&456>"
    assert payload["allowed_mentions"] == {"parse": []}
    assert "message_reference" not in payload
    assert "nonce" not in payload


def test_message_payload_with_nonce_and_reply() -> None:
    reference = reply_reference(channel_id=1, message_id=2, guild_id=None)

    payload = message_payload("5", nonce="ponder-7-0", reply_to=reference)

    assert payload["nonce"] == "ponder-7-0"
    assert payload["enforce_nonce"] is True
    assert payload["message_reference"] == {
        "message_id": "2",
        "channel_id": "1",
        "fail_if_not_exists": False,
    }


def test_use_api_base_url_strips_slash() -> None:
    original = Route.BASE
    try:
        use_api_base_url("http://127.0.0.1:1/api/v10/")

        assert Route("GET", "/users/@me").url == "http://127.0.0.1:1/api/v10/users/@me"
    finally:
        Route.BASE = original


def test_filter_redacts_webhook_token(caplog: pytest.LogCaptureFixture) -> None:
    protect_webhook_tokens_in_logs()
    url = (
        f"http://127.0.0.1/api/v10/webhooks/{APPLICATION_ID}/{INTERACTION_TOKEN}/messages/@original"
    )

    with caplog.at_level(logging.WARNING, logger="discord.http"):
        logging.getLogger("discord.http").warning("PATCH %s responded with 429", url)

    assert INTERACTION_TOKEN not in caplog.text
    assert f"/webhooks/{APPLICATION_ID}/{REDACTED}/messages/@original" in caplog.text


async def test_rate_limit_warning_hides_interaction_token(
    discord_server: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    discord_server.add_interaction(interaction_id=1, token=INTERACTION_TOKEN, channel_id=2)
    discord_server.fail_next(1, method="PATCH", retry_after=0.1)
    rest = DiscordRest(BOT_TOKEN, base_url=discord_server.base_url)

    with caplog.at_level(logging.WARNING):
        await rest.edit_original_response(APPLICATION_ID, INTERACTION_TOKEN, "5")
    await rest.close()

    assert "rate limited" in caplog.text
    assert INTERACTION_TOKEN not in caplog.text
    assert BOT_TOKEN not in caplog.text
