"""A fake Discord REST API on 127.0.0.1 for tests that run the real discord.py against it.

It serves the endpoints Ponder uses: the bot user and application, the gateway URL, the
global command list, interaction callbacks, interaction webhooks (follow-ups and the original
response) and channel messages. It records
every request with its JSON body, returns message objects with snowflake ids, deduplicates
messages by `nonce` when `enforce_nonce` is set, rejects content over 2,000 characters, expires
interaction tokens on demand, and injects failures: HTTP 429 with `retry_after` in the body and
Discord's rate-limit headers, or any other status with a Discord error body.

The server runs its own event loop in a thread, so synchronous tests (a Celery task run in
process) and async tests (pytest-asyncio's loop) can both use it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT_CHARS = 2_000
MAX_NONCE_CHARS = 25
NONCE_WINDOW_SECONDS = 300.0
BUCKET_LIMIT = 50
BUCKET_WINDOW_SECONDS = 1.0
LOADING_FLAG = 1 << 7
EPHEMERAL_FLAG = 1 << 6
REPLY_MESSAGE_TYPE = 19


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received and the status it returned."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None
    status: int
    received_at: float


@dataclass
class FakeMessage:
    """A message as the fake stores it."""

    id: int
    channel_id: int
    content: str
    author_id: int
    nonce: str | None = None
    webhook_id: int | None = None
    reference: dict[str, Any] | None = None
    flags: int = 0
    edits: int = 0
    created_at: float = field(default_factory=time.monotonic)


@dataclass
class FakeInteraction:
    """An interaction the fake knows: its webhook token, channel and original response."""

    id: int
    application_id: int
    token: str
    channel_id: int
    original_message_id: int | None = None
    is_expired: bool = False


@dataclass
class _Fault:
    method: str
    path_pattern: re.Pattern[str]
    remaining: int
    status: int
    retry_after: float
    is_global: bool
    code: int


class FakeDiscordServer:
    """The fake server; use as a context manager or call start() and stop()."""

    def __init__(
        self,
        *,
        token: str,
        bot_user_id: int,
        application_id: int,
        bot_name: str = "Ponder",
    ) -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.application_id = application_id
        self.bot_name = bot_name
        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self.commands: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._nonces: dict[str, tuple[int, float]] = {}
        self._buckets: dict[str, tuple[float, int]] = {}
        self._sequence = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Lifecycle

    def start(self) -> FakeDiscordServer:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-discord", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Discord server did not start within 10 s")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> FakeDiscordServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # Test controls

    def add_interaction(
        self, *, interaction_id: int, token: str, channel_id: int, deferred: bool = True
    ) -> FakeInteraction:
        """Register an interaction, with a deferred "thinking" response unless told otherwise."""
        with self._lock:
            interaction = FakeInteraction(
                id=interaction_id,
                application_id=self.application_id,
                token=token,
                channel_id=channel_id,
            )
            self.interactions[token] = interaction
            if deferred:
                message = self._new_message(channel_id, "", webhook_id=self.application_id)
                message.flags = LOADING_FLAG
                interaction.original_message_id = message.id
            return interaction

    def expire_interaction(self, token: str) -> None:
        with self._lock:
            self.interactions[token].is_expired = True

    def fail_next(
        self,
        count: int,
        *,
        method: str = "*",
        path: str = ".*",
        status: int = 429,
        retry_after: float = 0.5,
        is_global: bool = False,
        code: int = 0,
    ) -> None:
        """Answer the next `count` requests whose method and path match with an error.

        `path` is a regular expression searched in the path after /api/v10. A 429 carries
        `retry_after` in its body and in Discord's headers.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    method=method.upper(),
                    path_pattern=re.compile(path),
                    remaining=count,
                    status=status,
                    retry_after=retry_after,
                    is_global=is_global,
                    code=code,
                )
            )

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """Return the recorded requests whose method matches and path matches the pattern."""
        pattern = re.compile(path_pattern)
        with self._lock:
            return [
                request
                for request in self.requests
                if request.method == method.upper() and pattern.search(request.path)
            ]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        """Return the messages in a channel, oldest first."""
        with self._lock:
            return sorted(
                (message for message in self.messages.values() if message.channel_id == channel_id),
                key=lambda message: message.id,
            )

    # Request handling

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await _read_json(request)
        with self._lock:
            if path.startswith(API_PREFIX):
                path = path[len(API_PREFIX) :]
                response = self._fault_for(request.method, path) or self._route(request, path, body)
            else:
                # The gateway's websocket handshake lands here when a test points the bot at it.
                response = self._error(404, 0, f"404: Not Found ({path})")
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    query=dict(request.query),
                    body=body,
                    authorization=request.headers.get("Authorization"),
                    status=response.status,
                    received_at=time.monotonic(),
                )
            )
            if response.status < 400:
                self._add_bucket_headers(response, request.method, path)
        return response

    def _fault_for(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if fault.method not in ("*", method) or not fault.path_pattern.search(path):
                continue
            fault.remaining -= 1
            if fault.status == 429:
                return self._rate_limited(fault)
            return self._error(fault.status, fault.code, f"injected HTTP {fault.status}")
        return None

    def _rate_limited(self, fault: _Fault) -> web.Response:
        body = {
            "message": "You are being rate limited.",
            "retry_after": fault.retry_after,
            "global": fault.is_global,
        }
        headers = {
            "Retry-After": f"{fault.retry_after:g}",
            "X-RateLimit-Limit": str(BUCKET_LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
            "X-RateLimit-Bucket": "fake-bucket",
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
            # Discord's API sits behind Google's load balancer; discord.py treats a 429 without
            # this header as a Cloudflare ban and does not retry.
            "Via": "1.1 google",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        return _json_response(body, status=429, headers=headers)

    def _add_bucket_headers(self, response: web.Response, method: str, path: str) -> None:
        route = re.sub(r"/\d+", "/{id}", path.split("/messages/")[0])
        bucket = f"{method} {route}"
        now = time.monotonic()
        started, used = self._buckets.get(bucket, (now, 0))
        if now - started >= BUCKET_WINDOW_SECONDS:
            started, used = now, 0
        used += 1
        self._buckets[bucket] = (started, used)
        reset_after = max(0.0, started + BUCKET_WINDOW_SECONDS - now)
        response.headers["X-RateLimit-Limit"] = str(BUCKET_LIMIT)
        response.headers["X-RateLimit-Remaining"] = str(max(0, BUCKET_LIMIT - used))
        response.headers["X-RateLimit-Reset"] = f"{time.time() + reset_after:.3f}"
        response.headers["X-RateLimit-Reset-After"] = f"{reset_after:.3f}"
        response.headers["X-RateLimit-Bucket"] = f"fake-{abs(hash(bucket)) % 10**8}"
        response.headers["Via"] = "1.1 google"

    def _route(self, request: web.Request, path: str, body: Any) -> web.Response:
        method = request.method
        parts = path.strip("/").split("/")
        match parts:
            case ["users", "@me"] if method == "GET":
                return self._authorized(request) or _json_response(self._bot_user())
            case ["gateway", "bot"] if method == "GET":
                return self._authorized(request) or _json_response(_gateway_payload())
            case ["oauth2", "applications", "@me"] if method == "GET":
                return self._authorized(request) or _json_response(self._application())
            case ["applications", application_id, "commands"] if method == "PUT":
                return self._authorized(request) or self._overwrite_commands(
                    int(application_id), body
                )
            case ["interactions", interaction_id, token, "callback"] if method == "POST":
                return self._interaction_callback(int(interaction_id), token, body, request)
            case ["webhooks", application_id, token] if method == "POST":
                return self._execute_webhook(int(application_id), token, body, request)
            case ["webhooks", application_id, token, "messages", message_ref]:
                return self._webhook_message(method, int(application_id), token, message_ref, body)
            case ["channels", channel_id, "messages"] if method == "POST":
                return self._authorized(request) or self._create_message(int(channel_id), body)
            case ["channels", channel_id, "messages", message_id] if method == "PATCH":
                return self._authorized(request) or self._edit_channel_message(
                    int(channel_id), int(message_id), body
                )
        return self._error(404, 0, f"404: Not Found ({method} {path})")

    def _authorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return self._error(401, 0, "401: Unauthorized")
        return None

    def _overwrite_commands(self, application_id: int, body: Any) -> web.Response:
        if application_id != self.application_id:
            return self._error(404, 10002, "Unknown Application")
        if not isinstance(body, list):
            return self._error(400, 50035, "Invalid Form Body")
        self.commands = [
            {
                **command,
                "id": str(self._next_id()),
                "application_id": str(application_id),
                "version": str(self._next_id()),
                "default_member_permissions": command.get("default_member_permissions"),
                "dm_permission": command.get("dm_permission", True),
                "nsfw": command.get("nsfw", False),
            }
            for command in body
        ]
        return _json_response(self.commands)

    def _interaction_callback(
        self, interaction_id: int, token: str, body: Any, request: web.Request
    ) -> web.Response:
        interaction = self.interactions.get(token)
        if interaction is None or interaction.id != interaction_id:
            return self._error(404, 10062, "Unknown interaction")
        if interaction.original_message_id is not None:
            return self._error(400, 40060, "Interaction has already been acknowledged.")
        response_type = body.get("type")
        data = body.get("data") or {}
        message = self._new_message(
            interaction.channel_id, data.get("content") or "", webhook_id=interaction.application_id
        )
        message.flags = int(data.get("flags") or 0)
        if response_type == 5:
            message.flags |= LOADING_FLAG
        interaction.original_message_id = message.id
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json_response(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": 2,
                    "response_message_id": str(message.id),
                    "response_message_loading": response_type == 5,
                    "response_message_ephemeral": bool(message.flags & EPHEMERAL_FLAG),
                },
                "resource": {"type": response_type, "message": self._message_payload(message)},
            }
        )

    def _webhook_interaction(
        self, application_id: int, token: str
    ) -> tuple[FakeInteraction | None, web.Response | None]:
        interaction = self.interactions.get(token)
        if interaction is None or interaction.application_id != application_id:
            return None, self._error(404, 10015, "Unknown Webhook")
        if interaction.is_expired:
            return None, self._error(401, 50027, "Invalid Webhook Token")
        return interaction, None

    def _execute_webhook(
        self, application_id: int, token: str, body: Any, request: web.Request
    ) -> web.Response:
        interaction, failure = self._webhook_interaction(application_id, token)
        if failure is not None:
            return failure
        assert interaction is not None
        if invalid := _invalid_content(body):
            return invalid
        message = self._new_message(
            interaction.channel_id, body.get("content", ""), webhook_id=application_id
        )
        message.flags = int(body.get("flags") or 0)
        if request.query.get("wait") not in ("1", "true", "True"):
            return web.Response(status=204)
        return _json_response(self._message_payload(message))

    def _webhook_message(
        self, method: str, application_id: int, token: str, message_ref: str, body: Any
    ) -> web.Response:
        interaction, failure = self._webhook_interaction(application_id, token)
        if failure is not None:
            return failure
        assert interaction is not None
        if message_ref == "@original":
            message_id = interaction.original_message_id
        else:
            message_id = int(message_ref)
        message = self.messages.get(message_id) if message_id is not None else None
        if message is None or message.webhook_id != application_id:
            return self._error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json_response(self._message_payload(message))
        if method == "DELETE":
            del self.messages[message.id]
            return web.Response(status=204)
        if method != "PATCH":
            return self._error(405, 0, "405: Method Not Allowed")
        if invalid := _invalid_content(body):
            return invalid
        self._apply_edit(message, body)
        return _json_response(self._message_payload(message))

    def _create_message(self, channel_id: int, body: Any) -> web.Response:
        if invalid := _invalid_content(body):
            return invalid
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > MAX_NONCE_CHARS:
            return _form_error("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if nonce is not None and body.get("enforce_nonce"):
            known = self._nonces.get(str(nonce))
            if known is not None and time.monotonic() - known[1] < NONCE_WINDOW_SECONDS:
                existing = self.messages.get(known[0])
                if existing is not None:
                    return _json_response(self._message_payload(existing))
        message = self._new_message(channel_id, body.get("content", ""), nonce=nonce)
        message.reference = body.get("message_reference")
        if nonce is not None:
            self._nonces[str(nonce)] = (message.id, time.monotonic())
        return _json_response(self._message_payload(message))

    def _edit_channel_message(self, channel_id: int, message_id: int, body: Any) -> web.Response:
        message = self.messages.get(message_id)
        if message is None or message.channel_id != channel_id:
            return self._error(404, 10008, "Unknown Message")
        if message.author_id != self.bot_user_id:
            return self._error(403, 50005, "Cannot edit a message authored by another user")
        if invalid := _invalid_content(body):
            return invalid
        self._apply_edit(message, body)
        return _json_response(self._message_payload(message))

    def _apply_edit(self, message: FakeMessage, body: Any) -> None:
        if "content" in body:
            message.content = body["content"] or ""
        message.flags &= ~LOADING_FLAG
        message.edits += 1

    # Payloads

    def _next_id(self) -> int:
        self._sequence += 1
        milliseconds = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (milliseconds << 22) | (self._sequence & 0x3FFFFF)

    def _new_message(
        self,
        channel_id: int,
        content: str,
        *,
        nonce: str | None = None,
        webhook_id: int | None = None,
    ) -> FakeMessage:
        message = FakeMessage(
            id=self._next_id(),
            channel_id=channel_id,
            content=content,
            author_id=self.bot_user_id,
            nonce=nonce,
            webhook_id=webhook_id,
        )
        self.messages[message.id] = message
        return message

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": str(self.bot_user_id),
            "username": self.bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
        }

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {**self._bot_user(), "id": "1", "username": "owner", "bot": False},
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "interactions_endpoint_url": None,
        }

    def _message_payload(self, message: FakeMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": REPLY_MESSAGE_TYPE if message.reference else 0,
            "content": message.content,
            "author": self._bot_user(),
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": datetime.now(UTC).isoformat() if message.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "flags": message.flags,
            "components": [],
        }
        if message.nonce is not None:
            payload["nonce"] = message.nonce
        if message.webhook_id is not None:
            payload["webhook_id"] = str(message.webhook_id)
            payload["application_id"] = str(message.webhook_id)
        if message.reference:
            payload["message_reference"] = {"type": 0, **message.reference}
        return payload

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return _json_response({"message": message, "code": code}, status=status)


def _json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Discord sends exactly "application/json"; discord.py parses no other content type as JSON,
    # so aiohttp's default, which appends "; charset=utf-8", would turn every body into text.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


async def _read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _invalid_content(body: Any) -> web.Response | None:
    if not isinstance(body, dict):
        return FakeDiscordServer._error(400, 50109, "The request body contains invalid JSON.")
    content = body.get("content")
    if content is not None and len(content) > MAX_CONTENT_CHARS:
        return _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    return None


def _form_error(field_name: str, code: str, message: str) -> web.Response:
    return _json_response(
        {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field_name: {"_errors": [{"code": code, "message": message}]}},
        },
        status=400,
    )


def _gateway_payload() -> dict[str, Any]:
    return {
        "url": "ws://127.0.0.1:9",
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 0,
            "max_concurrency": 1,
        },
    }
