"""Checks made before anything heavy starts, each failing with one line that says what
to do (``StartupError``; main.py prints it and exits 2) instead of a traceback."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from bot.journal import Journal


class StartupError(Exception):
    """Something the operator must fix before the bot can start."""


def check_data_dir(data_dir: str) -> None:
    """DATA_DIR must be a writable directory: the journal and torch.compile's cache live
    there, and torch creates its cache directory while being imported, so this runs
    before torch is imported."""
    path = Path(data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StartupError(
            f"DATA_DIR={data_dir} is not a writable directory ({exc.strerror or exc}): make it writable "
            "for the user the bot runs as, or set DATA_DIR to another directory"
        ) from None


def check_journal(data_dir: str) -> None:
    """The journal in DATA_DIR must be one SQLite can open (it is created if missing)."""
    path = Journal.path_in(data_dir)
    try:
        Journal(path).close()
    except sqlite3.DatabaseError as exc:
        advice = (
            f"move it away (mv {path} {path}.broken) and start again: the bot then begins a new, empty journal"
            if _is_corrupt(exc)
            else "check that no other bot uses this DATA_DIR and that the file is writable"
        )
        raise StartupError(f"can't open the job journal {path} ({exc}): {advice}") from None


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in str(exc)
