"""The SQLite job journal on its own."""

from __future__ import annotations

from pathlib import Path

from bot.journal import Journal, State
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
