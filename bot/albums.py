"""Collect an album: Telegram sends its pictures as separate messages with one
media_group_id, the caption on one of them, in no promised order and with nothing that
says which is the last.

Each message's handler adds its message here and waits for the whole album: until no
piece came for QUIET_S (at most MAX_WAIT_S after the first). Then the album's leader (the
first message with a command for us) makes one request of it; the other handlers return.

In memory only, and that is enough for a restart: a handler still waiting when the bot is
killed has not finished, so the durable inbox (bot/inbox.py) keeps every piece's update
as unhandled and feeds them all again at the next start, where the album is collected
anew. The journal keeps one job per (chat, message), so an album already submitted is not
drawn twice. A graceful stop lets waiting handlers finish (HANDLERS_GRACE_S > QUIET_S).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiogram.filters import CommandObject
from aiogram.types import Message

QUIET_S = 1.0  # Telegram sends an album's pieces within a fraction of a second
MAX_WAIT_S = 10.0  # a chat that keeps adding to one group id can't hold it open forever
MAX_PIECES = 10  # Telegram's most per album; more pieces of one group id are not kept


@dataclass
class Album:
    messages: list[Message] = field(default_factory=list)
    commands: dict[int, CommandObject] = field(default_factory=dict)  # by message id
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)

    @property
    def leader(self) -> int | None:
        """The message whose command the album answers: the first that has one."""
        return min(self.commands, default=None)

    @property
    def first(self) -> int:
        return min(m.message_id for m in self.messages)

    def ordered(self) -> list[Message]:
        return sorted(self.messages, key=lambda m: m.message_id)


class AlbumCollector:
    def __init__(self, quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S) -> None:
        self._quiet_s = quiet_s
        self._max_wait_s = max_wait_s
        self._albums: dict[tuple[int, str], Album] = {}

    def pending(self) -> int:
        """Albums being collected (for tests: the map must empty itself)."""
        return len(self._albums)

    async def collect(self, message: Message, command: CommandObject | None) -> Album:
        """Add a piece of an album and wait for the whole of it."""
        assert message.media_group_id is not None
        key = (message.chat.id, message.media_group_id)
        album = self._albums.get(key)
        first = album is None
        if album is None:
            album = self._albums[key] = Album()
        if len(album.messages) < MAX_PIECES and all(m.message_id != message.message_id for m in album.messages):
            album.messages.append(message)
            if command is not None:
                album.commands[message.message_id] = command
        album.last = time.monotonic()
        if first:
            try:
                await self._wait_until_quiet(album)
            finally:
                self._albums.pop(key, None)
                album.done.set()
        else:
            await album.done.wait()
        return album

    async def _wait_until_quiet(self, album: Album) -> None:
        while True:
            now = time.monotonic()
            until = min(album.last + self._quiet_s, album.started + self._max_wait_s)
            if now >= until:
                return
            await asyncio.sleep(until - now)
