"""The job journal: every accepted /draw, durable across restarts and crashes (SQLite, WAL).

A job is written before the user is told it is queued, and marked sent only after
Telegram accepted the picture. At start-up, jobs that are neither sent nor failed are
run again. Calls are short local transactions (WAL with synchronous=NORMAL commits
without an fsync), so they run on the event loop.

Rows outlive a version of the bot: the schema only ever gains columns (added on open
when missing), each row says which version wrote its params, and params are decoded
tolerantly (unknown keys ignored, missing ones with defaults filled in). A row that still
can't be read is reported as ``Unreadable``, never raised.

The pictures a request draws from (img2img, variations, mixes) are files beside the
database, ``<data dir>/inputs/<job id>/<n>``, and leave with the job: deleted once it is
sent, failed or cancelled. A request's pictures are written to a temporary folder first,
and moved to their place inside the transaction that inserts the row, before it commits:
a crash before the commit leaves no row (the folder is an orphan, removed at the next
open), after it a row with its pictures. A row whose pictures are missing anyway (deleted
by hand, a lost disk) is ``Unreadable``: failed, and its user told.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from generation import GenerationParams
from generation.samplers import SAMPLER_NAMES

log = logging.getLogger(__name__)

# The format of the ``params`` JSON this version writes. Bump it when a field changes
# meaning; ``decode_params`` then keeps reading the older formats.
# 1: text to image. 2: + sampler, mix (weighted texts and pictures), init_image, strength.
# 3: + style (the whole template), typed_prompt (what was typed when prompt is its translation).
PARAMS_VERSION = 3
INPUTS_DIR = "inputs"  # beside the database: the pictures of unfinished requests

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: buttons carry it
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,   -- the user's /draw message
    user_id     INTEGER NOT NULL,
    lang        TEXT    NOT NULL,
    params      TEXT    NOT NULL,   -- GenerationParams as JSON, seed included
    params_version INTEGER NOT NULL DEFAULT 0,  -- PARAMS_VERSION of the code that wrote it
    images      INTEGER NOT NULL DEFAULT 0,  -- pictures it draws from, in inputs/<id>/<n>
    as_document INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    error       TEXT,
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    UNIQUE (chat_id, message_id)    -- an update Telegram sends twice is one job
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (state) WHERE state IN ('queued', 'running');
"""

# Columns added after the first release, for journals made before them: (name,
# declaration). Rows written before a column existed get its default (params_version
# 0: the JSON of the first release).
ADDED_COLUMNS = (
    ("params_version", "INTEGER NOT NULL DEFAULT 0"),
    ("images", "INTEGER NOT NULL DEFAULT 0"),  # pictures stored under inputs/<id>/
    # What the answers reply to when it is not message_id: a button press has no message
    # of its own (message_id is then a negative id made from the press), so its picture
    # answers the picture whose button was pressed.
    ("reply_to", "INTEGER"),
)
_COLUMNS = "id, chat_id, message_id, user_id, lang, params, params_version, as_document, state, reply_to"

_params = TypeAdapter(GenerationParams)


