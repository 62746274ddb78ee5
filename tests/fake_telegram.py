"""A stand-in Telegram Bot API server (aiohttp on 127.0.0.1) for end-to-end tests.

A real aiogram ``Bot`` talks to it over HTTP through ``TELEGRAM_API_URL``. Tests push
updates (messages, button presses) and read back every call the bot made.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Kandinsky", "username": "kandinsky_test_bot"}
# Who an anonymous group admin's messages come from, in every group.
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}
MAX_TEXT = 4096  # a message's text, counted after its HTML is parsed
_ADMIN_RIGHTS = (
    "can_be_edited",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
)


@dataclass
class Call:
    method: str
    data: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        value = self.data.get("chat_id")
        return int(value) if value is not None else None

    @property
    def reply_to(self) -> int | None:
        params = self.data.get("reply_parameters")
        return int(params["message_id"]) if params else None


# Decides a canned failure for a call: None to serve it, or (HTTP status, JSON body).
FaultPlan = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]] | None]


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.fault_plan: FaultPlan | None = None
        # While ``hold`` is set, pictures sent to the server wait unrecorded (a stalled
        # network); released with ``drop_held`` they fail, as if the sender had died.
        self.hold = asyncio.Event()
        self.drop_held = False
        # A slow Telegram: the next calls of a method take these seconds, in order,
        # before they are served (and recorded).
        self.delays: dict[str, list[float]] = {}
        # The next N calls of a method are served (the message is in the chat) but the
        # connection then drops before the answer: the bot cannot know it was sent.
        self.accept_then_drop: dict[str, int] = {}
        # Called with each getUpdates' offset as it arrives (before it is answered).
        self.on_get_updates: Callable[[int], None] | None = None
        self._released = asyncio.Event()
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1000
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""
        # chat id -> ids of its admins, for getChatMember and getChatAdministrators
        self.chat_admins: dict[int, set[int]] = {}

    # -- server --------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)  # its URLs hold the token
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        data, files = await _read_form(request)
        if self.hold.is_set() and method in ("sendPhoto", "sendDocument"):
            await self._released.wait()
            if self.drop_held:
                return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502)
        if method != "getUpdates" and self.fault_plan:
            fault = self.fault_plan(method, data)
            if fault is not None:
                return web.json_response(fault[1], status=fault[0])
        too_long = _text_too_long(method, data)
        if too_long:
            return web.json_response(too_long, status=400)
        if method == "getUpdates":
            if self.on_get_updates:
                self.on_get_updates(int(data.get("offset") or 0))
            result: Any = await self._get_updates(data)
        else:
            if self.delays.get(method):
                await asyncio.sleep(self.delays[method].pop(0))
            call = Call(method, data, files)
            result = self._result_for(call)
            async with self._changed:
                self.calls.append(call)
                self._changed.notify_all()
            if self.accept_then_drop.get(method, 0) > 0:
                self.accept_then_drop[method] -= 1
                assert request.transport is not None
                request.transport.abort()  # no answer: the client sees the connection drop
        return web.json_response({"ok": True, "result": result})

    async def _get_updates(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(data.get("offset") or 0)
        timeout = min(float(data.get("timeout") or 0), 1.0)  # short polls keep tests snappy

        def pending() -> list[dict[str, Any]]:
            return [u for u in self._updates if u["update_id"] >= offset]

        async with self._changed:
            if not pending() and timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(pending())), timeout)
            self._updates = pending()  # what is below offset was confirmed
            return list(self._updates)

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        self._next_message += 1
        return {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            **content,
        }

    def _result_for(self, call: Call) -> Any:
        data = call.data
        if call.method == "getMe":
            return BOT_USER
        if call.method == "sendMessage":
            return self._message(call.chat_id or 0, text=data.get("text", ""))
        if call.method == "editMessageText":
            return self._message(call.chat_id or 0, text=data.get("text", ""))
        if call.method == "sendPhoto":
            size = {"file_id": "photo", "file_unique_id": "photo", "width": 1, "height": 1}
            return self._message(call.chat_id or 0, photo=[size], caption=data.get("caption"))
        if call.method == "sendDocument":
            document = {"file_id": "doc", "file_unique_id": "doc", "file_name": "picture.png"}
            return self._message(call.chat_id or 0, document=document, caption=data.get("caption"))
        if call.method == "getChatMember":
            return self._member(int(data["chat_id"]), int(data["user_id"]))
        if call.method == "getChatAdministrators":
            chat_id = int(data["chat_id"])
            return [self._member(chat_id, user_id) for user_id in sorted(self.chat_admins.get(chat_id, ()))]
        return True  # deleteMessage, sendChatAction, answerCallbackQuery, setMyCommands, ...

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        if user_id not in self.chat_admins.get(chat_id, ()):
            return {"status": "member", "user": user}
        # Anonymous admins are listed too, with their real account.
        return {"status": "administrator", "user": user, "is_anonymous": True, **dict.fromkeys(_ADMIN_RIGHTS, False)}

    # -- test side -----------------------------------------------------------------

    def release_held(self, *, drop: bool) -> None:
        self.drop_held = drop
        self._released.set()
        self.hold.clear()

    async def _push(self, update: dict[str, Any]) -> None:
        async with self._changed:
            update["update_id"] = self._next_update
            self._next_update += 1
            self._updates.append(update)
            self._changed.notify_all()

    async def send_text(
        self,
        text: str,
        *,
        user_id: int = 1,
        chat_id: int | None = None,
        lang: str = "en",
        anonymous: bool = False,
    ) -> int:
        """A user writes ``text``; returns the new message's id. Negative chat ids are groups.
        ``anonymous``: an anonymous admin of the group writes it, as Telegram shows them:
        from GroupAnonymousBot, with the group as ``sender_chat``."""
        chat_id = user_id if chat_id is None else chat_id
        self._next_message += 1
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "group"}
        message: dict[str, Any] = {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}", "language_code": lang},
            "text": text,
        }
        if anonymous:
            message["from"] = ANONYMOUS_ADMIN
            message["sender_chat"] = chat
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        await self._push({"message": message})
        return self._next_message

    async def press_button(self, message: Call, callback_data: str | None, *, user_id: int, lang: str = "en") -> str:
        """A user presses an inline button under a message the bot sent (``None``: a button
        without data); returns the callback query's id. Telegram sends the presser's real
        account, even for an anonymous admin."""
        query_id = f"cb{self._next_update}"
        query: dict[str, Any] = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": "u", "language_code": lang},
            "chat_instance": "ci",
            "message": self._message(message.chat_id or 0, text=message.data.get("text", "")),
        }
        if callback_data is not None:
            query["data"] = callback_data
        await self._push({"callback_query": query})
        return query_id

    def find(self, method: str | None = None, **match: Any) -> list[Call]:
        return [c for c in self.calls if (method is None or c.method == method) and _matches(c, match)]

    async def wait_for(self, method: str | None, timeout: float = 60.0, count: int = 1, **match: Any) -> list[Call]:
        """Wait until at least ``count`` calls of ``method`` (None: any) match; return them."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.find(method, **match)) >= count), timeout
                )
            except TimeoutError:
                seen = [(c.method, c.data.get("text") or c.data.get("caption")) for c in self.calls[-15:]]
                raise AssertionError(f"no {count}x {method} {match} within {timeout}s; last calls: {seen}") from None
        return self.find(method, **match)


def _matches(call: Call, match: dict[str, Any]) -> bool:
    for key, expected in match.items():
        if key == "chat_id":
            if call.chat_id != expected:
                return False
        elif key == "text_contains":
            if expected not in (call.data.get("text") or call.data.get("caption") or ""):
                return False
        elif call.data.get(key) != expected:
            return False
    return True


def _text_too_long(method: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Telegram's answer to a message text over 4096 characters (after its HTML is parsed)."""
    if method not in ("sendMessage", "editMessageText"):
        return None
    text = str(data.get("text") or "")
    if data.get("parse_mode") == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    if len(text) <= MAX_TEXT:
        return None
    return {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}


async def _read_form(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    data: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.filename:
                files[part.name] = await part.read()
            else:
                data[part.name] = await part.text()
    elif request.content_type == "application/json":
        data = await request.json()
    else:
        data = dict(await request.post())
    for key, value in list(data.items()):
        if isinstance(value, str) and value[:1] in "{[":
            with contextlib.suppress(ValueError):
                data[key] = json.loads(value)
        # aiogram uploads a file as a separate part named in "attach://<name>".
        if isinstance(value, str) and value.startswith("attach://"):
            files[key] = files.get(value.removeprefix("attach://"), b"")
    return data, files
