"""A fake Telegram Bot API server on 127.0.0.1 for tests that run the real python-telegram-bot.

It speaks the methods Ponder uses with Telegram's response envelope (`{"ok": true, "result":
...}`), records every request, serves queued updates through getUpdates (long-polling when
there are none), and can inject the failures Ponder must survive: flood control (HTTP 429
with `parameters.retry_after`), a formatted message rejected with "can't parse entities", and a
server error (HTTP 500).
It checks what the real server checks for sendMessage and editMessageText: the text is not empty,
fits in 4,096 UTF-16 code units, and every entity lies inside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_TEXT_UTF16_UNITS = 4_096
MAX_LONG_POLL_SECONDS = 2.0
# Parameters that python-telegram-bot sends JSON-encoded; every other parameter is a plain string.
JSON_PARAMETERS = frozenset(
    {
        "allowed_updates",
        "commands",
        "entities",
        "limit",
        "link_preview_options",
        "message_id",
        "message_thread_id",
        "offset",
        "reply_markup",
        "reply_parameters",
        "timeout",
        "drop_pending_updates",
        "max_connections",
    }
)
FORMATTED_METHODS = frozenset({"sendMessage", "editMessageText"})


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received, with its decoded parameters and the status it returned."""

    method: str
    params: dict[str, Any]
    status: int
    monotonic: float
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class _Injection:
    remaining: int
    methods: frozenset[str] | None
    skip: int = 0