class State(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({State.SENT, State.FAILED, State.CANCELLED})


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
    reply_to: int | None = None  # see ADDED_COLUMNS

    @property
    def reply_id(self) -> int:
        """The message its answers reply to."""
        return self.message_id if self.reply_to is None else self.reply_to

    images: tuple[bytes, ...] = ()  # the pictures it draws from, read back from the files


@dataclass(frozen=True)
class Unreadable:
    """An unfinished row this version cannot run; chat and message are None when even
    they are not numbers."""

    id: int
    chat_id: int | None
    message_id: int | None
    lang: str
    reason: str
    message: str = "request_unreadable"  # the catalogue key its user is told


class UnreadableParams(ValueError):
    pass


def encode_params(params: GenerationParams) -> str:
    return json.dumps(asdict(params))


def decode_params(raw: Any, version: int) -> GenerationParams:
    """Params as any version stored them. Keys this version doesn't know are ignored (a
    newer version may have added some); missing keys with a default get it. Raises
    UnreadableParams when what is left is not a request this version can draw."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise UnreadableParams(f"params are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadableParams(f"params are a JSON {type(data).__name__}, not an object")
    if version > PARAMS_VERSION:
        log.warning("params written by a newer version (%s > %s): reading what this one knows", version, PARAMS_VERSION)
    try:
        params = _params.validate_python(data)  # extra keys are ignored
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UnreadableParams(f"params: {problems}") from None
    if min(params.width, params.height, params.num_inference_steps) < 1:
        raise UnreadableParams("params: size and steps must be positive")
    if params.sampler not in SAMPLER_NAMES:  # one a newer version offers, or a removed one
        raise UnreadableParams(f"params: unknown sampler {params.sampler!r}")
    for part in params.mix:
        if (part.text is None) == (part.image is None) or (part.image is not None and part.image < 0):
            raise UnreadableParams(f"params: a mix part needs a text or a picture index: {part}")
        if not math.isfinite(part.weight):
            raise UnreadableParams(f"params: a mix part's weight is not a number: {part}")
    if params.init_image is not None and params.init_image < 0:
        raise UnreadableParams(f"params: init_image {params.init_image}")
    if params.init_image is not None and not (
        0 < params.strength <= 1 and params.num_inference_steps * params.strength >= 1
    ):
        raise UnreadableParams(f"params: strength {params.strength} at {params.num_inference_steps} steps")
    return params


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """A SQLite file of ours (the journal, the inbox): autocommit (one statement, one
    commit), WAL with synchronous=NORMAL (durable against a killed process, no fsync per
    commit), ``schema`` created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


class Journal:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, SCHEMA)
        self._inputs = path.parent / INPUTS_DIR
        self._migrate()
        self._clean_inputs()

    def _migrate(self) -> None:
        """Add the columns a journal of an older version lacks; old rows stay as they are."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, declaration in ADDED_COLUMNS:
            if name not in have:
                log.info("journal: adding column %s", name)
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    @classmethod
    def in_dir(cls, data_dir: str) -> Journal:
        return cls(cls.path_in(data_dir))

    @staticmethod
    def path_in(data_dir: str) -> Path:
        return Path(data_dir) / "jobs.sqlite3"

    def close(self) -> None:
        self._db.close()

    def add(
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
    ) -> int | None:
        """Record an accepted request with the pictures it draws from; None if this
        message was recorded before. The row commits only with its pictures in place."""
        now = time.time()
        staged = self._stage(images) if images else None
        job_id: int | None = None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO jobs (chat_id, message_id, user_id, lang, params, params_version,"
                    " as_document, state, images, created_at, updated_at, reply_to)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        chat_id,
                        message_id,
                        user_id,
                        lang,
                        encode_params(params),
                        PARAMS_VERSION,
                        int(as_document),
                        State.QUEUED,
                        len(images),
                        now,
                        now,
                        reply_to,
                    ),
                )
                job_id = cursor.lastrowid if cursor.rowcount else None
                if job_id is not None and staged is not None:
                    folder = self.inputs_of(job_id)
                    shutil.rmtree(folder, ignore_errors=True)  # an orphan of a rolled-back id
                    staged.rename(folder)
                    staged = None
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                if job_id is not None and staged is None and images:
                    shutil.rmtree(self.inputs_of(job_id), ignore_errors=True)
                raise
        finally:
            if staged is not None:  # a duplicate, or it failed before the move
                shutil.rmtree(staged, ignore_errors=True)
        return job_id

    def _stage(self, images: Sequence[bytes]) -> Path:
        """The pictures written to a temporary folder under inputs/ (same file system:
        moved into place by a rename)."""
        staged = self._inputs / f".new-{uuid.uuid4().hex}"
        staged.mkdir(parents=True)
        try:
            for n, data in enumerate(images):
                (staged / str(n)).write_bytes(data)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged

    def inputs_of(self, job_id: int) -> Path:
        """Where a job's pictures are kept while it is unfinished."""
        return self._inputs / str(job_id)

    def remove(self, job_id: int) -> None:
        """Forget a request that was not accepted after all (the queue was full)."""
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self._drop_inputs(job_id)

    def mark(self, job_id: int, state: State, error: str | None = None) -> None:
        self._db.execute(
            "UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE id = ?", (state, error, time.time(), job_id)
        )
        if state in FINAL_STATES:
            self._drop_inputs(job_id)  # after the row says so: a crash between leaves an orphan, not a hole

    def _drop_inputs(self, job_id: int) -> None:
        folder = self.inputs_of(job_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)

    def _clean_inputs(self) -> None:
        """Remove pictures no unfinished row needs: staged by a request that crashed
        before its row committed, or left by a crash between a row's end and the delete."""
        if not self._inputs.is_dir():
            return
        wanted = {str(row[0]) for row in self._db.execute("SELECT id FROM jobs WHERE state IN ('queued', 'running')")}
        for folder in self._inputs.iterdir():
            if folder.name not in wanted:
                log.info("journal: removing pictures no request needs: %s", folder.name)
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                else:
                    folder.unlink(missing_ok=True)

    def unfinished(self) -> list[Entry | Unreadable]:
        """Rows neither sent, failed nor cancelled, oldest first; each either an Entry to
        run or an Unreadable to settle."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS}, images FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
        ).fetchall()
        return [self._with_images(_entry(row[:-1]), row[-1]) for row in rows]

    def _with_images(self, item: Entry | Unreadable, count: object) -> Entry | Unreadable:
        """The entry with its pictures read back; Unreadable when they are missing."""
        if isinstance(item, Unreadable):
            return item
        stored = count if isinstance(count, int) and not isinstance(count, bool) else 0
        needed = max(stored, item.params.image_count)
        if not needed:
            return item
        folder = self.inputs_of(item.id)
        try:
            images = tuple((folder / str(n)).read_bytes() for n in range(needed))
        except OSError as exc:
            return Unreadable(
                item.id,
                item.chat_id,
                item.message_id,
                item.lang,
                f"pictures missing: {exc}",
                message="pics-core-missing-pictures",
            )
        return dataclasses.replace(item, images=images)

    def get(self, job_id: int) -> Entry | Unreadable | None:
        """One request, whatever its state (a picture's buttons repeat it); None when
        there is no such row."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _entry(row)

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())


def _entry(row: tuple) -> Entry | Unreadable:
    job_id, chat_id, message_id, user_id, lang, params, version, as_document, state, reply_to = row
    lang = lang if isinstance(lang, str) else "en"
    ids_ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (chat_id, message_id, user_id))
    try:
        if not ids_ok:
            raise UnreadableParams(f"chat, message or user is not a number: {chat_id!r}, {message_id!r}, {user_id!r}")
        decoded = decode_params(params, version if isinstance(version, int) else 0)
    except UnreadableParams as exc:
        numbers = isinstance(chat_id, int) and isinstance(message_id, int)
        return Unreadable(job_id, chat_id if numbers else None, message_id if numbers else None, lang, str(exc))
    try:
        state = State(state)
    except ValueError:
        return Unreadable(job_id, chat_id, message_id, lang, f"unknown state {state!r}")
    reply_to = reply_to if isinstance(reply_to, int) and not isinstance(reply_to, bool) else None
    return Entry(job_id, chat_id, message_id, user_id, lang, decoded, bool(as_document), state, reply_to)
