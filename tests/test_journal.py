"""The SQLite job journal on its own."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from bot.journal import PARAMS_VERSION, Entry, Journal, State, Unreadable
from generation import GenerationParams

PARAMS = GenerationParams("a fox", 64, 64, 4, 4.0, 1.0, seed=7, negative_prompt="blur")


def add(journal: Journal, message_id: int) -> int | None:
    return journal.add(chat_id=5, message_id=message_id, user_id=5, lang="ru", params=PARAMS, as_document=True)


def test_unfinished_jobs_survive_reopening(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    first, second, third = add(journal, 1), add(journal, 2), add(journal, 3)
    journal.mark(first, State.SENT)
    journal.mark(second, State.RUNNING)
    journal.close()  # as after a crash: nothing else is written

    reopened = Journal.in_dir(str(tmp_path))
    entries = reopened.unfinished()
    assert [e.id for e in entries] == [second, third]
    assert entries[0].params == PARAMS and entries[0].as_document and entries[0].lang == "ru"
    assert entries[0].state is State.RUNNING
    assert reopened.counts() == {"sent": 1, "running": 1, "queued": 1}


def test_same_message_is_one_job(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    assert add(journal, 10) is not None
    assert add(journal, 10) is None  # Telegram sent the update again


def test_rejected_request_is_forgotten(tmp_path: Path) -> None:
    journal = Journal.in_dir(str(tmp_path))
    job = add(journal, 11)
    journal.remove(job)
    assert journal.unfinished() == []
    assert add(journal, 11) is not None  # may be accepted later


# The jobs table as the first release created it (no params_version column).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL, lang TEXT NOT NULL, params TEXT NOT NULL, as_document INTEGER NOT NULL,
    state TEXT NOT NULL, error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (chat_id, message_id)
);
"""


def insert_raw(path: Path, message_id: int, params: str, **columns: object) -> None:
    """A row as another version (older, newer or broken) might have written it."""
    values = {"chat_id": 5, "message_id": message_id, "user_id": 5, "lang": "en", "params": params,
              "as_document": 0, "state": "queued", "created_at": 0.0, "updated_at": 0.0, **columns}  # fmt: skip
    with sqlite3.connect(path) as db:
        names = ", ".join(values)
        db.execute(f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' * len(values))})", list(values.values()))


def test_rows_of_other_versions_are_read_tolerantly(tmp_path: Path) -> None:
    Journal.in_dir(str(tmp_path)).close()
    newer = {**asdict(PARAMS), "from_the_future": "x", "upscale": 2}  # keys this version doesn't know
    insert_raw(tmp_path / "jobs.sqlite3", 1, json.dumps(newer), params_version=7)
    older = {k: v for k, v in asdict(PARAMS).items() if k != "negative_prompt"}  # a key added since
    insert_raw(tmp_path / "jobs.sqlite3", 2, json.dumps(older))

    [first, second] = Journal.in_dir(str(tmp_path)).unfinished()
    assert isinstance(first, Entry) and first.params == PARAMS
    assert isinstance(second, Entry) and second.params == replace(PARAMS, negative_prompt=None)


@pytest.mark.parametrize(
    "params",
    [
        "{not json",
        json.dumps(["a fox", 64, 64]),
        json.dumps({"prompt": "a fox", "height": 64}),  # no width: nothing safe to draw
        json.dumps({**asdict(PARAMS), "width": "wide"}),
        json.dumps({**asdict(PARAMS), "num_inference_steps": 0}),
        json.dumps({**asdict(PARAMS), "sampler": "euler"}),  # a sampler this version doesn't offer
    ],
)
def test_unreadable_rows_are_reported_not_raised(tmp_path: Path, params: str) -> None:
    journal = Journal.in_dir(str(tmp_path))
    good = add(journal, 1)
    insert_raw(tmp_path / "jobs.sqlite3", 2, params)
    [entry, unreadable] = journal.unfinished()
    assert isinstance(entry, Entry) and entry.id == good
    assert isinstance(unreadable, Unreadable)
    assert (unreadable.chat_id, unreadable.message_id, unreadable.lang) == (5, 2, "en")
    assert unreadable.reason


def test_row_with_garbage_ids_is_unreadable_without_a_chat(tmp_path: Path) -> None:
    Journal.in_dir(str(tmp_path)).close()
    insert_raw(tmp_path / "jobs.sqlite3", 1, json.dumps(asdict(PARAMS)), chat_id="somewhere")
    [unreadable] = Journal.in_dir(str(tmp_path)).unfinished()
    assert isinstance(unreadable, Unreadable) and unreadable.chat_id is None


def test_journal_of_the_first_release_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE_SCHEMA)
    insert_raw(path, 1, json.dumps(asdict(PARAMS)))

    journal = Journal(path)
    with sqlite3.connect(path) as db:
        assert "params_version" in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    assert add(journal, 2) is not None
    [old, new] = journal.unfinished()
    assert isinstance(old, Entry) and old.params == PARAMS
    assert isinstance(new, Entry) and new.params == PARAMS
    with sqlite3.connect(path) as db:
        assert [v for (v,) in db.execute("SELECT params_version FROM jobs ORDER BY id")] == [0, PARAMS_VERSION]
    Journal(path).close()  # opening a migrated journal again changes nothing
