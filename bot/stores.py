"""What the bot keeps, as the rest of the bot sees it: awaitable stores with one backend
per deployment. SQLite files under DATA_DIR (one process; the classes in bot/journal.py,
bot/inbox.py and bot/user_settings.py) or one PostgreSQL database shared by several
replicas (DATABASE_URL; bot/pg_*.py).

The SQLite classes stay synchronous (their calls are short local transactions, run on
the event loop as before); the ``Local*`` adapters here give them the awaitable shape.
PostgreSQL calls cross a network, so they are awaited for real.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aiogram.types import Update

from bot.inbox import Inbox
from bot.journal import Entry, Journal, State, Unreadable
from bot.user_settings import UserChoices, UserSettings
from generation import GenerationParams


@runtime_checkable
class JobStore(Protocol):
    """Accepted requests (bot/journal.py says what each call means)."""

    async def add(
        self,
        *,
        chat_id: int,
        message_id: int,
        user_id: int,
        lang: str,
        params: GenerationParams,
        as_document: bool,
        images: Sequence[bytes] = (),
        reply_to: int | None = None,
    ) -> int | None: ...

    async def remove(self, job_id: int) -> None: ...

    async def mark(self, job_id: int, state: State, error: str | None = None) -> None: ...

    async def unfinished(self) -> list[Entry | Unreadable]: ...

    async def get(self, job_id: int) -> Entry | Unreadable | None: ...

    async def counts(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


@runtime_checkable
class SettingsStore(Protocol):
    """Each user's saved /draw defaults (bot/user_settings.py)."""

    async def get(self, owner_id: int) -> UserChoices: ...

    async def save(self, owner_id: int, choices: UserChoices) -> None: ...

    async def clear(self, owner_id: int) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class UpdateStore(Protocol):
    """The durable inbox of updates (bot/inbox.py)."""

    async def add(self, bot_id: int, update: Update) -> bool: ...

    async def done(self, bot_id: int, update_id: int) -> None: ...

    async def take_leftovers(self, bot_id: int) -> list[tuple[int, int, str, int]]: ...

    async def unhandled(self) -> int: ...

    async def close(self) -> None: ...


class LocalJobs:
    """The SQLite journal as a JobStore."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def add(self, **request) -> int | None:
        return self.journal.add(**request)

    async def remove(self, job_id: int) -> None:
        self.journal.remove(job_id)

    async def mark(self, job_id: int, state: State, error: str | None = None) -> None:
        self.journal.mark(job_id, state, error)

    async def unfinished(self) -> list[Entry | Unreadable]:
        return self.journal.unfinished()

    async def get(self, job_id: int) -> Entry | Unreadable | None:
        return self.journal.get(job_id)

    async def counts(self) -> dict[str, int]:
        return self.journal.counts()

    async def close(self) -> None:
        self.journal.close()


class LocalSettings:
    """The SQLite settings store as a SettingsStore."""

    def __init__(self, store: UserSettings) -> None:
        self.store = store

    async def get(self, owner_id: int) -> UserChoices:
        return self.store.get(owner_id)

    async def save(self, owner_id: int, choices: UserChoices) -> None:
        self.store.save(owner_id, choices)

    async def clear(self, owner_id: int) -> None:
        self.store.clear(owner_id)

    async def close(self) -> None:
        self.store.close()


class LocalUpdates:
    """The SQLite inbox as an UpdateStore."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def add(self, bot_id: int, update: Update) -> bool:
        return self.inbox.add(bot_id, update)

    async def done(self, bot_id: int, update_id: int) -> None:
        self.inbox.done(bot_id, update_id)

    async def take_leftovers(self, bot_id: int) -> list[tuple[int, int, str, int]]:
        return self.inbox.take_leftovers(bot_id)

    async def unhandled(self) -> int:
        return self.inbox.unhandled()

    async def close(self) -> None:
        self.inbox.close()


def job_store(journal: Journal | JobStore) -> JobStore:
    """A store of either kind as a JobStore (callers and tests may pass the SQLite class)."""
    return LocalJobs(journal) if isinstance(journal, Journal) else journal


def settings_store(store: UserSettings | SettingsStore) -> SettingsStore:
    return LocalSettings(store) if isinstance(store, UserSettings) else store


def update_store(inbox: Inbox | UpdateStore) -> UpdateStore:
    return LocalUpdates(inbox) if isinstance(inbox, Inbox) else inbox
