"""A stand-in Telegram Bot API server (aiohttp on 127.0.0.1) for end-to-end tests.

A real aiogram ``Bot`` talks to it over HTTP through ``TELEGRAM_API_URL``. Tests push
updates (messages, button presses) and read back every call the bot made.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
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
MAX_CAPTION = 1024  # a photo's or document's caption, likewise
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses bigger files to bots
CONFLICT = {
    "ok": False,
    "error_code": 409,
    "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
}
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
    result: Any = None  # what the server answered (the message sent, for send* calls)

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
        # As Telegram: a getUpdates arriving while another waits ends the waiting one with
        # 409 Conflict. Counted when that one's client was still connected (two bots polling
        # at once); a poller that died without hanging up its request is no conflict.
        self.conflicts = 0
        self._waiting_poll: tuple[web.Request, asyncio.Event] | None = None
        self._released = asyncio.Event()
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1000
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""
        # chat id -> ids of its admins, for getChatMember and getChatAdministrators
        self.chat_admins: dict[int, set[int]] = {}
        # Files users sent and pictures the bot sent, by file_id (getFile and downloads).
        self.files: dict[str, bytes] = {}
        self._next_file = 1
        # Every message of a chat, users' and the bot's, for replies: (chat id, message id).
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}

    # -- server --------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None)  # its URLs hold the token
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        # A getUpdates still waiting (its bot gone) would hold the shutdown up to its timeout.
        async with self._changed:
            if self._waiting_poll is not None:
                self._waiting_poll[1].set()
                self._changed.notify_all()
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
            result: Any = await self._get_updates(data, request)
            if result is None:
                return web.json_response(CONFLICT, status=409)
        else:
            if self.delays.get(method):
                await asyncio.sleep(self.delays[method].pop(0))
            call = Call(method, data, files)
            try:
                result = call.result = self._result_for(call)
            except _BadRequest as exc:
                return web.json_response({"ok": False, "error_code": 400, "description": str(exc)}, status=400)
            async with self._changed:
                self.calls.append(call)
                self._changed.notify_all()
            if self.accept_then_drop.get(method, 0) > 0:
                self.accept_then_drop[method] -= 1
                assert request.transport is not None
                request.transport.abort()  # no answer: the client sees the connection drop
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        """A file's bytes, as Telegram serves what getFile points at."""
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].removeprefix("files/")
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    def add_file(self, data: bytes) -> str:
        """Keep ``data`` as a file Telegram holds; returns its file_id."""
        file_id = f"file{self._next_file}"
        self._next_file += 1
        self.files[file_id] = data
        return file_id

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """What Telegram sends for a photo: a thumbnail and the full picture (the last)."""
        width, height = _image_size(data)
        file_id = self.add_file(data)
        thumb = {"file_id": f"{file_id}-thumb", "file_unique_id": f"u{file_id}-thumb", "width": 90, "height": 90}
        self.files[f"{file_id}-thumb"] = data  # nobody should pick it: the full size is last
        full = {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": width, "height": height}
        return [thumb, full | {"file_size": len(data)}]

    async def _get_updates(self, data: dict[str, Any], request: web.Request) -> list[dict[str, Any]] | None:
        """The updates from ``offset`` on; None when another getUpdates ended this one."""
        offset = int(data.get("offset") or 0)
        timeout = min(float(data.get("timeout") or 0), 1.0)  # short polls keep tests snappy
        terminated = asyncio.Event()

        def pending() -> list[dict[str, Any]]:
            return [u for u in self._updates if u["update_id"] >= offset]

        async with self._changed:
            if self._waiting_poll is not None:
                other, other_terminated = self._waiting_poll
                if request.transport is not None and other.transport is not None and not other.transport.is_closing():
                    self.conflicts += 1
                other_terminated.set()
                self._changed.notify_all()
            self._waiting_poll = (request, terminated)
            try:
                if not pending() and timeout:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait_for(lambda: bool(pending()) or terminated.is_set()), timeout
                        )
                if terminated.is_set():
                    return None
                self._updates = pending()  # what is below offset was confirmed
                return list(self._updates)
            finally:
                if self._waiting_poll is not None and self._waiting_poll[1] is terminated:
                    self._waiting_poll = None

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        self._next_message += 1
        message = {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            **content,
        }
        self.messages[(chat_id, self._next_message)] = message
        return message

    def _result_for(self, call: Call) -> Any:
        data = call.data
        if call.method == "getMe":
            return BOT_USER
        if call.method == "sendMessage":
            return self._message(call.chat_id or 0, text=data.get("text", ""))
        if call.method == "editMessageText":
            return self._message(call.chat_id or 0, text=data.get("text", ""))
        if call.method == "sendPhoto":
            photo = self._photo_sizes(call.files.get("photo", b""))
            return self._message(call.chat_id or 0, photo=photo, caption=data.get("caption"))
        if call.method == "sendDocument":
            content = call.files.get("document", b"")
            document = {
                "file_id": self.add_file(content),
                "file_unique_id": f"u{self._next_file}",
                "file_name": "picture.png",
                "mime_type": "image/png",
                "file_size": len(content),
            }
            return self._message(call.chat_id or 0, document=document, caption=data.get("caption"))
        if call.method == "getFile":
            return self._file(str(data.get("file_id")))
        if call.method == "getChatMember":
            return self._member(int(data["chat_id"]), int(data["user_id"]))
        if call.method == "getChatAdministrators":
            chat_id = int(data["chat_id"])
            return [self._member(chat_id, user_id) for user_id in sorted(self.chat_admins.get(chat_id, ()))]
        return True  # deleteMessage, sendChatAction, answerCallbackQuery, setMyCommands, ...

    def _file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise _BadRequest("Bad Request: invalid file_id")
        if len(self.files[file_id]) > MAX_DOWNLOAD:
            raise _BadRequest("Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"files/{file_id}",
        }

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
        reply_to: int | None = None,
    ) -> int:
        """A user writes ``text``; returns the new message's id. Negative chat ids are groups.
        ``anonymous``: an anonymous admin of the group writes it, as Telegram shows them:
        from GroupAnonymousBot, with the group as ``sender_chat``. ``reply_to``: the id of
        a message of this chat (a user's or the bot's) it answers."""
        return await self.send_message(
            {"text": text}, user_id=user_id, chat_id=chat_id, lang=lang, anonymous=anonymous, reply_to=reply_to
        )

    async def send_photo(
        self,
        data: bytes,
        caption: str | None = None,
        *,
        user_id: int = 1,
        chat_id: int | None = None,
        lang: str = "en",
        media_group_id: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """A user sends a photo (Telegram keeps ``data`` as sent; its sizes are read from
        it when it is a picture), with an optional caption; returns the message's id."""
        content: dict[str, Any] = {"photo": self._photo_sizes(data)}
        if caption is not None:
            content["caption"] = caption
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return await self.send_message(content, user_id=user_id, chat_id=chat_id, lang=lang, reply_to=reply_to)

    async def send_document(
        self,
        data: bytes,
        caption: str | None = None,
        *,
        file_name: str = "picture.png",
        mime_type: str = "image/png",
        user_id: int = 1,
        chat_id: int | None = None,
        lang: str = "en",
        media_group_id: str | None = None,
        reply_to: int | None = None,
    ) -> int:
        """A user sends a file (e.g. a picture "as a file", uncompressed)."""
        document = {
            "file_id": self.add_file(data),
            "file_unique_id": f"u{self._next_file}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        content: dict[str, Any] = {"document": document}
        if caption is not None:
            content["caption"] = caption
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return await self.send_message(content, user_id=user_id, chat_id=chat_id, lang=lang, reply_to=reply_to)

    async def send_message(
        self,
        content: dict[str, Any],
        *,
        user_id: int = 1,
        chat_id: int | None = None,
        lang: str = "en",
        anonymous: bool = False,
        reply_to: int | None = None,
    ) -> int:
        """A user sends a message with ``content`` (Bot API fields: text, photo, sticker,
        caption, ...); command entities are added for a leading /command."""
        chat_id = user_id if chat_id is None else chat_id
        self._next_message += 1
        # Kept here: the bot's calls answered while the update is pushed take ids too.
        message_id = self._next_message
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "group"}
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}", "language_code": lang},
            **content,
        }
        if anonymous:
            message["from"] = ANONYMOUS_ADMIN
            message["sender_chat"] = chat
        for field_name, entities in (("text", "entities"), ("caption", "caption_entities")):
            value = content.get(field_name)
            if isinstance(value, str) and value.startswith("/"):
                command = value.split()[0]
                message[entities] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = self.messages[(chat_id, reply_to)]
        self.messages[(chat_id, message_id)] = message
        await self._push({"message": message})
        return message_id

    async def press_button(self, message: Call, callback_data: str | None, *, user_id: int, lang: str = "en") -> str:
        """A user presses an inline button under a message the bot sent (``None``: a button
        without data); returns the callback query's id. Telegram sends the presser's real
        account, even for an anonymous admin."""
        query_id = f"cb{self._next_update}"
        query: dict[str, Any] = {
            "id": query_id,
            "from": {"id": user_id, "is_bot": False, "first_name": "u", "language_code": lang},
            "chat_instance": "ci",
            # The message as the bot sent it (a photo with its caption, ...), else its text.
            "message": message.result
            if isinstance(message.result, dict)
            else self._message(message.chat_id or 0, text=message.data.get("text", "")),
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


class _BadRequest(Exception):
    """Telegram's 400 answer, with its description."""


def _image_size(data: bytes) -> tuple[int, int]:
    """A picture's size as Telegram reports it; 1x1 for bytes that are no picture."""
    from PIL import Image  # only the tests need Pillow here

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return 1, 1


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
    """Telegram's answer to a message text over 4096 characters or a caption over 1024
    (after the HTML is parsed)."""
    if method in ("sendMessage", "editMessageText"):
        field_name, limit, what = "text", MAX_TEXT, "message is too long"
    elif method in ("sendPhoto", "sendDocument", "editMessageCaption"):
        field_name, limit, what = "caption", MAX_CAPTION, "message caption is too long"
    else:
        return None
    text = str(data.get(field_name) or "")
    if data.get("parse_mode") == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    if len(text) <= limit:
        return None
    return {"ok": False, "error_code": 400, "description": f"Bad Request: {what}"}


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
