"""Discord's REST API through discord.py's HTTP client, for the worker's deliveries.

discord.py's `HTTPClient` keeps Discord's per-route rate-limit buckets and, on HTTP 429, waits
the `retry_after` the response gives before it retries. This module adds what Ponder needs on
top: one logged-in client per process, messages that never ping anyone, request timeouts, and
one place that turns discord.py's and aiohttp's errors into DeliveryError.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient, Route, handle_message_parameters
from discord.utils import MISSING

from core.errors import ConfigurationError, DeliveryError

logger = logging.getLogger(__name__)

# discord.py raises RateLimited instead of sleeping when a 429's retry_after exceeds this, so
# the delivery task retries later rather than holding a worker. discord.py raises any value
# below 30 s to 30 s.
MAX_RATE_LIMIT_WAIT_SECONDS = 60.0
# One request, including the rate-limit waits discord.py does inside it.
REQUEST_TIMEOUT_SECONDS = 90.0
# Discord's JSON error codes for an interaction webhook whose 15-minute token has expired.
EXPIRED_INTERACTION_ERRORS = frozenset({(401, 50027), (404, 10015)})
# Loggers of discord.py that log request URLs, which for interaction webhooks contain the token.
URL_LOGGERS = ("discord.http", "discord.webhook.async_")
WEBHOOK_TOKEN_PATTERN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?\s]+")
REDACTED = "<token>"
# parse=[] and no user or role lists: @everyone, @here, role and user mentions stay plain text.
NO_MENTIONS = discord.AllowedMentions.none()


class DiscordRequestError(DeliveryError):
    """Discord returned an error status for a request."""

    def __init__(self, message: str, *, status: int, code: int) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # Client errors other than rate limits will not succeed when retried unchanged.
        self.is_transient = status >= 500 or status == 429

    @property
    def is_expired_interaction(self) -> bool:
        return (self.status, self.code) in EXPIRED_INTERACTION_ERRORS


class WebhookTokenFilter(logging.Filter):
    """Replaces interaction and webhook tokens in request URLs that discord.py logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = WEBHOOK_TOKEN_PATTERN.sub(rf"\g<1>{REDACTED}", message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def protect_webhook_tokens_in_logs() -> None:
    """Install the token filter on discord.py's URL-logging loggers, once per process."""
    for name in URL_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(existing, WebhookTokenFilter) for existing in target.filters):
            target.addFilter(WebhookTokenFilter())


def use_api_base_url(base_url: str) -> None:
    """Point every discord.py REST request of this process at `base_url`.

    discord.py 2.x builds each request URL from the class attribute `discord.http.Route.BASE`
    and has no per-client setting, so the base URL is one value per process.
    """
    Route.BASE = base_url.rstrip("/")


def message_payload(
    content: str,
    *,
    nonce: str | None = None,
    reply_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the JSON body of a create or edit request for plain text that pings nobody.

    With a nonce, discord.py also sends `enforce_nonce`, so Discord returns the message it
    already created with that nonce in the last few minutes instead of posting a copy.
    """
    params = handle_message_parameters(
        content=content,
        nonce=nonce,
        allowed_mentions=NO_MENTIONS,
        message_reference=MISSING if reply_to is None else reply_to,  # type: ignore[arg-type]
    )
    assert params.payload is not None
    return params.payload


def reply_reference(*, channel_id: int, message_id: int, guild_id: int | None) -> dict[str, Any]:
    """Return a message reference that still posts when the replied-to message is gone."""
    reference: dict[str, Any] = {
        "message_id": str(message_id),
        "channel_id": str(channel_id),
        "fail_if_not_exists": False,
    }
    if guild_id is not None:
        reference["guild_id"] = str(guild_id)
    return reference


@asynccontextmanager
async def translated_errors(action: str) -> AsyncIterator[None]:
    """Run one request with a timeout and raise DeliveryError, from the cause, when it fails."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            yield
    except discord.LoginFailure as exc:
        raise ConfigurationError(
            "Discord rejected PONDER_DISCORD_TOKEN (HTTP 401); reset the token on the Bot page "
            "of the developer portal and set the new one"
        ) from exc
    except discord.RateLimited as exc:
        raise DeliveryError(
            f"{action} is rate limited for {exc.retry_after:.0f} s, longer than the "
            f"{MAX_RATE_LIMIT_WAIT_SECONDS:.0f} s a delivery waits; it is retried later"
        ) from exc
    except discord.HTTPException as exc:
        raise DiscordRequestError(
            f"{action} failed with HTTP {exc.status} (Discord code {exc.code}): {exc.text}",
            status=exc.status,
            code=exc.code,
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DeliveryError(f"{action} failed: cannot reach {Route.BASE!r}: {exc!r}") from exc
    except TimeoutError as exc:
        raise DeliveryError(
            f"{action} timed out after {REQUEST_TIMEOUT_SECONDS:.0f} s at {Route.BASE!r}"
        ) from exc


class DiscordRest:
    """The REST calls a deliverer makes, on one discord.py HTTP client logged in on first use."""

    def __init__(self, token: str, *, base_url: str) -> None:
        self._token = token
        self._base_url = base_url
        self._http: HTTPClient | None = None
        self._lock: asyncio.Lock | None = None

    async def _client(self) -> HTTPClient:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._http is None:
                use_api_base_url(self._base_url)
                protect_webhook_tokens_in_logs()
                http = HTTPClient(
                    asyncio.get_running_loop(),
                    max_ratelimit_timeout=MAX_RATE_LIMIT_WAIT_SECONDS,
                )
                async with translated_errors("logging in to Discord"):
                    user = await http.static_login(self._token)
                logger.info("Discord delivery logged in as bot user %s", user["id"])
                self._http = http
            return self._http

    async def create_message(
        self,
        channel_id: int,
        content: str,
        *,
        nonce: str,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Post a message in a channel; Discord deduplicates it by `nonce` for a few minutes."""
        http = await self._client()
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
        payload = message_payload(content, nonce=nonce, reply_to=reply_to)
        async with translated_errors(f"posting a message in channel {channel_id}"):
            message: dict[str, Any] = await http.request(route, json=payload)
        return message

    async def edit_message(self, channel_id: int, message_id: int, content: str) -> dict[str, Any]:
        http = await self._client()
        route = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
        )
        async with translated_errors(f"editing message {message_id} in channel {channel_id}"):
            message: dict[str, Any] = await http.request(route, json=message_payload(content))
        return message

    async def edit_original_response(
        self, application_id: int, token: str, content: str
    ) -> dict[str, Any]:
        """Replace the text of a `/ask` interaction's first response (its "thinking" message)."""
        http = await self._client()
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            webhook_id=application_id,
            webhook_token=token,
        )
        async with translated_errors("editing the /ask response"):
            message: dict[str, Any] = await http.request(route, json=message_payload(content))
        return message

    async def create_followup(
        self, application_id: int, token: str, content: str
    ) -> dict[str, Any]:
        """Post a follow-up message to a `/ask` interaction and return the message."""
        http = await self._client()
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=application_id,
            webhook_token=token,
        )
        async with translated_errors("posting a /ask follow-up"):
            # wait=true makes Discord return the message, whose id the worker records.
            message: dict[str, Any] = await http.request(
                route, json=message_payload(content), params={"wait": "true"}
            )
        return message

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
