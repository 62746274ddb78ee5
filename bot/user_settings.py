"""Each user's saved defaults for /draw (/settings): SQLite in DATA_DIR, beside the journal.

Nothing about a person is kept but the id their choices belong to (a user's id, or a
chat's for an anonymous admin: ``bot.senders.sender_id``) and the choices themselves:
/draw option values as typed, send-as-file, the language to be answered in.

A row outlives a version of the bot and may be damaged: it says which version wrote it,
and is decoded tolerantly. What can't be read is left out with a log line, never raised;
an option that no longer passes /draw's checks (MAX_STEPS lowered, a style removed from
STYLES_FILE) is left out when used, so a saved default never stops a /draw.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.draw_args import OPTIONS, DrawArgsError, request_from_options, with_defaults
from bot.journal import open_database
from bot.texts import LANGUAGES
from generation import DrawLimits

log = logging.getLogger(__name__)

# The format of ``choices`` this version writes; older and newer ones are read as far as they go.
CHOICES_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_settings (
    owner_id   INTEGER PRIMARY KEY,   -- a user's id, or a chat's for an anonymous admin
    version    INTEGER NOT NULL,      -- CHOICES_VERSION of the code that wrote it
    choices    TEXT    NOT NULL,      -- JSON: {"options": {name: value}, "file": bool, "language": "ru"}
    updated_at REAL    NOT NULL
);
"""

# /draw options a default may be saved for: all but the seed (a saved seed would draw
# the same picture every time) and --file (saved as its own flag).
NOT_SAVED = frozenset({"seed", "file", "no"})
SAVED_OPTIONS = tuple(name.removeprefix("--") for name in OPTIONS if name.removeprefix("--") not in NOT_SAVED)


@dataclass(frozen=True)
class UserChoices:
    """What one user chose: /draw option values by name (as ``request_from_options`` takes
    them), whether pictures come as files, and a language (None: their Telegram app's)."""

    options: Mapping[str, str] = field(default_factory=dict)
    as_document: bool = False
    language: str | None = None

    def with_options(self, typed: Mapping[str, str]) -> UserChoices:
        """These choices with ``typed`` options put over the saved ones."""
        return replace(self, options=with_defaults(typed, self.options))

    def to_json(self) -> str:
        return json.dumps({"options": dict(self.options), "file": self.as_document, "language": self.language})


def decode_choices(raw: Any, version: Any, owner_id: int) -> UserChoices:
    """A row's choices, as far as they can be read; each part that can't is left out
    with a log line."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as exc:
        log.warning("settings of %s are not JSON (%s): ignored", owner_id, exc)
        return UserChoices()
    if not isinstance(data, dict):
        log.warning("settings of %s are a JSON %s, not an object: ignored", owner_id, type(data).__name__)
        return UserChoices()
    if not isinstance(version, int) or version > CHOICES_VERSION:
        log.warning("settings of %s written by version %r: reading what this one knows", owner_id, version)
    options: dict[str, str] = {}
    raw_options = data.get("options", {})
    if isinstance(raw_options, dict):
        for name, value in raw_options.items():
            if name in SAVED_OPTIONS and isinstance(value, str):
                options[name] = value
            else:
                log.warning("settings of %s: option %r = %r left out", owner_id, name, value)
    else:
        log.warning("settings of %s: options are not an object: left out", owner_id)
    as_document = data.get("file", False)
    if not isinstance(as_document, bool):
        log.warning("settings of %s: file = %r left out", owner_id, as_document)
        as_document = False
    language = data.get("language")
    if language is not None and language not in LANGUAGES:
        log.warning("settings of %s: language %r left out", owner_id, language)
        language = None
    return UserChoices(options, as_document, language)


def usable_options(choices: UserChoices, limits: DrawLimits, owner_id: int) -> dict[str, str]:
    """The saved options that pass /draw's checks today, each checked alone."""
    usable = {}
    for name, value in choices.options.items():
        try:
            request_from_options("x", {name: value}, limits)
        except DrawArgsError as exc:
            log.info("settings of %s: saved --%s %r no longer allowed (%s): not used", owner_id, name, value, exc.key)
            continue
        usable[name] = value
    return usable


class UserSettings:
    """The store: one short statement per call, on the event loop (as the journal's)."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: str) -> UserSettings:
        return cls(Path(data_dir) / "user_settings.sqlite3")

    def close(self) -> None:
        self._db.close()

    def get(self, owner_id: int) -> UserChoices:
        """The owner's choices; none when they can't be read (a damaged file must not
        stop every message, which asks for the language)."""
        try:
            row = self._db.execute(
                "SELECT choices, version FROM user_settings WHERE owner_id = ?", (owner_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            log.error("settings of %s can't be read: %s", owner_id, exc)
            return UserChoices()
        return UserChoices() if row is None else decode_choices(row[0], row[1], owner_id)

    def save(self, owner_id: int, choices: UserChoices) -> None:
        if choices == UserChoices():
            self.clear(owner_id)  # nothing chosen: nothing kept
            return
        self._db.execute(
            "INSERT INTO user_settings (owner_id, version, choices, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (owner_id) DO UPDATE SET version = excluded.version, choices = excluded.choices,"
            " updated_at = excluded.updated_at",
            (owner_id, CHOICES_VERSION, choices.to_json(), time.time()),
        )

    def clear(self, owner_id: int) -> None:
        self._db.execute("DELETE FROM user_settings WHERE owner_id = ?", (owner_id,))
