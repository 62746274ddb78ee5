"""The job journal: every accepted /draw, durable across restarts and crashes (SQLite, WAL).

A job is written before the user is told it is queued, and marked sent only after
Telegram accepted the picture. At start-up, jobs that are neither sent nor failed are
run again. Calls are short local transactions (WAL with synchronous=NORMAL commits
without an fsync), so they run on the event loop.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from generation import GenerationParams

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,   -- the user's /draw message
    user_id     INTEGER NOT NULL,
    lang        TEXT    NOT NULL,
    params      TEXT    NOT NULL,   -- GenerationParams as JSON, seed included
    as_document INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    error       TEXT,
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    UNIQUE (chat_id, message_id)    -- an update Telegram sends twice is one job
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (state) WHERE state IN ('queued', 'running');
"""


class State(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Entry:
    id: int
    chat_id: int
    message_id: int
    user_id: int
    lang: str
    params: GenerationParams
    as_document: bool
    state: State


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement, one commit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        self._db.executescript(SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: str) -> Journal:
        return cls(cls.path_in(data_dir))

    @staticmethod
    def path_in(data_dir: str) -> Path:
        return Path(data_dir) / "jobs.sqlite3"

    def close(self) -> None:
        self._db.close()

    def add(
        self, *, chat_id: int, message_id: int, user_id: int, lang: str, params: GenerationParams, as_document: bool
    ) -> int | None:
        """Record an accepted request; None if this message was recorded before."""
        now = time.time()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO jobs (chat_id, message_id, user_id, lang, params, as_document, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chat_id, message_id, user_id, lang, json.dumps(asdict(params)), int(as_document), State.QUEUED, now, now),
        )
        return cursor.lastrowid if cursor.rowcount else None

    def remove(self, job_id: int) -> None:
        """Forget a request that was not accepted after all (the queue was full)."""
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def mark(self, job_id: int, state: State, error: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE id = ?", (state, error, time.time(), job_id)
        )

    def unfinished(self) -> list[Entry]:
        rows = self._db.execute(
            "SELECT id, chat_id, message_id, user_id, lang, params, as_document, state FROM jobs"
            " WHERE state IN ('queued', 'running') ORDER BY id"
        ).fetchall()
        return [
            Entry(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                GenerationParams(**json.loads(row[5])),
                bool(row[6]),
                State(row[7]),
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