@dataclass
class FakeBotApi:
    """The fake server; `start()` returns the base URL to give python-telegram-bot."""

    token: str
    bot_id: int = 987654321
    username: str = "ponder_test_bot"
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update_id: int = 1
    _next_message_id: int = 1000
    _retry_after_seconds: int = 1
    _retry_after: _Injection = field(default_factory=lambda: _Injection(0, None))
    _reject_formatting: _Injection = field(default_factory=lambda: _Injection(0, None))
    _server_error: _Injection = field(default_factory=lambda: _Injection(0, None))
    blocked_chats: set[int] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Ponder",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def start(self) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Test controls

    def queue_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; an `update_id` is assigned when missing."""
        update = dict(update)
        update.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self._updates.append(update)
        self._notify()
        return int(update["update_id"])

    def add_message(self, chat_id: int, text: str, *, from_bot: bool = True) -> int:
        """Store a message as if sent earlier, so it can be edited or replied to."""
        return int(self._store_message(chat_id, text, None, from_bot=from_bot)["message_id"])

    def fail_with_retry_after(
        self,
        count: int,
        *,
        seconds: int = 1,
        methods: set[str] | None = None,
        skip: int = 0,
    ) -> None:
        """Answer `count` calls (of `methods`, or any) with 429 and `retry_after`.

        The first `skip` matching calls succeed before the failures start.
        """
        self._retry_after = _Injection(count, frozenset(methods) if methods else None, skip)
        self._retry_after_seconds = seconds

    def fail_with_server_error(
        self, count: int, *, methods: set[str] | None = None, skip: int = 0
    ) -> None:
        """Answer `count` calls (of `methods`, or any) with HTTP 500, after `skip` that succeed."""
        self._server_error = _Injection(count, frozenset(methods) if methods else None, skip)

    def reject_formatting(self, count: int) -> None:
        """Reject the next `count` messages that carry entities or a parse_mode with 400."""
        self._reject_formatting = _Injection(count, FORMATTED_METHODS)

    def calls(self, method: str, *, ok_only: bool = True) -> list[RecordedRequest]:
        return [
            request
            for request in self.requests
            if request.method == method and (request.ok or not ok_only)
        ]

    def sent_to(self, chat_id: int) -> list[RecordedRequest]:
        """Return the successful sendMessage requests to one chat, oldest first."""
        return [
            request for request in self.calls("sendMessage") if request.params["chat_id"] == chat_id
        ]

    async def next_message_to(
        self, chat_id: int, *, after: int = 0, within_seconds: float = 15
    ) -> RecordedRequest:
        """Wait for the (after+1)-th message sent to `chat_id` and return it."""
        await self.wait_for(
            lambda _: len(self.sent_to(chat_id)) > after, within_seconds=within_seconds
        )
        return self.sent_to(chat_id)[after]

    async def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], *, within_seconds: float
    ) -> RecordedRequest:
        """Wait until a recorded request satisfies `predicate` and return the first such one."""
        deadline = time.monotonic() + within_seconds
        while True:
            for request in self.requests:
                if predicate(request):
                    return request
            if time.monotonic() >= deadline:
                methods = [request.method for request in self.requests]
                raise AssertionError(f"no matching request in {within_seconds} s; got {methods}")
            await asyncio.sleep(0.05)

    # Request handling

    def _notify(self) -> None:
        condition = self._changed
        if condition is None:
            return

        async def notify() -> None:
            async with condition:
                condition.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        if request.match_info["token"] != self.token:
            return self._record(method, params, 401, {"description": "Unauthorized"})
        if _consume(self._server_error, method):
            return self._record(method, params, 500, {"description": "Internal Server Error"})
        if _consume(self._retry_after, method):
            seconds = self._retry_after_seconds
            return self._record(
                method,
                params,
                429,
                {
                    "description": f"Too Many Requests: retry after {seconds}",
                    "parameters": {"retry_after": seconds},
                },
            )
        if ("entities" in params or "parse_mode" in params) and _consume(
            self._reject_formatting, method
        ):
            return self._bad_request(method, params, "can't parse entities: injected failure")
        handler = getattr(self, f"_method_{method}", None)
        if handler is None:
            return self._record(method, params, 404, {"description": "Not Found"})
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return self._record(method, params, 200, {"result": result})

    def _record(
        self, method: str, params: dict[str, Any], status: int, body: dict[str, Any]
    ) -> web.Response:
        result = body.get("result")
        self.requests.append(RecordedRequest(method, params, status, time.monotonic(), result))
        envelope: dict[str, Any] = {"ok": status == 200, **body}
        if status != 200:
            envelope["error_code"] = status
        return web.json_response(envelope, status=status)

    def _bad_request(self, method: str, params: dict[str, Any], reason: str) -> web.Response:
        return self._record(method, params, 400, {"description": f"Bad Request: {reason}"})

    def _check_text(self, method: str, params: dict[str, Any]) -> web.Response | None:
        text = str(params.get("text", ""))
        if not text.strip():
            return self._bad_request(method, params, "message text is empty")
        if utf16_length(text) > MAX_TEXT_UTF16_UNITS:
            return self._bad_request(method, params, "message is too long")
        for entity in params.get("entities") or []:
            offset, length = int(entity["offset"]), int(entity["length"])
            if offset < 0 or length <= 0 or offset + length > utf16_length(text):
                return self._bad_request(
                    method, params, f"can't parse entities: entity {entity} is out of range"
                )
        return None

    def _store_message(
        self, chat_id: int, text: str, params: dict[str, Any] | None, *, from_bot: bool
    ) -> dict[str, Any]:
        self._next_message_id += 1
        message: dict[str, Any] = {
            "message_id": self._next_message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "text": text,
        }
        if from_bot:
            message["from"] = self.bot_user
        if params and params.get("entities"):
            message["entities"] = params["entities"]
        if params and params.get("message_thread_id") is not None:
            message["message_thread_id"] = params["message_thread_id"]
        self.messages[(chat_id, self._next_message_id)] = message
        return message

    async def _method_getMe(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _method_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        self._updates = [update for update in self._updates if update["update_id"] >= offset]
        if not self._updates and self._changed is not None:
            wait_seconds = min(float(params.get("timeout") or 0), MAX_LONG_POLL_SECONDS)
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait_seconds)
        return list(self._updates)

    async def _method_sendMessage(self, params: dict[str, Any]) -> Any:
        error = self._check_text("sendMessage", params)
        if error is not None:
            return error
        if params["chat_id"] in self.blocked_chats:
            return self._record(
                "sendMessage",
                params,
                403,
                {"description": "Forbidden: bot was blocked by the user"},
            )
        return self._store_message(int(params["chat_id"]), params["text"], params, from_bot=True)

    async def _method_editMessageText(self, params: dict[str, Any]) -> Any:
        error = self._check_text("editMessageText", params)
        if error is not None:
            return error
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self.messages.get(key)
        if message is None:
            return self._bad_request("editMessageText", params, "message to edit not found")
        if message["text"] == params["text"]:
            return self._bad_request(
                "editMessageText",
                params,
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        message["text"] = params["text"]
        message["edit_date"] = int(time.time())
        return message

    async def _method_deleteMessage(self, params: dict[str, Any]) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if self.messages.pop(key, None) is None:
            return self._bad_request("deleteMessage", params, "message to delete not found")
        return True

    async def _method_sendChatAction(self, params: dict[str, Any]) -> Any:
        return True

    async def _method_setMyCommands(self, params: dict[str, Any]) -> Any:
        return True

    async def _method_deleteWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _method_setWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _method_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}


def _consume(injection: _Injection, method: str) -> bool:
    if injection.remaining <= 0:
        return False
    if injection.methods is not None and method not in injection.methods:
        return False
    if injection.skip > 0:
        injection.skip -= 1
        return False
    injection.remaining -= 1
    return True


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Decode form, multipart, JSON or query parameters the way the Bot API does."""
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    raw: dict[str, str] = dict(request.query)
    if request.can_read_body:
        form = await request.post()
        raw.update({key: str(value) for key, value in form.items()})
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_PARAMETERS:
            params[key] = json.loads(value)
        elif key == "chat_id":
            params[key] = int(value) if value.lstrip("-").isdigit() else value
        else:
            params[key] = value
    return params
